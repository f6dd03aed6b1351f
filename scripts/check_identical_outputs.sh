#!/usr/bin/env bash
# Do a refactor's outputs stay byte-identical? Compares this tree with an older commit.
#
#   bash scripts/check_identical_outputs.sh OLD_COMMIT [WORK_DIR]
#
# Simulates the tiny screen and trains one short memory run with this tree, then runs `ptrag
# predict` (held-out groups), `ptrag screen` (every gene, k562) and `ptrag evaluate` on that run with
# both trees, and compares every written file byte for byte; an .h5ad whose bytes differ is compared by
# content (X, obs, var, layers, obsm, uns). Prints one line per file and exits 1 when any content differs.
set -euo pipefail
old_commit="$1"
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${2:-$(mktemp -d)}"
python="${PTRAG_PYTHON:-$root/.venv/bin/python}"
export OMP_NUM_THREADS=1 PYTHONDONTWRITEBYTECODE=1
mkdir -p "$work"
git -C "$root" worktree add --detach "$work/old" "$old_commit" > /dev/null
trap 'git -C "$root" worktree remove --force "$work/old"' EXIT
ptrag() { PYTHONPATH="$1/src" "$python" -m ptrag.cli.main "${@:2}" >> "$work/commands.log" 2>&1; }
ptrag "$root" simulate --preset tiny --out "$work/sim" --no-progress
ptrag "$root" train "$work/sim/data.h5ad" --split "$work/sim/split.toml" --out "$work/run" --arm memory \
    --set train.max_steps=20 --no-progress
for side in new old; do
    source_tree="$root"
    [ "$side" = old ] && source_tree="$work/old"
    out="$work/out_$side"
    ptrag "$source_tree" predict "$work/run" --data "$work/sim/data.h5ad" --out "$out/pred" --no-progress
    ptrag "$source_tree" screen "$work/run" --data "$work/sim/data.h5ad" --cell-type k562 --genes all \
        --out "$out/screen" --no-progress
    ptrag "$source_tree" evaluate "$out/pred" --no-de
done
status=0
for file in $(cd "$work/out_new" && find . -type f | sort); do
    if cmp -s "$work/out_new/$file" "$work/out_old/$file"; then
        echo "identical $file"
    elif [[ "$file" == *.h5ad ]] && "$python" - "$work/out_new/$file" "$work/out_old/$file" <<'PY'
import sys

import anndata as ad
import numpy as np


def same(a, b):
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return np.array_equal(np.asarray(a), np.asarray(b))


new, old = (ad.read_h5ad(path) for path in sys.argv[1:])
parts = [
    np.array_equal(new.X, old.X),
    new.obs.equals(old.obs),
    new.var.equals(old.var),
    same(dict(new.layers), dict(old.layers)),
    same(dict(new.obsm), dict(old.obsm)),
    same(new.uns, old.uns),
]
sys.exit(0 if all(parts) else 1)
PY
    then
        echo "same content $file (X, obs, var, layers, obsm, uns equal; the bytes differ, e.g. uns written in another order)"
    else
        echo "DIFFERENT $file"
        status=1
    fi
done
exit $status
