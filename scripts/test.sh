#!/usr/bin/env bash
# Install ptrag with its test dependencies and run the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
venv="${PTRAG_VENV:-.venv}"
# Two cores on CI: one torch/BLAS thread per test process avoids oversubscription.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
"$venv/bin/ruff" check src tests benchmarks scripts
"$venv/bin/python" -m pytest "$@"
