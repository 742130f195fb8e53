"""ledgerctl test helpers: run the CLI through click, run a real cell process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from datetime import UTC

from click.testing import CliRunner

from control_plane.cli import cli
from control_plane.devstack import free_port


class Ledgerctl:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, *args: str, input: str | None = None, expect: int = 0):
        result = CliRunner().invoke(cli, list(args), input=input, env=self.env, catch_exceptions=False)
        assert result.exit_code == expect, (args, result.exit_code, result.stdout, result.stderr)
        return result

    def json(self, *args: str, input: str | None = None, expect: int = 0):
        result = self("--format", "json", *args, input=input, expect=expect)
        return json.loads(result.stdout) if expect == 0 else json.loads(result.stderr.strip().splitlines()[-1])


class CellProcess:
    def __init__(self, name: str, database_url: str) -> None:
        self.name = name
        self.database_url = database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "CELL_DATABASE_URL": database_url, "CELL_PORT": str(self.port), "CELL_NAME": name,
               "CELL_API_KEY_CACHE_TTL_S": "0.5", "CELL_DB_POOL_MIN": "1", "CELL_DB_POOL_MAX": "4",
               "CELL_POSTING_MODE": "sync",
               # No sweeper in these cells: effects a test queues stay unapplied until it applies them.
               "CELL_SWEEP_INTERVAL_S": "0"}
        self.proc = subprocess.Popen([sys.executable, "-m", "cell"], env=env, start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cell {self.name} exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"cell {self.name} not ready")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def queue_payment(database_url: str, tenant_id: str, ledger_id: str, debit: str, credit: str, amount: int) -> None:
    """A posting written as the async path writes it (ledger_post, its effects left unapplied), straight through
    the store: these cells run in sync mode and would apply it at once."""
    import asyncio
    import uuid as uuid_
    from datetime import datetime

    import asyncpg

    from cell.ledger.models import (
        Condition,
        EntryRequest,
        Posting,
        TransactionState,
        VersionEntry,
    )
    from cell.store import transactions
    from cell.store.db import _init_connection

    entries = [(debit, "debit"), (credit, "credit")]
    state = TransactionState(
        id=uuid_.uuid4(), ledger_id=uuid_.UUID(ledger_id), description="queued", status="posted",
        effective_at=datetime.now(UTC), external_id=None, metadata={}, reverses_ledger_transaction_id=None,
        ledger_entries=[VersionEntry(uuid_.uuid4(), uuid_.UUID(a), d, amount) for a, d in entries])
    posting = Posting(tenant_id=tenant_id, state=state, entries=[EntryRequest(a, d, amount, Condition({}))
                                                                 for a, d in entries], apply_accounts=[])

    async def go():
        conn = await asyncpg.connect(database_url)
        try:
            await _init_connection(conn)
            await transactions.post(conn, posting)
        finally:
            await conn.close()

    asyncio.run(go())
