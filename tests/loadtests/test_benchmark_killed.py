"""A benchmark killed leaves nothing behind. Run as the performance team runs it, `python -m
loadtests.router_overhead` (an embedded PostgreSQL, a cell and a router of its own) is killed once its servers are up
and measuring:
- by SIGTERM (`timeout`, a cancelled job, `kill`), sent again while it stops them: it stops its servers as on
  Ctrl-C and exits 143 (loadtests/httpload.run);
- by SIGKILL (the OOM killer, `timeout -s KILL`): its watcher stops them (loadtests/reaper.py).
Either way no process and no directory of the benchmark's is left."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
START_S_MAX = 180  # its PostgreSQL, cell and router up, on a loaded machine
STOP_S_MAX = 90  # pg_ctl stop and each server's graceful stop, on a loaded machine


def _processes_naming(path: str) -> list[psutil.Process]:
    """Every process whose command line names `path` (the benchmark's PostgreSQL: pg_ctl daemonizes it)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(path in part for part in proc.info["cmdline"] or ()):
            found.append(proc)
    return found


def _output(bench: subprocess.Popen, log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else f"(no output; exit {bench.poll()})"


def _only_the_log_left(tmp: str) -> bool:
    return [p.name for p in Path(tmp).iterdir()] == ["bench.log"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_benchmark_killed_leaves_no_server_and_no_directory(sig):
    # Short: PostgreSQL's socket lives under the benchmark's directory, made in TMPDIR.
    tmp = tempfile.mkdtemp(prefix="lbt-", dir="/tmp")
    log = Path(tmp) / "bench.log"
    with open(log, "wb") as out:
        bench = subprocess.Popen([sys.executable, "-m", "loadtests.router_overhead", "--phases", "reads",
                                  "--duration", "600", "--rounds", "1"], cwd=ROOT, env={**os.environ, "TMPDIR": tmp},
                                 stdout=out, stderr=subprocess.STDOUT)
    servers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + START_S_MAX
        while True:  # its router is started last, once the cell and the books are ready
            assert bench.poll() is None, _output(bench, log)
            try:
                children = psutil.Process(bench.pid).children(recursive=True)
                commands = [" ".join(child.cmdline()) for child in children]
            except psutil.NoSuchProcess:
                continue
            postgres = [p for p in _processes_naming(tmp) if p.pid != bench.pid]
            if any(c.endswith("-m router") for c in commands) and any(c.endswith("-m cell") for c in commands) \
                    and postgres:
                break
            assert time.monotonic() < deadline, f"the benchmark's servers did not start: {_output(bench, log)}"
            time.sleep(0.2)
        servers = children + postgres

        bench.send_signal(sig)
        if sig == signal.SIGTERM:
            # A second one while it stops, as `timeout 900 make bench` sends them (to make and to its process
            # group): ignored, the stopping goes on.
            deadline = time.monotonic() + STOP_S_MAX
            while all(server.is_running() for server in servers) and bench.poll() is None \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
            if bench.poll() is None:
                bench.send_signal(signal.SIGTERM)
        try:
            code = bench.wait(STOP_S_MAX)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{sig.name} did not stop the benchmark: {_output(bench, log)}") from None
        assert code == (128 + signal.SIGTERM if sig == signal.SIGTERM else -signal.SIGKILL), _output(bench, log)
        _, alive = psutil.wait_procs(servers, timeout=STOP_S_MAX)
        assert not alive, [" ".join(p.cmdline()) for p in alive]
        assert not _processes_naming(tmp)
        deadline = time.monotonic() + STOP_S_MAX
        while not _only_the_log_left(tmp) and time.monotonic() < deadline:  # its working directories removed
            time.sleep(0.05)
        assert _only_the_log_left(tmp), list(Path(tmp).rglob("*"))[:20]
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
        for proc in servers + _processes_naming(tmp):  # what a failed run left: not for the next tests to trip on
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
