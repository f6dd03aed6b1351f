"""ptrag.models"""
