"""Where PT-RAG's extra time goes: stage 1 lookup, candidate encoding, stage 2 (against the concat
formulation it replaced), and self-exclusion against the authors' per-cell loop.

Helpers of ``bench_training.py`` (imported from there); each function times its variants in turns
(``median_times``), so that machine load falls on every variant alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def median_times(
    functions: dict[str, Callable[[], object]], repeats: int, warmup: int = 2
) -> dict[str, float]:
    """Median wall seconds of each function, called in turns ``repeats`` times after ``warmup`` rounds."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for index in range(repeats + warmup):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            if index >= warmup:
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def concat_selector(selector: Any, tokens: Any, basal: Any, query: Any, candidates: Any, valid: Any) -> Any:
    """The selector as first written (before optimisation): concat (B,S,K,3H), LayerNorm, two MLPs.

    Kept here only as the "before" of the before/after timing and as a numerical check of the
    factorised formulation in ``ptrag.models.selection``; same weights, same Gumbel draws.
    """
    import torch

    b, s, h = basal.shape
    k = candidates.shape[1]
    pair = torch.cat(
        [
            basal[:, :, None, :].expand(b, s, k, h),
            query[:, None, None, :].expand(b, s, k, h),
            candidates[:, None, :, :].expand(b, s, k, h),
        ],
        dim=-1,
    )
    r = selector.norm(pair)
    logits = selector.scorer(r)
    weights = selector.select(logits[..., 0] - logits[..., 1]) * valid[:, None, :].to(logits.dtype)
    context = (weights[..., None] * selector.context(r)).sum(dim=2)
    kept = weights.sum(dim=2, keepdim=True).clamp_min(1.0)
    new_tokens = context if selector.combine == "replace_sum" else tokens + context / kept
    return new_tokens, weights


def retrieval_breakdown(module: Any, batch: dict[str, Any], repeats: int) -> dict[str, float]:
    """Seconds per step spent in stage 1 (table gather) and stage 2 (selector forward + backward)."""
    import torch

    model = module.model
    pert, cell_type = batch["pert_index"], batch["cell_type_index"]
    with torch.no_grad():
        basal, query, tokens = model.generator.encode(batch["control"], pert, batch["batch_codes"])
        candidates = model.retriever(pert, cell_type)
        encoded = model.encode_candidates(candidates)
    inputs = [x.detach().requires_grad_(True) for x in (tokens, basal, query, encoded)]

    def selector_step() -> None:
        new_tokens, selection = model.selector(*inputs, candidates.valid)
        (new_tokens.sum() + selection.weights.sum()).backward()

    def concat_step() -> None:
        new_tokens, weights = concat_selector(model.selector, *inputs, candidates.valid)
        (new_tokens.sum() + weights.sum()).backward()

    torch.manual_seed(0)
    ours, _ = model.selector(*inputs, candidates.valid)
    torch.manual_seed(0)
    theirs, _ = concat_selector(model.selector, *inputs, candidates.valid)
    scale = float(theirs.detach().abs().max())

    def encode_step() -> None:
        model.encode_candidates(model.retriever(pert, cell_type)).sum().backward()

    timed = median_times(
        {
            "retriever_lookup_s": lambda: model.retriever(pert, cell_type),
            "candidate_encoding_fwd_bwd_s": encode_step,
            "selector_fwd_bwd_s": selector_step,
            "selector_concat_fwd_bwd_s": concat_step,
        },
        repeats,
    )
    return timed | {
        "selector_max_rel_diff_vs_concat": float((ours - theirs).detach().abs().max()) / max(scale, 1e-12)
    }


def authors_self_exclusion(
    names: list[str], database_names: list[str], embeddings: dict[str, Any], database: Any, k: int, s: int
) -> Any:
    """The authors' approach (difra100/PT-RAG_ICLR): a Python loop over all B·S cells of a step.

    Names are a flat list of length B·S indexed with ``batch_idx // S``; each cell looks its
    perturbation up, computes cosine similarities to the whole database, removes itself and
    takes the top K. Reimplemented here only to time it; the bug it carries is not reproduced.
    """
    import torch

    normed = torch.nn.functional.normalize(database, dim=1)
    position = {name: i for i, name in enumerate(database_names)}
    flat = [name for name in names for _ in range(s)]
    rows = []
    for batch_idx in range(len(flat)):
        name = flat[batch_idx]  # each cell looks up its own perturbation name
        query = torch.nn.functional.normalize(embeddings[name][None, :], dim=1)
        similarity = (normed @ query.T).squeeze(1)
        if name in position:
            similarity[position[name]] = float("-inf")
        rows.append(similarity.topk(k).indices)
    return torch.stack(rows)


def self_exclusion_ratio(module: Any, prepared: Any, batch: dict[str, Any], s: int, repeats: int) -> dict:
    import torch

    spec = prepared.spec
    vocabulary = list(spec.vocabulary)
    names = [vocabulary[i] for i in batch["pert_index"].tolist()]
    embeddings = {n: torch.from_numpy(spec.vocabulary_embeddings[vocabulary.index(n)]) for n in set(names)}
    database = torch.from_numpy(spec.database.embeddings)
    database_names = list(spec.database.perturbations)
    k = module.config.retrieval.top_k
    retriever = module.model.retriever
    timed = median_times(
        {
            "authors_loop_s": lambda: authors_self_exclusion(
                names, database_names, embeddings, database, k, s
            ),
            "ours_gather_s": lambda: retriever(batch["pert_index"], batch["cell_type_index"]),
        },
        repeats,
    )
    return timed | {"ratio": timed["authors_loop_s"] / timed["ours_gather_s"]}
