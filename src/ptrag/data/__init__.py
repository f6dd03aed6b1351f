"""Perturbation screens in AnnData: loading, validation, splits and cell-set sampling."""
