"""Runs Arc's ``state tx train`` inside the Arc STATE virtual environment and times each step.

This file is executed by ``bench_arc_state.py`` with the venv's interpreter; it must not import
ptrag (ptrag is not installed in that venv). It drives Arc's own CLI entry point
(``state.__main__.main``) with Hydra overrides, exactly as ``state tx train ...`` would, and only
adds a Lightning callback that records wall-clock timestamps. Nothing about Arc's model, data
loading or optimiser is changed.

Usage (inside the venv): python arc_runner.py SPEC.json
SPEC.json keys: threads, result_path, argv (the ``state tx train`` overrides) and split: the
data path, column names and where to write cell-load's TOML split file.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def _spec() -> dict[str, Any]:
    if len(sys.argv) != 2:
        raise SystemExit("usage: arc_runner.py SPEC.json")
    return json.loads(Path(sys.argv[1]).read_text())


def main() -> int:
    spec = _spec()
    threads = int(spec["threads"])
    # Thread env vars must be set before torch/MKL initialise their pools.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import lightning.pytorch as pl
    import torch

    torch.set_num_threads(threads)
    _write_split_toml(spec["split"])

    timer = _StepTimer()
    _inject_callback(pl, timer)

    sys.argv = ["state", "tx", "train", *spec["argv"]]
    from state.__main__ import main as state_main

    wall_start = time.perf_counter()
    state_main()
    total_wall = time.perf_counter() - wall_start

    import importlib.metadata as metadata

    result = {
        "arc_state_version": metadata.version("arc-state"),
        "cell_load_version": metadata.version("cell-load"),
        "torch_version": torch.__version__,
        "lightning_version": pl.__version__,
        "python_version": sys.version.split()[0],
        "torch_threads_in_training": timer.threads_seen,
        "process_wall_s": total_wall,
        "batch_end_times": timer.batch_end_times,
        "compute_s": timer.compute_s,
        "cells_per_step": timer.cells_per_step,
        "fit_start_time": timer.fit_start_time,
        "param_count_total": timer.param_count_total,
        "param_count_trainable": timer.param_count_trainable,
        "param_count_trainable_by_module": timer.param_by_module,
        "model_class": timer.model_class,
    }
    Path(spec["result_path"]).write_text(json.dumps(result, indent=2))
    return 0


def _write_split_toml(split: dict[str, Any]) -> None:
    """Write cell-load's TOML: everything trains, except a few perturbations of one cell type.

    Those few go to validation only because Lightning's sanity check needs a non-empty val
    loader; validation never runs during the timed steps (val_freq is set past max_steps).
    """
    import anndata as ad

    adata = ad.read_h5ad(split["data"], backed="r")
    obs = adata.obs
    cell_types = sorted(obs[split["cell_type_col"]].astype(str).unique())
    first_type = cell_types[0]
    perts_in_first = obs.loc[obs[split["cell_type_col"]].astype(str) == first_type, split["pert_col"]]
    candidates = sorted(set(perts_in_first.astype(str)) - {split["control"]})
    val_perts = candidates[: int(split["n_val_perts"])]
    adata.file.close()
    lines = [
        "[datasets]",
        f'bench = "{Path(split["data"]).resolve()}"',
        "",
        "[training]",
        'bench = "train"',
        "",
        f'[fewshot."bench.{first_type}"]',
        "val = [" + ", ".join(f'"{p}"' for p in val_perts) + "]",
        "",
    ]
    Path(split["toml_path"]).write_text("\n".join(lines))


class _StepTimer:
    """Collects per-step timestamps; a plain object so the Lightning base class is bound late."""

    def __init__(self) -> None:
        self.batch_end_times: list[float] = []
        self.compute_s: list[float] = []
        self.cells_per_step: list[int] = []
        self.fit_start_time: float | None = None
        self.threads_seen: int | None = None
        self.param_count_total = 0
        self.param_count_trainable = 0
        self.param_by_module: dict[str, int] = {}
        self.model_class = ""
        self._batch_start = 0.0

    def on_train_start(self, pl_module: Any) -> None:
        import torch

        self.fit_start_time = time.perf_counter()
        self.threads_seen = torch.get_num_threads()
        self.model_class = type(pl_module).__name__
        params = list(pl_module.named_parameters())
        self.param_count_total = sum(p.numel() for _, p in params)
        self.param_count_trainable = sum(p.numel() for _, p in params if p.requires_grad)
        for name, p in params:
            if p.requires_grad:
                top = name.split(".")[0]
                self.param_by_module[top] = self.param_by_module.get(top, 0) + p.numel()

    def on_batch_start(self) -> None:
        self._batch_start = time.perf_counter()

    def on_batch_end(self, batch: Any) -> None:
        now = time.perf_counter()
        self.compute_s.append(now - self._batch_start)
        self.batch_end_times.append(now)
        # The last batch of an epoch can be short (drop_last=False), so count real cells.
        self.cells_per_step.append(int(batch["pert_cell_emb"].shape[0]))


def _inject_callback(pl: Any, timer: _StepTimer) -> None:
    """Wrap pl.Trainer so that Arc's own Trainer(...) call also gets our timing callback."""

    class TimingCallback(pl.Callback):
        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            timer.on_train_start(pl_module)

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            timer.on_batch_start()

        def on_train_batch_end(
            self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
        ) -> None:
            timer.on_batch_end(batch)

    original_trainer = pl.Trainer

    class TimedTrainer(original_trainer):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), TimingCallback()]
            super().__init__(*args, **kwargs)

    pl.Trainer = TimedTrainer


if __name__ == "__main__":
    raise SystemExit(main())
