"""Benchmark harness: runs tests/bench/bench_*.py and writes build/bench/<name>.json.

Each bench module defines `NAME` (the JSON file's stem) and `run() -> dict` of
figures (flat keys as the issues name them; nested dicts are allowed for detail).
The harness adds the machine and kernel, writes the JSON and prints a table.

    .venv/bin/python tests/bench/run.py            # every benchmark
    .venv/bin/python tests/bench/run.py datapath   # only bench_datapath.py
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
OUT = REPO / "build" / "bench"


def machine() -> dict:
    return {
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "cpu_model": next((line.split(":", 1)[1].strip()
                           for line in Path("/proc/cpuinfo").read_text().splitlines()
                           if line.startswith("model name")), "unknown"),
    }


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(REPO / "tests"))
    spec.loader.exec_module(module)
    return module


def table(name: str, figures: dict) -> str:
    rows = [(k, v) for k, v in figures.items() if not isinstance(v, (dict, list))]
    width = max((len(k) for k, _ in rows), default=10)
    lines = [f"== {name}"]
    for key, value in rows:
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        lines.append(f"  {key:<{width}}  {shown}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    wanted = set(argv)
    failed = []
    for path in sorted(HERE.glob("bench_*.py")):
        module = load(path)
        name = getattr(module, "NAME", path.stem.removeprefix("bench_"))
        if wanted and name not in wanted:
            continue
        started = time.time()
        try:
            figures = module.run()
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        document = {**figures, "machine": machine(), "measured_at": started,
                    "duration_s": round(time.time() - started, 1)}
        (OUT / f"{name}.json").write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        print(table(name, figures), flush=True)
    if failed:
        print(f"benchmarks failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
