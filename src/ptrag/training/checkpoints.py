"""Checkpoint files that are never seen half-written, and reading them back with clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ptrag.errors import CheckpointError
from ptrag.io import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file beside the target, then rename: a crash leaves the old checkpoint."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist. Train first, or point to a run directory.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise CheckpointError(
            f"Checkpoint {path} is corrupted or truncated ({type(exc).__name__}: {exc}). "
            "Resume from an earlier checkpoint or retrain."
        ) from exc
    if not isinstance(payload, dict) or "ptrag" not in payload or "state_dict" not in payload:
        raise CheckpointError(f"{path} is not a ptrag checkpoint (no config, gene list or vocabulary in it).")
    return payload
