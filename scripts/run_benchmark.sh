#!/usr/bin/env bash
# Install ptrag and run the main job: the full benchmark on the bundled replogle-like screen.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
venv="${PTRAG_VENV:-.venv}"
out="${1:-ptrag-out/benchmark}"
# ptrag benchmark prints "report: $out/report.html" itself.
"$venv/bin/ptrag" benchmark --preset replogle-like --out "$out" --overwrite
