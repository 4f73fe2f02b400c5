"""Wall time of ``debiascl demo`` with one job and with several, and the ratio between them.

Each ``--jobs`` value is one ``debiascl demo --jobs N`` in its own process, into a fresh
temporary folder, one after another (never beside each other: they would share the cores).
``--jobs 1`` trains every run in the demo's process with torch's default thread count; ``--jobs
N`` in N worker processes with usable CPUs / N threads each. The two give the same table only
at the same thread count (``OMP_NUM_THREADS=1`` for both on a 2-core machine); the script prints
whether they did.

    python benchmarks/demo.py                 # --jobs 1, then one job per usable CPU
    python benchmarks/demo.py --jobs 1 2 4

Measure on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from debiascl.data.loading import available_cpus


def run_demo(jobs: int, folder: Path) -> tuple[float, str]:
    """Seconds ``debiascl demo --jobs jobs`` took (the whole process) and its probes table."""
    out = folder / f"jobs{jobs}"
    command = [sys.executable, "-m", "debiascl", "demo", "--jobs", str(jobs), "--out", str(out)]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started, (out / "probes.md").read_text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = [1, available_cpus()]
    parser.add_argument("--jobs", type=int, nargs="+", default=default, help="values to time")
    args = parser.parse_args()
    threads = os.environ.get("OMP_NUM_THREADS", "torch's default")
    print(f"debiascl demo, OMP_NUM_THREADS={threads}, {len(args.jobs)} runs one after another")
    print("| --jobs | wall time | ratio to the first |\n| ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as folder:
        results = [run_demo(jobs, Path(folder)) for jobs in args.jobs]
    for jobs, (seconds, _) in zip(args.jobs, results, strict=True):
        print(f"| {jobs} | {seconds:.0f} s | {results[0][0] / seconds:.2f}x |")
    same = all(table == results[0][1] for _, table in results)
    print(f"tables identical: {same}")


if __name__ == "__main__":
    main()
