"""What `make loadtest` samples beside Locust (loadtests/monitor.py) and how report.md tells it."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from control_plane.devstack import free_port
from loadtests import report
from loadtests.monitor import Monitor, Stack, interval_lags, lag_quantile


def sample(monitor: Monitor, rows: int) -> list[dict]:
    """Run the monitor until it wrote `rows` samples (10 s at most), stop it, and read monitor.csv."""
    path = monitor.out_dir / "monitor.csv"
    monitor.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (not path.exists() or len(path.read_text().splitlines()) <= rows):
        time.sleep(0.02)
    monitor.stop()
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_stats(run_dir: Path) -> None:
    with (run_dir / f"{report.PREFIX}_stats.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Type", "Name", "Request Count", "Failure Count", "Requests/s", "50%", "90%", "99%",
                         "Average Response Time", "Max Response Time"])
        writer.writerow(["", "Aggregated", 100, 0, 50, 5, 9, 12, 6, 20])


def test_a_queue_no_metrics_endpoint_answered_for_is_not_measured_not_empty(tmp_path):
    """A host whose cells' /metrics cannot be reached (another machine, a cell not started by `make run`, a
    metrics port down): the report must not say the async queue was 0 and the apply lag nil; it says it was not
    measured, and how to give the endpoints."""
    dead = f"http://127.0.0.1:{free_port()}/metrics"
    rows = sample(Monitor(tmp_path, Stack("http://ledger.invalid:8000"), [dead], interval_s=0.05), 2)
    assert len(rows) >= 2 and all(r["unapplied_effects"] == "" for r in rows), rows
    write_stats(tmp_path)
    md = report.generate(tmp_path).read_text()
    assert "Largest async queue" not in md and "not measured" in md and "--metrics" in md, md
    assert "unapplied balance effects" not in md  # no chart of zeros


class LateStack(Stack):
    """A stack whose processes are found only once `shown` holds some (as a server's new processes, a database
    connection's backend, are found at the next re-discovery, REFIND_S later)."""

    def __init__(self) -> None:
        super().__init__("http://ledger.invalid:8000")
        self.shown: dict = {}

    def processes(self):
        return dict(self.shown)


def test_a_process_started_during_the_run_is_counted_from_its_start(tmp_path):
    """CPU a process spent before the monitor first saw it (a PostgreSQL backend for a connection the load opened,
    a restarted cell) was the run's, and was dropped: the process counted only from its discovery."""
    stack = LateStack()
    monitor = Monitor(tmp_path, stack, [], interval_s=0.05)
    monitor.start()
    deadline = time.monotonic() + 10
    while not (tmp_path / "monitor.csv").exists() and time.monotonic() < deadline:
        time.sleep(0.02)  # the baseline is taken
    busy = subprocess.Popen([sys.executable, "-c",
                             "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\n"
                             "time.sleep(60)"])
    try:
        process = psutil.Process(busy.pid)
        deadline = time.monotonic() + 20
        while sum(process.cpu_times()[:2]) < 0.4 and time.monotonic() < deadline:
            time.sleep(0.02)
        stack.shown = {busy.pid: ("postgresql", process)}
        rows = len((tmp_path / "monitor.csv").read_text().splitlines())
        while len((tmp_path / "monitor.csv").read_text().splitlines()) < rows + 2 and time.monotonic() < deadline:
            time.sleep(0.02)  # sampled since
        monitor.stop()
    finally:
        busy.kill()
        busy.wait()
    assert json.loads((tmp_path / "cpu.json").read_text())["cpu_s"].get("postgresql", 0) >= 0.35


def test_the_apply_lag_quantiles_are_estimated_within_their_bucket_not_its_upper_bound():
    """The worker's histogram has buckets up to 0.25 and 0.5 s: lags of 0.26-0.30 s were all reported as a p90
    of 0.5 s (up to twice the lag). Estimated as Prometheus's histogram_quantile does: linearly inside the bucket."""
    name = 'ledger_apply_lag_seconds_bucket{le="%s"}'
    before = {name % le: 0.0 for le in ("0.1", "0.25", "0.5", "+Inf")}
    after = {name % "0.1": 0.0, name % "0.25": 50.0, name % "0.5": 100.0, name % "+Inf": 100.0}
    assert lag_quantile(before, after, 0.5) == pytest.approx(0.25)
    assert lag_quantile(before, after, 0.9) == pytest.approx(0.45)
    assert lag_quantile(before, after, 0.2) == pytest.approx(0.1 + 0.15 * 20 / 50)
    beyond = {**after, name % "+Inf": 200.0}  # half past the last bound: no upper bound to reach, that bound
    assert lag_quantile(before, beyond, 0.9) == pytest.approx(0.5)
    assert lag_quantile(before, before, 0.9) is None  # nothing applied in the interval


def test_an_endpoint_that_missed_a_scrape_or_restarted_adds_no_lags_from_before_the_interval():
    """A worker whose /metrics did not answer last time (busy, restarting) answers now with every lag since it
    started; one restarted since last time counts from zero again. Neither is the interval's: only endpoints read
    at both ends, their counts not reset, make the interval's quantiles."""
    name = 'ledger_apply_lag_seconds_bucket{le="%s"}'

    def buckets(fast: float, slow: float) -> dict[str, float]:  # fast: <= 0.005 s; slow: 0.1-0.25 s
        return {name % "0.005": fast, name % "0.1": fast, name % "0.25": fast + slow, name % "+Inf": fast + slow}

    busy = {"a": buckets(0, 100), "b": {}}
    now = {"a": buckets(0, 200), "b": buckets(100_000, 0)}  # b: its whole history, all fast
    assert interval_lags(busy, now, (0.5,))[0] == pytest.approx(0.175)
    restarted = {"a": buckets(0, 100), "b": buckets(100_000, 0)}
    now = {"a": buckets(0, 200), "b": buckets(10, 0)}
    assert interval_lags(restarted, now, (0.5,))[0] == pytest.approx(0.175)
