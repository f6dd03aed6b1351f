"""The Lightning module around a PerturbationModel: losses, logging and checkpoint contents."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch

from ptrag import __version__
from ptrag.config import Config, config_from_dict, config_to_dict
from ptrag.errors import TrainingError
from ptrag.models import ModelOutput, SetDistributionLoss, build_model
from ptrag.models.build import ModelSpec

CHECKPOINT_KEY = "ptrag"


class PerturbationLightningModule(L.LightningModule):
    def __init__(self, config: Config, spec: ModelSpec) -> None:
        super().__init__()
        self.config = config
        self.spec = spec
        self.model = build_model(config, spec)
        self.distribution_loss = SetDistributionLoss(config.model.loss, config.model.sinkhorn_blur)
        self._step_started = 0.0

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        return self.model(
            batch["control"], batch["pert_index"], batch["cell_type_index"], batch["batch_codes"]
        )

    def _losses(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, ModelOutput]:
        output = self(batch)
        distribution = self.distribution_loss(output.predicted, batch["target"])
        rate = output.selection_rate()
        sparsity = self.config.retrieval.sparsity_weight * rate if rate is not None else distribution * 0.0
        return distribution, sparsity, output

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._step_started = time.perf_counter()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        distribution, sparsity, output = self._losses(batch)
        loss = distribution + sparsity
        if not torch.isfinite(loss):
            raise TrainingError(
                f"The training loss became {loss.item()} at step {self.global_step}. "
                "Training stopped; the last good checkpoint in the run directory is kept. "
                "Lower train.lr or check the input data for extreme values."
            )
        n_sets = batch["control"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=n_sets)
        self.log("train/distribution_loss", distribution, batch_size=n_sets)
        rate = output.selection_rate()
        if rate is not None:
            self.log("train/sparsity_loss", sparsity, batch_size=n_sets)
            self.log("train/selection_rate", rate, prog_bar=True, batch_size=n_sets)
            kept = output.kept_per_set()
            assert kept is not None
            self.log("train/kept_per_set", kept.mean(), batch_size=n_sets)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.log("train/step_time_s", time.perf_counter() - self._step_started, batch_size=1)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        distribution, _, output = self._losses(batch)
        n_sets = batch["control"].shape[0]
        self.log("val/loss", distribution, prog_bar=True, batch_size=n_sets, sync_dist=True)
        rate = output.selection_rate()
        if rate is not None:
            self.log("val/selection_rate", rate, batch_size=n_sets, sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        t = self.config.train
        return torch.optim.Adam(self.model.parameters(), lr=t.lr, weight_decay=t.weight_decay)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The checkpoint alone is enough to rebuild the model: config, genes, vocabulary, databases.
        checkpoint[CHECKPOINT_KEY] = {
            "version": __version__,
            "config": config_to_dict(self.config),
            "spec": self.spec.to_state(),
        }

    @classmethod
    def from_checkpoint_payload(cls, payload: dict[str, Any]) -> PerturbationLightningModule:
        info = payload[CHECKPOINT_KEY]
        module = cls(config_from_dict(info["config"]), ModelSpec.from_state(info["spec"]))
        module.load_state_dict(payload["state_dict"])
        return module
