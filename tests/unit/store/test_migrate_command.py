"""`python -m cell.store.migrate URL` (what `make migrate` and the image's `migrate` run): an operator's slip is one
line and an exit code, never a traceback, and no URL never means libpq's default database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _migrate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return subprocess.run([sys.executable, "-m", "cell.store.migrate", *args], cwd=ROOT, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=30)


def test_no_database_url_is_a_usage_error_that_connects_to_no_default_database():
    # `make migrate` with LEDGER_DATABASE_URL unset passes "": libpq's defaults (PGHOST/PGPORT, else localhost:5432)
    # would pick a database the operator never named. A listener there must see no connection.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        for args in ((), ("",)):
            done = _migrate(*args, env={"PGHOST": "127.0.0.1", "PGPORT": str(listener.getsockname()[1])})
            assert done.returncode == 2, done.stderr
            assert "Traceback" not in done.stderr
            assert "database URL" in done.stderr and "LEDGER_DATABASE_URL" in done.stderr
            try:
                listener.accept()[0].close()
                raise AssertionError("it connected to libpq's default database")
            except BlockingIOError:
                pass


def test_an_unreachable_database_is_one_line_and_exit_4():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: refused
        done = _migrate(f"postgresql://ledger:s3cret@127.0.0.1:{port}/ledger")
    assert done.returncode == 4, done.stderr
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and "unreachable" in done.stderr


def test_a_malformed_url_is_named_by_its_setting_only():
    done = _migrate("postgresql://ledger:pa#ss@127.0.0.1:5432/ledger")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "pa#" not in done.stderr and "ss@" not in done.stderr
    assert "the database URL is not a valid URL" in done.stderr
