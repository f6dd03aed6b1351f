"""ptrag.simulation"""
