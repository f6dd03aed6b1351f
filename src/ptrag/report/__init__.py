"""ptrag.report"""
