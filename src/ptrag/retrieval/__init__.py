"""ptrag.retrieval"""
