"""The bulk benchmark runs as the performance team runs it (`python -m loadtests.bench_bulk`, its own PostgreSQL, SQS
endpoint, Valkey, cell and worker), small: it once stopped running unnoticed when a helper it shares with
loadtests.hot_account changed its arguments. What it measures is not asserted here (speed is measured by the benchmark
itself): only that it runs to its end and the books it wrote hold every invariant."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN_S_MAX = 300  # its servers' start and stop, on a loaded machine


def test_the_bulk_benchmark_runs_to_its_end_and_its_books_hold():
    done = subprocess.run([sys.executable, "-m", "loadtests.bench_bulk", "--concurrency", "4", "--transactions", "40"],
                          cwd=ROOT, capture_output=True, text=True, timeout=RUN_S_MAX, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "one bulk request" in done.stdout and "invariants: hold" in done.stdout, done.stdout[-3000:]
