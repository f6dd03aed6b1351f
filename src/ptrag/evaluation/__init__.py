"""ptrag.evaluation"""
