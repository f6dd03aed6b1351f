"""ptrag.training"""
