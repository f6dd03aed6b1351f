"""Stage 1 retrieval: the training-perturbation database, neighbour tables and the evidence memory."""

from ptrag.retrieval.database import Neighbours, RetrievalDatabase, l2_normalise
from ptrag.retrieval.memory import MemoryCandidates, ResponseMemory

# A selection that keeps fewer than this fraction of retrieved candidates has collapsed: retrieval then
# adds next to nothing. Training, prediction and the report all warn below it.
COLLAPSED_SELECTION = 0.01

__all__ = [
    "COLLAPSED_SELECTION",
    "MemoryCandidates",
    "Neighbours",
    "ResponseMemory",
    "RetrievalDatabase",
    "l2_normalise",
]
