"""CPU seconds a fresh Python process spends importing what a command needs: every `ssr-jax` command, and every test
that starts one, pays it before doing anything.

  python benchmarks/import_cost.py                   # a table: median of --repeats fresh processes per statement
  python benchmarks/import_cost.py --out benchmarks/records/import_cost.json   # and every run's figures as JSON
  python benchmarks/import_cost.py --python OTHER_VENV/bin/python --imports numpy,ml_dtypes,jax   # another stack

CPU (user + system, the children's rusage), not wall: on a busy machine wall time measures the neighbours.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys

STATEMENTS = {
    "python": "pass",
    "numpy": "import numpy",
    "ml_dtypes": "import ml_dtypes",
    "jax": "import jax",
    "ssr_jax.train": "import ssr_jax.train",
    "ssr_jax.sweep": "import ssr_jax.sweep",
    "ssr_jax.report": "import ssr_jax.report",
}
# Run by the timed interpreter: the versions it has installed (None: not installed there).
VERSIONS = """
import json
from importlib import metadata

def version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None

print(json.dumps({name: version(name) for name in ("numpy", "ml_dtypes", "jax", "jaxlib", "flax")}))
"""
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_seconds(python: str, statement: str) -> float:
    """User + system CPU of one fresh `python -c statement`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([python, "-c", statement], check=True, cwd=REPO)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--python", default=sys.executable, help="the interpreter (and so the installed stack) to time")
    parser.add_argument("--imports", default=",".join(STATEMENTS), help="which of: " + ",".join(STATEMENTS))
    parser.add_argument("--out", default="", help="also write the figures (every run) to this JSON file")
    args = parser.parse_args()
    runs = {name: [cpu_seconds(args.python, STATEMENTS[name]) for _ in range(args.repeats)]
            for name in args.imports.split(",")}
    versions = subprocess.run([args.python, "-c", VERSIONS], check=True, capture_output=True, text=True).stdout
    record = {"machine": platform.processor() or platform.machine(), "python": args.python,
              "versions": json.loads(versions),
              "cpu_s": {name: {"median": statistics.median(values), "runs": values} for name, values in runs.items()}}
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(", ".join(f"{name} {version}" for name, version in record["versions"].items()))
    print(f"{'import':16} {'CPU s, median':>14} {'min':>6} {'max':>6}")
    for name, values in runs.items():
        print(f"{name:16} {statistics.median(values):14.2f} {min(values):6.2f} {max(values):6.2f}")


if __name__ == "__main__":
    main()
