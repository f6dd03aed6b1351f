"""Plain nn.Modules: the ST generator, vanilla RAG, PT-RAG and the response-memory arm."""

from ptrag.models.generator import STGenerator
from ptrag.models.losses import SetDistributionLoss
from ptrag.models.model import ModelOutput, PerturbationModel
from ptrag.models.retriever import Candidates, Retriever
from ptrag.models.selection import CandidateAttention, CandidateSelector, Selection

__all__ = [
    "CandidateAttention",
    "CandidateSelector",
    "Candidates",
    "ModelOutput",
    "PerturbationModel",
    "Retriever",
    "STGenerator",
    "Selection",
    "SetDistributionLoss",
]
