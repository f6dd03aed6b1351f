"""Stage 1 retrieval: the training-perturbation database, neighbour tables and response memory."""

from ptrag.retrieval.database import Neighbours, RetrievalDatabase, l2_normalise
from ptrag.retrieval.memory import MemoryCandidates, ResponseMemory

__all__ = ["MemoryCandidates", "Neighbours", "ResponseMemory", "RetrievalDatabase", "l2_normalise"]
