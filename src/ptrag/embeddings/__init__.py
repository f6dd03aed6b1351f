"""ptrag.embeddings"""
