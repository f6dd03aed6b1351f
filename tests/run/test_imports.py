"""Prediction builds on the run package only: importing it pulls in no training code."""

from __future__ import annotations

import subprocess
import sys


def test_prediction_imports_nothing_from_training() -> None:
    code = (
        "import sys\n"
        "import ptrag.prediction.predict, ptrag.prediction.insilico, ptrag.prediction.write\n"
        "import ptrag.run\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('ptrag.training', 'lightning')))\n"
        "print(loaded)\n"
    )
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == "[]"
