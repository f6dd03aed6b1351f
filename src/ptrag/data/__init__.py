"""Perturbation screens in AnnData: loading, validation, splits and cell-set sampling."""

from ptrag.data.dataset import ColumnMapping, ExpressionMatrix, PerturbationDataset
from ptrag.data.loading import load_dataset
from ptrag.data.sets import CellSet, SetSampler, collate
from ptrag.data.splits import Split, generate_fewshot, generate_unseen, generate_zeroshot

__all__ = [
    "CellSet",
    "ColumnMapping",
    "ExpressionMatrix",
    "PerturbationDataset",
    "SetSampler",
    "Split",
    "collate",
    "generate_fewshot",
    "generate_unseen",
    "generate_zeroshot",
    "load_dataset",
]
