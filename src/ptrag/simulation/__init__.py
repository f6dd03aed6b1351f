"""Simulated CRISPRi Perturb-seq screens grounded in real gene biology: ptrag's offline benchmark.

``simulate(preset, seed, out_dir)`` writes ``data.h5ad`` (Replogle-Nadig schema), ``split.toml``
(few-shot per cell line), ``split_unseen.toml`` (perturbations held out of every line),
``truth.parquet`` (true mean log1p shift per cell line x perturbation) and
``perturbations.csv``; ``realism_report(out_dir)`` measures how realistic the result is.

Generative structure (details in docs/simulation.md and the module docstrings):

- Real genes: targets and measured genes are human symbols from the bundled gene table. Many
  targets come in blocks from shared complexes/processes (ribosome, proteasome, mediator, RNA
  polymerase, respiratory chain, spliceosome, tRNA synthetases, ...); many are "other" genes.
- Response (``model.py``): log fold changes on the negative-binomial mean. The target's own mean
  drops 70-95% (knock-down). Downstream effects go through gene programs defined by real
  annotation (one per complex family, one per specific GO term): a target's response is its
  membership-weighted sum of program loadings, so genes of one complex respond alike, plus an
  idiosyncratic part. Some perturbations have no downstream effect at all. Programs have per-line
  gains, are silent in some lines, and have line-specific loadings.
- Cells (``cells.py``): Gamma-Poisson (negative-binomial) counts with per-gene dispersion,
  log-normal library sizes, per-gene log-normal baselines that differ by line, gem_group batch
  effects on genes and library size, per-cell penetrance (a share of escaping cells, a Gamma
  response strength), and non-targeting controls in every line.
- Truth (``expectation.py``): the exact expectation of log1p(normalize_total) per condition, by
  quadrature, minus the control's.
- Embeddings stay separate: the simulator never reads embedding vectors. Response similarity
  relates to embedding similarity only through shared real annotation, imperfectly.
"""

from ptrag.simulation.api import SimulationResult, simulate
from ptrag.simulation.presets import PRESETS, ResponseParams, SimulationPreset, get_preset
from ptrag.simulation.realism import format_report, realism_report, write_realism_report

__all__ = [
    "PRESETS",
    "ResponseParams",
    "SimulationPreset",
    "SimulationResult",
    "format_report",
    "get_preset",
    "realism_report",
    "simulate",
    "write_realism_report",
]
