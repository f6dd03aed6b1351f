"""The checkpoint format: what a ptrag checkpoint holds, writing it atomically, reading it back.

A checkpoint is a torch file with
- ``"ptrag"``: the ptrag version, the config and the ModelSpec (genes, vocabulary and embeddings,
  cell types, batches, database perturbations, response memory), each stored once;
- ``"state_dict"``: the trained parameters (keys ``model.…``), without derived buffers;
- ``"global_step"``; a training checkpoint (``last.ckpt``) also holds Lightning's optimizer and loop
  state, the callbacks' state and the random number generators' states, so a run resumes exactly,
  and, with ``train.ema_decay``, the weights' moving average (``best.ckpt`` holds the average alone).

A run directory keeps two: ``checkpoints/last.ckpt`` (resume) and ``checkpoints/best.ckpt`` (the
weights with the lowest validation loss; prediction's default).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ptrag import __version__
from ptrag.config import Config, config_to_dict, saved_config_from_dict
from ptrag.errors import CheckpointError
from ptrag.io import atomic_path, staged_output
from ptrag.keys import AVERAGE_KEY, CELL_SCALE_KEY, CHECKPOINT_KEY, MODEL_PREFIX, RESIDUAL_SCALE_KEY
from ptrag.models.model import PerturbationModel
from ptrag.run.build import build_model, load_weights
from ptrag.run.spec import ModelSpec

__all__ = [
    "CHECKPOINT_FILES",
    "Checkpoint",
    "checkpoint_file",
    "copy_run",
    "read_checkpoint",
    "run_info",
    "update_checkpoint",
    "write_checkpoint",
]

log = logging.getLogger(__name__)

CHECKPOINT_CHOICES = ("best", "last")
CHECKPOINT_FILES = {"last": Path("checkpoints/last.ckpt"), "best": Path("checkpoints/best.ckpt")}


def run_info(config: Config, spec: ModelSpec) -> dict[str, Any]:
    """The ``"ptrag"`` entry of every checkpoint: enough to rebuild the model."""
    return {"version": __version__, "config": config_to_dict(config), "spec": spec.to_state()}


def write_checkpoint(payload: dict[str, Any], path: str | Path) -> None:
    """Write a checkpoint to a temporary file and rename it: a crash leaves the previous one.

    torch writes through a Python file object, so a full disk or a read-only location surfaces as
    an OSError, which ``atomic_path`` turns into a one-line OutputError naming the file.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(payload, handle)


def update_checkpoint(
    path: str | Path,
    *,
    spec: ModelSpec | None = None,
    scales: tuple[float, float] | None = None,
    record: Mapping[str, Any] | None = None,
) -> None:
    """Rewrite a checkpoint with what changed after training, everything else kept as it was.

    ``spec``: a new ModelSpec (``memory add``); ``scales``: the response scale and its per-cell
    part chosen on validation (``ptrag.training.calibration``); ``record``: more payload entries
    saying how they were chosen. The file is replaced atomically. The one place outside training
    that edits a checkpoint's contents.
    """
    payload = read_checkpoint(path)
    if spec is not None:
        payload[CHECKPOINT_KEY] = {**payload[CHECKPOINT_KEY], "spec": spec.to_state()}
    if scales is not None:
        payload[RESIDUAL_SCALE_KEY], payload[CELL_SCALE_KEY] = (float(v) for v in scales)
    payload.update(record or {})
    write_checkpoint(payload, path)


def copy_run(
    run_dir: str | Path, out: str | Path, *, spec: ModelSpec | None = None, overwrite: bool = False
) -> Path:
    """Copy a run directory (checkpoints, config, split, metrics, logs) to ``out`` through a
    staging directory; with ``spec``, every checkpoint of the copy carries it. The source is never
    modified. ``Model.save`` and ``memory add`` both copy runs through here."""
    with staged_output(out, overwrite=overwrite) as staging:
        shutil.copytree(run_dir, staging, dirs_exist_ok=True)
        if spec is not None:
            for relative in CHECKPOINT_FILES.values():
                if (staging / relative).is_file():
                    update_checkpoint(staging / relative, spec=spec)
    return Path(out)


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
    if not isinstance(payload, dict) or CHECKPOINT_KEY not in payload or "state_dict" not in payload:
        raise CheckpointError(f"{path} is not a ptrag checkpoint (no config, gene list or vocabulary in it).")
    return payload


def checkpoint_file(source: str | Path, which: str = "best") -> Path:
    """The checkpoint file a run directory (or a file) and ``which`` (best, last or a path) name.

    ``best`` falls back to ``last`` in a run that never validated (no val groups, val_fraction 0).
    """
    source = Path(source)
    if which not in CHECKPOINT_CHOICES:
        return Path(which)
    if not source.is_dir():
        return source  # a checkpoint file, or a missing path that read_checkpoint will name
    best, last = source / CHECKPOINT_FILES["best"], source / CHECKPOINT_FILES["last"]
    if which == "best" and not best.is_file() and last.is_file():
        log.info("%s has no best.ckpt (the run never validated); using last.ckpt", source)
        return last
    return best if which == "best" else last


@dataclass
class Checkpoint:
    """A trained run as prediction sees it: config, spec and weights from one checkpoint file."""

    config: Config
    spec: ModelSpec
    state_dict: dict[str, torch.Tensor]  # the PerturbationModel's parameters
    path: Path
    step: int
    # The learned response's scales chosen on validation after training (1: none chosen): of the
    # whole response, and of its per-cell part (ptrag.training.calibration).
    residual_scale: float = 1.0
    cell_scale: float = 1.0

    @classmethod
    def load(cls, source: str | Path, which: str = "best") -> Checkpoint:
        path = checkpoint_file(source, which)
        payload = read_checkpoint(path)
        info = payload[CHECKPOINT_KEY]
        state = {
            key.removeprefix(MODEL_PREFIX): value
            for key, value in payload["state_dict"].items()
            if key.startswith(MODEL_PREFIX)
        }
        if AVERAGE_KEY in payload:  # last.ckpt of a run that averages its weights: predict with those
            state |= payload[AVERAGE_KEY]["shadow"]
        config = saved_config_from_dict(info["config"])
        spec = ModelSpec.from_state(info["spec"])
        step = int(payload.get("global_step", 0))
        scales = (float(payload.get(RESIDUAL_SCALE_KEY, 1.0)), float(payload.get(CELL_SCALE_KEY, 1.0)))
        return cls(config, spec, state, path, step, *scales)

    @property
    def run_dir(self) -> Path | None:
        """The run directory holding this checkpoint, if it sits in one."""
        parent = self.path.parent
        return parent.parent if parent.name == "checkpoints" else None

    def model(self, spec: ModelSpec | None = None) -> PerturbationModel:
        """The trained model in eval mode, for ``spec`` (the trained one or an extension of it)."""
        model = build_model(self.config, spec or self.spec)
        load_weights(model, self.state_dict)
        model.generator.residual_scale = self.residual_scale
        model.generator.cell_scale = self.cell_scale
        return model.eval()
