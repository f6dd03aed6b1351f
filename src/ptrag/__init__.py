"""ptrag: retrieval-augmented prediction of single-cell perturbation responses.

The package follows the data flow: ``data`` → ``embeddings`` → ``retrieval`` → ``models`` → ``run``
(the trained run: spec, groups, checkpoints) → ``training`` → ``prediction`` → ``evaluation`` →
``report``. ``ptrag.Model`` (``ptrag.api``) is the one public class for notebooks and the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ptrag.errors import PtragError

__version__ = "0.1.0"

__all__ = ["Model", "PtragError", "__version__"]

if TYPE_CHECKING:
    from ptrag.api import Model


def __getattr__(name: str) -> Any:
    # Importing torch and Lightning costs seconds; `import ptrag` should not.
    if name == "Model":
        from ptrag.api import Model

        return Model
    raise AttributeError(f"module 'ptrag' has no attribute {name!r}")
