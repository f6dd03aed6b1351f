"""The walk of one `ptrag predict`: every ptrag function it calls (once each, in order of first call)
and the modules they live in. Import-time calls (registries, presets) are excluded by importing every
module before tracing.

    python benchmarks/predict_walk.py RUN DATA OUT    # prints counts; OUT.walk.tsv lists the calls
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any


def main() -> None:
    run, data, out = sys.argv[1:4]
    import ptrag
    from ptrag.cli.main import main as cli

    for info in pkgutil.walk_packages(ptrag.__path__, "ptrag."):
        importlib.import_module(info.name)
    package = Path(ptrag.__file__).parent
    calls: OrderedDict[tuple[str, str], int] = OrderedDict()

    def profiler(frame: Any, event: str, arg: object) -> None:
        code = frame.f_code
        if event != "call" or code.co_name.startswith("<") or not code.co_filename.startswith(str(package)):
            return
        key = (str(Path(code.co_filename).relative_to(package)), code.co_qualname)
        calls[key] = calls.get(key, 0) + 1

    sys.setprofile(profiler)
    try:
        cli(["predict", run, "--data", data, "--out", out, "--no-progress", "--overwrite"])
    except SystemExit:
        pass
    finally:
        sys.setprofile(None)
    modules = list(dict.fromkeys(module for module, _ in calls))
    print(json.dumps({"functions": len(calls), "modules": len(modules), "module_order": modules}, indent=1))
    with open(f"{out}.walk.tsv", "w") as handle:
        handle.writelines(f"{module}\t{name}\t{n}\n" for (module, name), n in calls.items())


if __name__ == "__main__":
    main()
