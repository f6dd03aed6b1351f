"""Distributional set losses between predicted and observed cell sets."""

from __future__ import annotations

import torch
from torch import nn


class SetDistributionLoss(nn.Module):
    """Energy distance (default) or Sinkhorn divergence per set, averaged over sets (geomloss)."""

    def __init__(self, kind: str, blur: float) -> None:
        super().__init__()
        from geomloss import SamplesLoss

        self.kind = kind
        self.loss = SamplesLoss("energy") if kind == "energy" else SamplesLoss("sinkhorn", p=2, blur=blur)

    def per_set(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, S, G) × (B, S', G) → (B,) distances."""
        return self.loss(predicted.contiguous(), target.contiguous())

    def forward(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.per_set(predicted, target).mean()
