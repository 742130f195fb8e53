"""ledgerctl test helpers: run the CLI through click or as a process of its own, run a real cell process, hold a
lock in another session and watch who queues behind it, wait for a condition with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from datetime import UTC

import asyncpg
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


# ---- ledgerctl as a process of its own (killed, raced, run while a test holds a lock) ----------------------------

LEDGERCTL = (sys.executable, "-c", "from control_plane.cli import main; main()", "--format", "json")


def ledgerctl_env(stack, **settings: str) -> dict[str, str]:
    """The stack's environment, with CONTROL_PLANE_<NAME> for each of `settings` (e.g. move_batch_rows="1")."""
    return {**os.environ, **stack["env"], **{f"CONTROL_PLANE_{k.upper()}": v for k, v in settings.items()}}


def spawn(stack, *args: str, **settings: str) -> subprocess.Popen:
    """`ledgerctl --format json ARGS` in a session of its own (os.killpg kills it whole)."""
    return subprocess.Popen([*LEDGERCTL, *args], env=ledgerctl_env(stack, **settings), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)


async def spawn_async(stack, *args: str, **settings: str) -> asyncio.subprocess.Process:
    """spawn(), for a test that holds a lock meanwhile in its own event loop."""
    return await asyncio.create_subprocess_exec(*LEDGERCTL, *args, env=ledgerctl_env(stack, **settings),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                start_new_session=True)


async def finished(proc: asyncio.subprocess.Process, timeout_s: float = 120) -> tuple[int, dict]:
    """A spawned ledgerctl's exit code and its answer, once it ends (outcome())."""
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    return outcome(proc.returncode, out, err)


def outcome(rc: int, out: bytes, err: bytes) -> tuple[int, dict]:
    """A ledgerctl run's exit code and its answer (stdout) or its one-line problem (stderr), never a traceback."""
    assert b"Traceback" not in err, err.decode()
    return rc, json.loads(out if rc == 0 else err.decode().strip().splitlines()[-1])


def wait_until(condition, what: str, timeout_s: float = 60):
    """condition()'s first true value, waited for at most timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


async def until(condition, what: str, timeout_s: float = 60) -> None:
    """Until `await condition()` is true, for at most timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


# ---- a lock held in another session, and who queues behind it ----------------------------------------------------

class Watch:
    """A session counting the sessions of its database that wait for a lock."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def waiters(self, like: str) -> int:
        """Sessions waiting for a lock in a statement like `like` (ILIKE)."""
        return await self.conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                        "AND wait_event_type = 'Lock' AND query ILIKE $1", like)

    async def queued(self, proc: asyncio.subprocess.Process, like: str, n: int = 1, may_end: bool = False) -> bool:
        """Whether `n` sessions wait in a statement like `like`; `proc`, a spawned ledgerctl, still running (unless
        `may_end`: then its end counts as well)."""
        if proc.returncode is not None:
            assert may_end, await proc.stderr.read()
            return True
        return await self.waiters(like) >= n


@contextlib.asynccontextmanager
async def watching(url: str):
    conn = await asyncpg.connect(url)
    try:
        yield Watch(conn)
    finally:
        await conn.close()


class Held(Watch):
    """A lock another session holds in an open transaction (release() lets it go), watched from a second session."""

    def __init__(self, lock: asyncpg.Connection, transaction, watch: asyncpg.Connection) -> None:
        super().__init__(watch)
        self.lock, self.transaction, self.released = lock, transaction, False

    async def release(self) -> None:
        if not self.released:
            self.released = True
            await self.transaction.rollback()


@contextlib.asynccontextmanager
async def holding(url: str, statement: str, *args):
    """`statement` (a lock: SELECT ... FOR UPDATE, LOCK TABLE ...) run in a transaction left open on `url`'s database
    until release() or the block's end."""
    lock = await asyncpg.connect(url)
    try:
        transaction = lock.transaction()
        await transaction.start()
        await lock.execute(statement, *args)
        async with watching(url) as watch:
            held = Held(lock, transaction, watch.conn)
            try:
                yield held
            finally:
                await held.release()
    finally:
        await lock.close()


class ServerProcess:
    """A server of the stack run as its own process (`self.proc`, stderr piped) at `self.url`."""

    url: str
    proc: subprocess.Popen

    def _wait_for(self, path: str, what: str, timeout_s: float) -> None:
        """Until `path` answers 200; the process's last words if it exits first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{what} exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"{what}: {path} not 200 within {timeout_s} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class CellProcess(ServerProcess):
    def __init__(self, name: str, database_url: str, posting_mode: str = "sync") -> None:
        self.name = name
        self.database_url = database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "CELL_DATABASE_URL": database_url, "CELL_PORT": str(self.port), "CELL_NAME": name,
               "CELL_API_KEY_CACHE_TTL_S": "0.5", "CELL_DB_POOL_MIN": "1", "CELL_DB_POOL_MAX": "4",
               "CELL_POSTING_MODE": posting_mode,
               # Hybrid without a queue: what a posting queues stays queued until a test applies it (a worker's step).
               **({"CELL_SQS_QUEUE_URL": ""} if posting_mode == "hybrid" else {}),
               # No sweeper in these cells: effects a test queues stay unapplied until it applies them.
               "CELL_SWEEP_INTERVAL_S": "0"}
        self.proc = subprocess.Popen([sys.executable, "-m", "cell"], env=env, start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait_ready(self, timeout_s: float = 30) -> None:
        self._wait_for("/readyz", f"cell {self.name}", timeout_s)


class RouterProcess(ServerProcess):
    """`python -m router` in front of the stack's cells, its map loaded once as it starts: no pub/sub and no periodic
    reload for an hour, so a route it holds stays stale until a cell's 421 makes it reload (what a router between
    two of its ~5 s reloads does)."""

    def __init__(self, stack) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        env = {**os.environ, "ROUTER_CONTROL_PLANE_DATABASE_URL": stack["cp_url"], "ROUTER_REDIS_URL": "",
               "ROUTER_PORT": self.url.rsplit(":", 1)[1], "ROUTER_METRICS_PORT": "0",
               "ROUTER_RELOAD_INTERVAL_S": "3600"}
        self.proc = subprocess.Popen([sys.executable, "-m", "router"], env=env, start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait_started(self, timeout_s: float = 30) -> None:
        self._wait_for("/startupz", "router", timeout_s)


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
