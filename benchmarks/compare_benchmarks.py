"""Compare the same arms across several benchmark runs (e.g. one per gene-prior setting), paired.

    python benchmarks/compare_benchmarks.py text=BENCH_A go=BENCH_B text+go=BENCH_C \\
        --base text+go [--arms st,memory] [--json benchmarks/results/prior_ablation_replogle_like.json]

Every run must be ``ptrag benchmark`` output on the same data and splits (the test groups are
matched by cell type and perturbation). For each split and arm it prints the mean of the headline
metrics per run, then each run against ``--base``: the mean difference (base − run), how many groups
the base wins, and the two-sided Wilcoxon p over test groups (each group's value is its mean over
the run's seeds, as in ``results_all.csv``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd
from scipy.stats import wilcoxon

METRICS = ("energy_gene", "mmd_gene", "w1", "pearson_delta")
HIGHER_IS_BETTER = {"pearson_delta"}
KEYS = ["cell_type", "perturbation"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", metavar="NAME=DIR")
    parser.add_argument("--base", required=True)
    parser.add_argument("--arms", default="st,memory")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs = dict(item.split("=", 1) for item in args.runs)
    frames = {name: pd.read_csv(Path(path) / "results_all.csv") for name, path in runs.items()}
    arms = args.arms.split(",")
    result: dict[str, Any] = {"runs": runs, "base": args.base, "splits": {}}
    for split in sorted(frames[args.base]["split"].unique()):
        means: dict[str, dict[str, dict[str, float]]] = {}
        tests: list[dict[str, Any]] = []
        print(f"\n{split}\n\n| arm | run | " + " | ".join(METRICS) + " |")
        print("|---|---|" + "---|" * len(METRICS))
        for arm in arms:
            rows = {
                name: frame[(frame["split"] == split) & (frame["method"] == arm)].set_index(KEYS)
                for name, frame in frames.items()
            }
            base = rows[args.base]
            for name, table in rows.items():
                means.setdefault(arm, {})[name] = {m: float(table[m].mean()) for m in METRICS}
                print(f"| {arm} | {name} | " + " | ".join(f"{table[m].mean():.4g}" for m in METRICS) + " |")
            for name, table in rows.items():
                if name == args.base:
                    continue
                other = table.loc[base.index]
                for m in METRICS:
                    difference = base[m] - other[m]
                    wins = difference > 0 if m in HIGHER_IS_BETTER else difference < 0
                    tests.append(
                        {
                            "arm": arm,
                            "against": name,
                            "metric": m,
                            "mean_diff": float(difference.mean()),
                            "base_better": int(wins.sum()),
                            "n": len(difference),
                            "p": float(wilcoxon(base[m], other[m]).pvalue),
                        }
                    )
        for t in tests:
            print(
                f"{t['arm']}: {args.base} vs {t['against']}, {t['metric']}: {t['mean_diff']:+.4g} "
                f"({t['base_better']}/{t['n']} better, p = {t['p']:.2g})"
            )
        result["splits"][split] = {"means": means, "tests": tests}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
