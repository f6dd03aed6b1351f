"""ptrag.prediction"""
