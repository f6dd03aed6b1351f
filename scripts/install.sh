#!/usr/bin/env bash
# Install ptrag into a virtual environment (default .venv), CPU torch on machines without a GPU.
#   bash scripts/install.sh [EXTRAS]      e.g. bash scripts/install.sh test
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
venv="${PTRAG_VENV:-.venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
# --no-compile: pip byte-compiles every file of every package it installs, about half the install's
# time; the step at the end compiles only what ptrag imports.
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q install --no-compile)

has_gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then has_gpu=1; fi

# torch goes in first and pinned: an unpinned torch pulled in by a dependency is a multi-GB CUDA
# build. Without a GPU, 2.13.0 resolves to the CPU wheel (the local wheelhouse here; elsewhere set
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu).
if ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
  "${pip[@]}" "torch==${PTRAG_TORCH_VERSION:-2.13.0}"
fi
spec="."
[ -n "$extras" ] && spec=".[$extras]"
"${pip[@]}" -e "$spec"

if [ "$has_gpu" = 0 ] && "$venv/bin/python" -m pip list 2>/dev/null | grep -qiE '^nvidia-|^triton '; then
  echo "install.sh: CUDA packages were installed on a machine without a GPU:" >&2
  "$venv/bin/python" -m pip list 2>/dev/null | grep -iE '^nvidia-|^triton ' >&2
  exit 1
fi
# Byte-compile ptrag's modules and the libraries its commands load (once; PYTHONDONTWRITEBYTECODE,
# set on some machines, is cleared for this one run so that every later run starts from bytecode).
PYTHONDONTWRITEBYTECODE= "$venv/bin/python" - <<'PY'
import importlib
import pkgutil

import ptrag

for module in pkgutil.walk_packages(ptrag.__path__, "ptrag."):
    importlib.import_module(module.name)
for name in (
    "anndata", "geomloss", "lightning.pytorch.loggers", "matplotlib.pyplot", "ot", "scipy.stats",
    "sklearn.cluster", "sklearn.decomposition", "statsmodels.regression.quantile_regression",
):
    importlib.import_module(name)
PY
echo "installed ptrag into $venv (torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)'))"
