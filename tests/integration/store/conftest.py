"""Fixtures of the routine tests: a database of their own, a connection whose every test is rolled back, rows
set up by plain SQL, and a synchronous caller for hypothesis properties (which do not run async tests)."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest
import pytest_asyncio
from routine_helpers import raised


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
