"""A server URL whose password has a character it should have percent-encoded ('#', '/', '?'): what every process
says about it (the cell's, the worker's and the router's logs, ledgerctl's error) names the setting and never holds
a piece of the password. The URL parsers cut such a password into what they take for a port, a path or a query,
and quote that piece in their errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from control_plane.cli import cli
from control_plane.devstack import free_port

ROOT = Path(__file__).resolve().parents[3]
HEAD, TAIL = "Head5ecretPart", "Tail5ecretPart"
SEPARATORS = ("#", "/", "?")


def _pg_url(separator: str) -> str:
    return f"postgresql://ledger:{HEAD}{separator}{TAIL}@127.0.0.1:{free_port()}/ledger"


def _redis_url(separator: str) -> str:
    return f"redis://:{HEAD}{separator}{TAIL}@127.0.0.1:{free_port()}/0"


def _assert_no_secret(text: str) -> None:
    assert HEAD not in text and TAIL not in text, text[-3000:]


class _Process:
    """A component started as its image starts it, its output in a file read while it runs."""

    def __init__(self, module: str, env: dict[str, str]) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix=f"{module}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([sys.executable, "-m", module], cwd=tempfile.mkdtemp(),
                                     env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def wait_for(self, *needles: str, timeout_s: float = 60) -> str:
        """The log once it holds every needle (or the process has exited)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.text()
            if all(n in text for n in needles) or self.proc.poll() is not None:
                return text
            time.sleep(0.1)
        raise AssertionError(f"{needles} not logged within {timeout_s} s: {self.text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        os.unlink(self.log.name)


@pytest.mark.parametrize("separator", SEPARATORS)
def test_cell_log_holds_no_piece_of_its_database_password(separator):
    cell = _Process("cell", {"CELL_DATABASE_URL": _pg_url(separator), "CELL_PORT": str(free_port()),
                             "CELL_METRICS_PORT": "0"})
    try:
        cell.proc.wait(60)  # it cannot start
        text = cell.text()
    finally:
        cell.stop()
    assert "CELL_DATABASE_URL" in text
    _assert_no_secret(text)


@pytest.mark.parametrize("separator", SEPARATORS)
def test_worker_log_holds_no_piece_of_its_database_password(separator):
    worker = _Process("worker", {"WORKER_DATABASE_URL": _pg_url(separator), "WORKER_CELL_NAME": "secrets",
                                 "WORKER_SQS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
                                 "WORKER_METRICS_PORT": "0"})
    try:
        text = worker.wait_for("sweep failed", "sequence_events failed")
    finally:
        worker.stop()
    assert "WORKER_DATABASE_URL" in text
    _assert_no_secret(text)


@pytest.mark.parametrize("separator", SEPARATORS)
def test_router_log_holds_no_piece_of_its_control_plane_or_redis_password(separator):
    router = _Process("router", {"ROUTER_CONTROL_PLANE_DATABASE_URL": _pg_url(separator),
                                 "ROUTER_REDIS_URL": _redis_url(separator), "ROUTER_PORT": str(free_port()),
                                 "ROUTER_METRICS_PORT": "0", "ROUTER_RELOAD_INTERVAL_S": "0.2"})
    try:
        text = router.wait_for("routing table not loaded at start", "routing table reload failed",
                               "route pub/sub interrupted")
    finally:
        router.stop()
    assert "ROUTER_CONTROL_PLANE_DATABASE_URL" in text and "ROUTER_REDIS_URL" in text
    _assert_no_secret(text)


@pytest.mark.parametrize("separator", SEPARATORS)
def test_ledgerctl_error_holds_no_piece_of_a_database_password(separator):
    for args in (["--database-url", _pg_url(separator), "cells", "list"],):
        for format_ in ("json", "pretty"):
            result = CliRunner().invoke(cli, ["--format", format_, *args], catch_exceptions=False)
            assert result.exit_code == 1, (result.stdout, result.stderr)
            _assert_no_secret(result.stdout + result.stderr)
            if format_ == "json":
                assert json.loads(result.stderr.strip().splitlines()[-1])["code"] == "invalid_database_url"


@pytest.mark.parametrize("separator", SEPARATORS)
def test_worker_log_holds_no_piece_of_its_broker_password(separator, sqs_endpoint_url, cell_database_url):
    worker = _Process("worker", {"WORKER_DATABASE_URL": cell_database_url,
                                 "WORKER_CELL_NAME": f"secrets-{ord(separator)}", "WORKER_BROKER_URL":
                                 _redis_url(separator), "WORKER_SQS_ENDPOINT_URL": sqs_endpoint_url,
                                 "WORKER_METRICS_PORT": "0"})
    try:
        text = worker.wait_for("WORKER_BROKER_URL")
        worker.proc.wait(30)  # a worker without a broker it can read does not start
        text = worker.text()
    finally:
        worker.stop()
    _assert_no_secret(text)
