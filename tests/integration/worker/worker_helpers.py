"""Helpers of the worker tests: fresh tenants with accounts (in the store or through the API), postings through `ledger_post`, balances, the
invariants, and `python -m worker` as a subprocess."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
import msgspec

from cell.ledger.models import (
    Condition,
    EntryRequest,
    Posting,
    TransactionState,
    VersionEntry,
)
from cell.service.tenants import create_api_key, create_tenant
from cell.store import transactions
from cell.store.transactions import PostResult
from worker.settings import WorkerSettings
from worker.sqs import SqsQueue

REPO = Path(__file__).resolve().parents[3]


@dataclass
class Book:
    """One tenant's ledger: accounts by name, and the model of what their balances must be."""

    tenant: str
    ledger: uuid.UUID
    accounts: dict[str, uuid.UUID] = field(default_factory=dict)
    normal: dict[str, str] = field(default_factory=dict)

    def id(self, name: str) -> uuid.UUID:
        return self.accounts[name]


async def new_book(conn: asyncpg.Connection, names: dict[str, str], *, sync_only: tuple[str, ...] = ()) -> Book:
    """A fresh tenant and ledger with accounts {name: normal_balance}, each with its balance row."""
    tenant = "t" + uuid.uuid4().hex[:12]
    book = Book(tenant, uuid.uuid4())
    await conn.execute("INSERT INTO tenants (id) VALUES ($1)", tenant)
    await conn.execute("INSERT INTO ledgers (id, tenant_id, name) VALUES ($1, $2, 'l')", book.ledger, tenant)
    for name, normal in names.items():
        account = uuid.uuid4()
        await conn.execute(
            "INSERT INTO ledger_accounts (id, tenant_id, ledger_id, name, normal_balance, currency, currency_exponent,"
            " sync_only) VALUES ($1, $2, $3, $4, $5, 'USD', 2, $6)",
            account, tenant, book.ledger, name, normal, name in sync_only)
        await conn.execute("INSERT INTO account_balances (account_id, tenant_id) VALUES ($1, $2)", account, tenant)
        book.accounts[name] = account
        book.normal[name] = normal
    return book


async def post(conn: asyncpg.Connection, book: Book, entries: list[tuple[str, str, int]], *,
               sync: tuple[str, ...] = (), locks: dict[str, dict] | None = None, status: str = "posted",
               effective_at: datetime | None = None) -> PostResult:
    """One posting through the store (ledger_post), as the cell writes it: entries are (account name, direction,
    amount); `sync` names the accounts applied inside the posting (the sync path), the others are left unapplied
    (the async path); `locks` maps an account name to its balance locks ({"available_balance_amount": {"gte": 0}})."""
    locks = locks or {}
    requests = [EntryRequest(str(book.id(n)), d, a, Condition(locks.get(n, {}))) for n, d, a in entries]
    state = TransactionState(
        id=uuid.uuid4(), ledger_id=book.ledger, description="t", status=status,
        effective_at=effective_at or datetime.now(timezone.utc), external_id=None, metadata={},
        reverses_ledger_transaction_id=None,
        ledger_entries=[VersionEntry(uuid.uuid4(), book.id(n), d, a) for n, d, a in entries])
    return await transactions.post(conn, Posting(tenant_id=book.tenant, state=state, entries=requests,
                                                 apply_accounts=sorted(str(book.id(n)) for n in sync)))


async def totals(conn: asyncpg.Connection, book: Book, name: str) -> dict:
    row = await conn.fetchrow("SELECT pending_debits, pending_credits, posted_debits, posted_credits, lock_version"
                              " FROM account_balances WHERE account_id = $1", book.id(name))
    return dict(row)


async def unapplied(conn: asyncpg.Connection, book: Book) -> dict[uuid.UUID, int]:
    rows = await conn.fetch("SELECT account_id, count(*) AS n FROM balance_effects"
                            " WHERE tenant_id = $1 AND applied_at IS NULL GROUP BY account_id", book.tenant)
    return {r["account_id"]: r["n"] for r in rows}


async def assert_invariants(conn: asyncpg.Connection, book: Book, *, all_applied: bool = True) -> None:
    """DESIGN.md section 8 for this tenant (cell.store.verify), and, when asked, an empty queue."""
    from cell.store.verify import verify

    assert await verify(conn, book.tenant) == []
    if all_applied:
        assert await unapplied(conn, book) == {}


async def api_book(client, pool: asyncpg.Pool, ledger: str, accounts: dict[str, str]) -> tuple[tuple[str, str], dict]:
    """A fresh tenant with an API key and, made through the API, a ledger with USD accounts ({name: normal
    balance}): the basic-auth pair and the ids ({"ledger": id, name: id})."""
    async with pool.acquire() as conn:
        tenant = f"t-{uuid.uuid4().hex[:12]}"
        await create_tenant(conn, tenant)
        _, secret = await create_api_key(conn, tenant)
    auth = (tenant, secret)
    r = await client.post("/api/ledgers", json={"name": ledger}, auth=auth)
    assert r.status_code == 201, r.text
    ids = {"ledger": r.json()["id"]}
    for name, normal in accounts.items():
        r = await client.post("/api/ledger_accounts", auth=auth, json={
            "name": name, "ledger_id": ids["ledger"], "normal_balance": normal, "currency": "USD"})
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
    return auth, ids


def worker_settings(queue: SqsQueue, **overrides) -> WorkerSettings:
    return msgspec.structs.replace(queue.settings, **overrides)


async def wait_until(predicate, timeout_s: float = 20.0, every_s: float = 0.1, what: str = "condition"):
    """Poll an async predicate; a bound on waiting, not a speed assertion."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(every_s)


class WorkerProcess:
    """`python -m worker` in its own process group (SIGKILL takes its embedded beat with it)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> "WorkerProcess":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "worker"], cwd=REPO, env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def discard(self) -> None:
        """The end of a test: killed, not stopped, since a warm shutdown (SIGTERM) waits out a running drain
        task (WORKER_DRAIN_RUN_S) and no test looks at how its workers end."""
        self.kill()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


async def end_listening_session(admin, channel: str, what: str) -> None:
    """Wait until a session of this database listens on `channel`, idle, and have PostgreSQL end it (as a restart or
    a terminated backend would). `admin`: a connection that sees others' sessions (the app role does not)."""

    async def listener():
        return await admin.fetchval("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                                    " AND query LIKE $1 AND state = 'idle'", f"LISTEN%{channel}%")

    pid = await wait_until(listener, what=what)
    assert await admin.fetchval("SELECT pg_terminate_backend($1, 10000)", pid) is True
