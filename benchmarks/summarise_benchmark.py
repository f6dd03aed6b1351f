"""Markdown tables and issue-target checks from a ``ptrag benchmark`` output directory.

    python benchmarks/summarise_benchmark.py BENCH_DIR [--copy-summary benchmarks/results/NAME.json]

Prints, per split: every method's mean of the main metrics (arms averaged over seeds), each arm
against its own ``<arm>_mean_on_controls`` row, the best arm against the references that are the bar,
the ablations, the memory arm's selection rates and every run's calibration scales. Everything comes
from the benchmark's own files (summary.json, the runs' best checkpoints); nothing is recomputed.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from ptrag.evaluation.references import SHIFT_REFERENCES

COLUMNS = (
    "energy_gene",
    "energy_gene_unbiased",
    "mmd_gene",
    "w1",
    "energy_strata",
    "pearson_delta",
    "discrimination_score_l1",
    "sd_ratio",
)
BAR = SHIFT_REFERENCES  # every reference that predicts a shift from training data: the bar


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def _method_table(section: dict[str, Any]) -> list[str]:
    shown = [c for c in COLUMNS if any(c in m["metrics"] for m in section["methods"].values())]
    lines = ["| method | kind | " + " | ".join(shown) + " |", "|---|---|" + "---|" * len(shown)]
    for name, entry in section["methods"].items():
        values = [_fmt(entry["metrics"].get(c, {}).get("mean")) for c in shown]
        lines.append(f"| {name} | {entry['kind']} | " + " | ".join(values) + " |")
    return lines


def _test_line(t: dict[str, Any]) -> str:
    return (
        f"| {t['arm']} | {t['baseline']} | {t['metric']} | {_fmt(t['mean_difference'])} | "
        f"{t['wins']}/{t['wins'] + t['losses'] + t['ties']} | {_fmt(t['p_value'])} | {t['outcome']} |"
    )


def _tests(title: str, tests: list[dict[str, Any]]) -> list[str]:
    if not tests:
        return []
    head = "| arm | against | metric | mean diff (arm − other) | arm better | p | outcome |"
    return ["", f"**{title}**", "", head, "|---|---|---|---|---|---|---|", *map(_test_line, tests)]


def _calibration(bench: Path, split: str) -> list[str]:
    lines = ["", "**Calibration (best checkpoint): response scale, per-cell scale**", ""]
    for run in sorted((bench / "runs" / split).iterdir()):
        path = run / "checkpoints" / "best.ckpt"
        if not path.is_file():
            continue
        payload = torch.load(path, map_location="cpu", weights_only=False)
        lines.append(f"- {run.name}: {payload.get('residual_scale', 1.0)}, {payload.get('cell_scale', 1.0)}")
    return lines


def summarise(bench: Path) -> str:
    summary = json.loads((bench / "summary.json").read_text())
    out = [f"# {summary['title']}"]
    for split, section in summary["splits"].items():
        out += ["", f"## {split} ({section['info'].get('n_test_groups')} test groups)", ""]
        out += _method_table(section)
        metrics = ("energy_gene", "energy_gene_unbiased", "mmd_gene", "w1", "energy_strata")
        with_profile = (*metrics, "pearson_delta")
        own = [t for t in section.get("own_mean_tests", []) if t["metric"] in metrics]
        out += _tests("Every arm against its own mean on real control cells", own)
        arms = [n for n, m in section["methods"].items() if m["kind"] == "arm"]
        out += _tests(
            "Every arm against the references that are the bar",
            [
                t
                for t in section["paired_tests"]
                if t["baseline"] in BAR and t["metric"] in with_profile and t["arm"] in arms
            ],
        )
        out += _tests(
            "Ablations (full arm against the arm without the component)",
            [t for t in section.get("component_tests", []) if t["metric"] in with_profile],
        )
        retrieval = section.get("retrieval", {})
        if retrieval:
            out += ["", "**Selection at prediction (kept fraction)**", ""]
            out += [f"- {arm}: {_fmt(entry.get('kept_fraction'))}" for arm, entry in retrieval.items()]
        out += _calibration(bench, split)
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bench", type=Path)
    parser.add_argument("--copy-summary", type=Path, help="also copy summary.json here")
    args = parser.parse_args()
    print(summarise(args.bench))
    if args.copy_summary:
        shutil.copyfile(args.bench / "summary.json", args.copy_summary)


if __name__ == "__main__":
    main()
