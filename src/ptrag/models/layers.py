"""Small building blocks shared by the generator and the retrieval heads."""

from __future__ import annotations

from torch import nn

__all__ = ["mlp"]


def mlp(in_dim: int, hidden_dim: int, out_dim: int, n_layers: int = 2, dropout: float = 0.0) -> nn.Sequential:
    """``n_layers`` linear layers with GELU between them; the last layer is linear."""
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(max(n_layers - 1, 0)):
        layers += [nn.Linear(dim, hidden_dim), nn.GELU(), nn.Dropout(dropout)]
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*layers)
