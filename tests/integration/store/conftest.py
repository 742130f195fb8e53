"""Fixtures of the routine tests: a database of their own, a connection whose every test is rolled back, rows
set up by plain SQL, and a synchronous caller for hypothesis properties (which do not run async tests)."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass

import asyncpg
import pytest
import pytest_asyncio


@pytest.fixture(scope="session")
def routines_database_url(make_database):
    return make_database("routines_test")


async def _connect(url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(url)
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    return conn


@pytest_asyncio.fixture(scope="session")
async def _session_conn(routines_database_url):
    conn = await _connect(routines_database_url)
    yield conn
    await conn.close()


@pytest_asyncio.fixture
async def db(_session_conn):
    """The owner's connection inside a transaction rolled back after the test: nothing a test writes stays."""
    tx = _session_conn.transaction()
    await tx.start()
    yield _session_conn
    await tx.rollback()


async def raised(conn: asyncpg.Connection, query: str, *args) -> asyncpg.PostgresError | None:
    """The error a statement raises (rolled back to a savepoint, the test goes on), or None."""
    try:
        async with conn.transaction():
            await conn.execute(query, *args) if not args else await conn.fetch(query, *args)
    except asyncpg.PostgresError as exc:
        return exc
    return None


@dataclass
class Account:
    id: uuid.UUID
    tenant: str
    normal: str


async def new_ledger(conn: asyncpg.Connection, state: str = "active") -> tuple[str, uuid.UUID]:
    tenant, ledger = "t" + uuid.uuid4().hex[:12], uuid.uuid4()
    await conn.execute("INSERT INTO tenants (id, state) VALUES ($1, $2)", tenant, state)
    await conn.execute("INSERT INTO ledgers (id, tenant_id, name) VALUES ($1, $2, 'l')", ledger, tenant)
    return tenant, ledger


async def new_account(conn: asyncpg.Connection, normal: str = "credit", *, tenant: str | None = None,
                      ledger: uuid.UUID | None = None, pending_debits: int = 0, pending_credits: int = 0,
                      posted_debits: int = 0, posted_credits: int = 0, lock_version: int = 0,
                      sync_only: bool = False) -> Account:
    """An account whose balance row holds the given totals (no effects behind them: the routine under test
    reads the row, and these tests never run the invariants' verifier)."""
    if tenant is None:
        tenant, ledger = await new_ledger(conn)
    account = uuid.uuid4()
    await conn.execute(
        "INSERT INTO ledger_accounts (id, tenant_id, ledger_id, name, normal_balance, currency, currency_exponent,"
        " sync_only) VALUES ($1, $2, $3, 'a', $4, 'USD', 2, $5)", account, tenant, ledger, normal, sync_only)
    await conn.execute(
        "INSERT INTO account_balances (account_id, tenant_id, pending_debits, pending_credits, posted_debits,"
        " posted_credits, lock_version) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        account, tenant, pending_debits, pending_credits, posted_debits, posted_credits, lock_version)
    return Account(account, tenant, normal)


class SyncDb:
    """One connection driven from synchronous code, for hypothesis: every call runs to completion on its own
    event loop, inside one transaction rolled back when the module's tests are done."""

    def __init__(self, url: str) -> None:
        self.runner = asyncio.Runner(loop_factory=asyncio.new_event_loop)  # leaves the session loop alone
        self.conn = self.run(_connect(url))
        self.tx = self.conn.transaction()
        self.run(self.tx.start())

    def run(self, coro):
        return self.runner.run(coro)

    def fetchrow(self, query: str, *args):
        return self.run(self.conn.fetchrow(query, *args))

    def fetchval(self, query: str, *args):
        return self.run(self.conn.fetchval(query, *args))

    def raised(self, query: str, *args) -> asyncpg.PostgresError | None:
        return self.run(raised(self.conn, query, *args))

    def close(self) -> None:
        self.run(self.tx.rollback())
        self.run(self.conn.close())
        self.runner.close()


@pytest.fixture(scope="module")
def sync_db(routines_database_url):
    db = SyncDb(routines_database_url)
    yield db
    db.close()
