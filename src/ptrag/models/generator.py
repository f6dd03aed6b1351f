"""The ST generator (the "STATE" baseline): a set transformer over control cells.

Each control cell becomes a token h_i = f_basal(x_i) + f_pert(e_p) (+ E_batch[b_i]); a bidirectional
transformer without positional encoding (a cell set has no order) mixes the tokens; the output is
a residual so that every predicted cell keeps its own control cell's variation.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ptrag.config.schema import AnchorMode
from ptrag.models.layers import mlp

__all__ = ["STGenerator", "leading_mean"]


def leading_mean(values: torch.Tensor, count: torch.Tensor | None) -> torch.Tensor:
    """(B,1,G) mean over each set's first ``count`` cells (all of them when ``count`` is None)."""
    if count is None:
        return values.mean(dim=1, keepdim=True)
    kept = (torch.arange(values.shape[1], device=values.device)[None, :] < count[:, None]).to(values.dtype)
    return (values * kept[..., None]).sum(dim=1, keepdim=True) / count[:, None, None].to(values.dtype)


class SetTransformer(nn.Module):
    """Bidirectional self-attention over a set; permutation-equivariant by construction."""

    def __init__(self, dim: int, n_layers: int, n_heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            d_model=dim,
            nhead=n_heads,
            dim_feedforward=dim * ff_mult,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(self.encoder(tokens))


class PerturbationEncoder(nn.Module):
    """f_pert: an MLP over fixed gene embeddings, or a learned one-hot table (the paper's STATE arm)."""

    def __init__(
        self,
        gene_embeddings: torch.Tensor,
        hidden_dim: int,
        n_layers: int,
        kind: Literal["embedding", "onehot"],
        dropout: float,
    ) -> None:
        super().__init__()
        self.kind = kind
        # Fixed embeddings of the perturbation vocabulary: the spec holds them, so not in state dicts.
        self.register_buffer("gene_embeddings", gene_embeddings.float(), persistent=False)
        if kind == "onehot":
            self.table = nn.Embedding(gene_embeddings.shape[0], hidden_dim)
        self.project = mlp(gene_embeddings.shape[1], hidden_dim, hidden_dim, n_layers, dropout)

    def from_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.project(embeddings)

    def forward(self, pert_index: torch.Tensor) -> torch.Tensor:
        if self.kind == "onehot":
            return self.table(pert_index)
        return self.project(self.gene_embeddings[pert_index])


class STGenerator(nn.Module):
    def __init__(
        self,
        n_genes: int,
        gene_embeddings: torch.Tensor,
        n_batches: int,
        *,
        hidden_dim: int,
        n_layers: int,
        n_heads: int,
        ff_mult: int,
        dropout: float,
        encoder_layers: int,
        pert_encoding: Literal["embedding", "onehot"],
        use_batch: bool,
        output_residual: Literal["expression", "basal"],
        output_activation: Literal["relu", "none"],
        anchor: AnchorMode,
    ) -> None:
        # No defaults here: every setting comes from ptrag.config.schema through ptrag.run.build.
        super().__init__()
        self.output_residual = output_residual
        self.clip = output_activation == "relu"
        self.anchor = anchor
        self.basal_encoder = mlp(n_genes, hidden_dim, hidden_dim, encoder_layers, dropout)
        self.pert_encoder = PerturbationEncoder(
            gene_embeddings, hidden_dim, encoder_layers, pert_encoding, dropout
        )
        # The extra last row stands for batches unseen in training and stays zero.
        self.batch_embedding = (
            nn.Embedding(n_batches + 1, hidden_dim, padding_idx=n_batches) if use_batch else None
        )
        self.backbone = SetTransformer(hidden_dim, n_layers, n_heads, ff_mult, dropout)
        self.output = nn.Linear(hidden_dim, n_genes)
        # Scales of the learned response W_out T(h) at inference, chosen on validation after training
        # (ptrag.training.calibration) and carried by the checkpoint; training always uses 1.
        # residual_scale multiplies the whole response; cell_scale only its part that differs between
        # the cells of a set (each cell's response minus the set's mean response).
        self.residual_scale = 1.0
        self.cell_scale = 1.0
        # When a list, inference appends each batch's (base, response, anchor_cells) to it, so that
        # calibration can try every scale without running the network again.
        self.captured: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] | None = None
        if output_residual == "expression":
            # Start as the identity map on each control cell: the model learns the response on top.
            nn.init.zeros_(self.output.weight)
            nn.init.zeros_(self.output.bias)

    def encode(
        self, control: torch.Tensor, pert_index: torch.Tensor, batch_codes: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (basal encodings [B,S,H], perturbation encodings [B,H], tokens [B,S,H])."""
        basal = self.basal_encoder(control)
        pert = self.pert_encoder(pert_index)
        tokens = basal + pert[:, None, :]
        if self.batch_embedding is not None and batch_codes is not None:
            tokens = tokens + self.batch_embedding(batch_codes)
        return basal, pert, tokens

    def decode(
        self,
        tokens: torch.Tensor,
        basal: torch.Tensor,
        control: torch.Tensor,
        control_mean: torch.Tensor | None = None,
        evidence: torch.Tensor | None = None,
        anchor_cells: torch.Tensor | None = None,
        input_mean: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predicted cells (B,S,G). ``control_mean`` (B,G): what each set is re-centred on (its cell
        type's control-pool mean, or under ``batch_pool`` that of its cells' batches;
        ``ptrag.run.tensors.SetTensorizer.anchor_means``);
        ``evidence`` (B,S,G): retrieved observations, added in expression space; ``anchor_cells``
        (B,): at prediction, how many leading cells of each set are kept (the rest pad the last set
        of a group), so that the kept cells' mean is the one re-centred; ``input_mean`` (B,G): at
        prediction, the mean of the input cells of each set's whole group, re-centred instead of
        the set's own mean (see :func:`ptrag.prediction.core.group_input_means`)."""
        mixed = self.backbone(tokens)
        if self.output_residual == "basal":
            # The paper's form: ReLU(W_out(T(h)_i + f_basal(x_i))).
            return torch.relu(self.output(mixed + basal))
        # Residual in expression space: each predicted cell is its own control cell plus a response.
        if self.anchor != "none" and control_mean is not None:
            # Re-centre the set on its anchor (its cell type's control pool, or the control means of
            # its cells' batches): the mean of 32-64 sampled controls is noisy and a prediction
            # would inherit that noise. Each cell keeps its own deviation from the set mean, so the
            # predicted spread is the controls' spread. At prediction the mean of the set's whole
            # group is removed instead: re-centring each set of S cells on its own mean narrows a
            # group of several sets by sqrt((S-1)/S) (0.984 at 32).
            own_mean = leading_mean(control, anchor_cells) if input_mean is None else input_mean[:, None, :]
            control = control - own_mean + control_mean[:, None, :]
        if evidence is not None:
            control = control + evidence
        response = self.output(mixed)
        if torch.is_grad_enabled():
            predicted = control + response
            return torch.relu(predicted) if self.clip else predicted
        if self.captured is not None:
            self.captured.append((control, response.clone(), anchor_cells))
        return self.combine(control, response, anchor_cells)

    def combine(
        self, base: torch.Tensor, response: torch.Tensor, anchor_cells: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Inference: ``base`` (anchored control + evidence) plus the learned ``response`` at the
        calibrated scales, overwriting ``response``."""
        # In place on the fresh Linear output, one (B,S,G) tensor instead of three (2x faster
        # prediction). Not in training: in-place ops on the view make backward slower.
        if self.cell_scale != 1.0:
            mean = leading_mean(response, anchor_cells)
            response.sub_(mean).mul_(self.cell_scale).add_(mean)
        if self.residual_scale != 1.0:
            response.mul_(self.residual_scale)
        response.add_(base)
        return response.relu_() if self.clip else response

    def forward(
        self,
        control: torch.Tensor,
        pert_index: torch.Tensor,
        batch_codes: torch.Tensor | None = None,
        control_mean: torch.Tensor | None = None,
    ) -> torch.Tensor:
        basal, _, tokens = self.encode(control, pert_index, batch_codes)
        return self.decode(tokens, basal, control, control_mean)
