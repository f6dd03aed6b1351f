"""A small gene table with the bundled table's columns, for tests of the simulator's mechanics."""

from __future__ import annotations

import numpy as np
import pandas as pd

FAMILIES = ("ribosome", "proteasome", "mediator", "rna_polymerase", "spliceosome", "exosome")


def standin_gene_table(n_background: int = 600, seed: int = 0) -> pd.DataFrame:
    """Fake symbols, with GO ids shared inside each family and sprinkled across 'other' genes."""
    rng = np.random.default_rng(seed)
    rows = []
    for f, family in enumerate(FAMILIES):
        for i in range(10):
            go = [
                f"GO:1{f:02d}0000",
                f"GO:1{f:02d}{rng.integers(1, 4):04d}",
                f"GO:9{rng.integers(0, 40):06d}",
            ]
            rows.append((f"{family[:3].upper()}{i}", family, go))
    for i in range(80):
        rows.append(
            (f"OTH{i}", "other", [f"GO:9{rng.integers(0, 40):06d}", f"GO:8{rng.integers(0, 30):06d}"])
        )
    for i in range(n_background):
        rows.append((f"BG{i}", "background", [f"GO:8{rng.integers(0, 300):06d}"]))
    table = pd.DataFrame(rows, columns=["symbol", "category", "go_ids"])
    table["entrez_id"] = np.arange(len(table)) + 1
    table["full_name"] = [f"gene {s}" for s in table["symbol"]]
    return table
