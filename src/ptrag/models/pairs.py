"""Stage 2's per-(cell, candidate) hidden layer, fused and chunked over sets.

Both MLPs of the selector start with GELU(Linear(LayerNorm([basal; query; candidate]))). Once the
LayerNorm is folded into the Linear (``ptrag.models.selection``), the pre-activation of pair
(b, s, k) on channel j is

    z_bskj = (P_bsj + C_bkj) · r_bsk + β_j

with P (B,S,J) the cell's part (basal and query), C (B,K,J) the candidate's part, r (B,S,K) the
pair's inverse standard deviation and β (J) the bias. The (B,S,K,J) hidden layer h = GELU(z) is
only ever needed reduced: to the scorer's keep-minus-drop margin (its last Linear) and to the
keep-weighted sum over candidates of the context MLP. The functions below compute those reductions
a few sets at a time and keep nothing of size (B,S,K,J) for backward: a chunk's z and h are
recomputed there. Each of the ~15 elementwise passes then runs over a chunk instead of a tensor of
B·S·K·J floats (67 MB per MLP at the paper's shape), and training holds no pair-sized activation.
The maths is unchanged; only the order of floating-point operations differs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["pair_dot", "pair_weighted_sum"]

# Pair-tensor elements per chunk. CPU: 2^18 (1 MB per float32 tensor; one chunk holds a whole
# cpu-small batch); 2^15 to 2^18 timed alike, in turns, at both shapes, while the unchunked paper
# shape was 7-13x slower. Accelerators: large chunks, so that kernels stay big; chunking then only
# bounds memory.
CHUNK_ELEMENTS = {"cpu": 1 << 18}
ACCELERATOR_CHUNK_ELEMENTS = 1 << 26


def _chunks(batch: int, per_set: int, device: torch.device) -> Iterator[slice]:
    budget = CHUNK_ELEMENTS.get(device.type, ACCELERATOR_CHUNK_ELEMENTS)
    step = max(1, budget // max(per_set, 1))
    for start in range(0, batch, step):
        yield slice(start, min(start + step, batch))


def _common_dtype(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors in their common dtype, at least float32."""
    dtype = torch.float32
    for tensor in tensors:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return tuple(tensor.to(dtype) for tensor in tensors)


def _centred(cell: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
    """(b,S,J) + (b,K,J) → (b,S,K,J): the pair's centred LayerNorm input, projected."""
    return cell[:, :, None, :] + candidate[:, None, :, :]


class _PairHidden(torch.autograd.Function):
    """Shared forward/backward of the pair layer; subclasses say how h is reduced."""

    @staticmethod
    def reduce(hidden: torch.Tensor, operand: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def hidden_gradient(grad: torch.Tensor, operand: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def operand_gradient(grad: torch.Tensor, hidden: torch.Tensor, operand: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def run_forward(cls, ctx: Any, *inputs: torch.Tensor) -> torch.Tensor:
        # At least float32, whatever autocast made of the inputs: the pair maths must equal the
        # float32 reference (and autocast would otherwise mix dtypes inside one reduction).
        cell, candidate, inverse_std, bias, operand = _common_dtype(*inputs)
        ctx.save_for_backward(cell, candidate, inverse_std, bias, operand)
        b, s, j = cell.shape
        per_set = s * candidate.shape[1] * j
        outputs = []
        for part in _chunks(b, per_set, cell.device):
            z = torch.addcmul(bias, _centred(cell[part], candidate[part]), inverse_std[part, :, :, None])
            outputs.append(cls.reduce(F.gelu(z), operand if operand.dim() == 1 else operand[part]))
        joined = _join(outputs)
        assert joined is not None
        return joined

    @classmethod
    def run_backward(cls, ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        cell, candidate, inverse_std, bias, operand = ctx.saved_tensors
        grad = grad.to(cell.dtype)
        per_set = cell.shape[1] * candidate.shape[1] * cell.shape[2]
        shared = operand.dim() == 1  # one operand for all sets (a vector), else one per set
        grad_bias = torch.zeros_like(bias)
        grad_operand = torch.zeros_like(operand) if shared else None
        found: dict[str, list[torch.Tensor]] = {"cell": [], "candidate": [], "inverse_std": [], "operand": []}
        for part in _chunks(cell.shape[0], per_set, cell.device):
            chunk_operand = operand if shared else operand[part]
            centred = _centred(cell[part], candidate[part])
            r = inverse_std[part, :, :, None]
            z = torch.addcmul(bias, centred, r)
            if ctx.needs_input_grad[4]:
                gradient = cls.operand_gradient(grad[part], F.gelu(z), chunk_operand)
                if grad_operand is not None:
                    grad_operand += gradient
                else:
                    found["operand"].append(gradient)
            grad_z = torch.ops.aten.gelu_backward(cls.hidden_gradient(grad[part], chunk_operand), z)
            grad_bias += grad_z.sum(dim=(0, 1, 2))
            found["inverse_std"].append(torch.linalg.vecdot(grad_z, centred))
            grad_centred = grad_z.mul_(r)
            found["cell"].append(grad_centred.sum(dim=2))
            found["candidate"].append(grad_centred.sum(dim=1))
        joined = {key: _join(parts) for key, parts in found.items()}
        if grad_operand is None:
            grad_operand = joined["operand"]
        return joined["cell"], joined["candidate"], joined["inverse_std"], grad_bias, grad_operand


def _join(parts: list[torch.Tensor]) -> torch.Tensor | None:
    """Per-chunk results as one tensor (no copy for a single chunk)."""
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else torch.cat(parts)


class _PairDot(_PairHidden):
    """(B,S,K) = h · v, v (J,): the scorer's last Linear reduced to the keep-minus-drop margin."""

    @staticmethod
    def reduce(hidden: torch.Tensor, operand: torch.Tensor) -> torch.Tensor:
        return hidden @ operand

    @staticmethod
    def hidden_gradient(grad: torch.Tensor, operand: torch.Tensor) -> torch.Tensor:
        return grad[..., None] * operand

    @staticmethod
    def operand_gradient(grad: torch.Tensor, hidden: torch.Tensor, operand: torch.Tensor) -> torch.Tensor:
        return grad.reshape(-1) @ hidden.reshape(-1, hidden.shape[-1])

    @staticmethod
    def forward(ctx: Any, *inputs: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        with torch.autocast(inputs[0].device.type, enabled=False):
            return _PairDot.run_forward(ctx, *inputs)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        return _PairDot.run_backward(ctx, grad)


class _PairWeightedSum(_PairHidden):
    """(B,S,J) = Σ_k w_bsk h_bskj, w (B,S,K): the context MLP's hidden layer summed over the kept
    candidates."""

    @staticmethod
    def reduce(hidden: torch.Tensor, operand: torch.Tensor) -> torch.Tensor:
        return torch.matmul(operand[:, :, None, :], hidden)[:, :, 0, :]

    @staticmethod
    def hidden_gradient(grad: torch.Tensor, operand: torch.Tensor) -> torch.Tensor:
        return operand[..., None] * grad[:, :, None, :]

    @staticmethod
    def operand_gradient(grad: torch.Tensor, hidden: torch.Tensor, operand: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vecdot(hidden, grad[:, :, None, :])

    @staticmethod
    def forward(ctx: Any, *inputs: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        with torch.autocast(inputs[0].device.type, enabled=False):
            return _PairWeightedSum.run_forward(ctx, *inputs)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        return _PairWeightedSum.run_backward(ctx, grad)


def pair_dot(
    cell: torch.Tensor, candidate: torch.Tensor, inverse_std: torch.Tensor, bias: torch.Tensor,
    vector: torch.Tensor,
) -> torch.Tensor:  # fmt: skip
    """GELU((cell + candidate) · inverse_std + bias) · vector for every pair: (B,S,K)."""
    return _PairDot.apply(cell, candidate, inverse_std, bias, vector)


def pair_weighted_sum(
    cell: torch.Tensor, candidate: torch.Tensor, inverse_std: torch.Tensor, bias: torch.Tensor,
    weights: torch.Tensor,
) -> torch.Tensor:  # fmt: skip
    """Σ_k weights_bsk · GELU((cell + candidate) · inverse_std + bias)_bsk: (B,S,J)."""
    return _PairWeightedSum.apply(cell, candidate, inverse_std, bias, weights)
