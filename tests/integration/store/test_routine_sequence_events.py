"""ledger_sequence_events: per-tenant positions in (txid, seq) order, never past a transaction still running."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest_asyncio


@pytest_asyncio.fixture
async def conns(routines_database_url):
    opened = [await asyncpg.connect(routines_database_url) for _ in range(2)]
    yield opened
    for conn in opened:
        await conn.close()


async def emit(conn: asyncpg.Connection, tenant: str, name: str) -> None:
    await conn.execute("SELECT ledger_event($1, 'ledger_transaction', $2, $3, '{}'::jsonb)", tenant, name,
                       uuid.uuid4())


async def positions(conn: asyncpg.Connection, tenant: str) -> list[tuple[str, int | None]]:
    rows = await conn.fetch("SELECT event_name, position FROM events WHERE tenant_id = $1 ORDER BY seq", tenant)
    return [(r["event_name"], r["position"]) for r in rows]


async def sequence_until(conn: asyncpg.Connection, tenant: str, name: str, deadline_s: float = 30.0) -> None:
    """Run the sequencer until `name` has a position (another database's short transaction may hold the
    cluster-wide horizon back for a moment)."""
    deadline = time.monotonic() + deadline_s
    while dict(await positions(conn, tenant)).get(name) is None:
        assert time.monotonic() < deadline, f"{name} never positioned"
        await conn.fetchval("SELECT ledger_sequence_events()")
        await asyncio.sleep(0.05)


async def test_positions_follow_transaction_order_and_wait_for_running_writers(conns):
    writer, other = conns
    tenant_a, tenant_b = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    await emit(other, tenant_a, "first")
    await emit(other, tenant_b, "b-first")
    async with writer.transaction():
        await emit(writer, tenant_a, "running")          # a running writer holds the horizon back
        await emit(other, tenant_a, "after")
        await sequence_until(other, tenant_a, "first")
        await sequence_until(other, tenant_b, "b-first")
        assert await positions(other, tenant_a) == [("first", 1), ("after", None)]
        assert await positions(other, tenant_b) == [("b-first", 1)]
    await sequence_until(other, tenant_a, "after")
    # the running writer's transaction began first: it comes first of what was left
    assert await positions(other, tenant_a) == [("first", 1), ("running", 2), ("after", 3)]


async def test_a_rolled_back_event_is_never_positioned(conns):
    conn = conns[0]
    tenant = f"r-{uuid.uuid4().hex[:8]}"
    tx = conn.transaction()
    await tx.start()
    await emit(conn, tenant, "gone")
    await tx.rollback()
    await emit(conn, tenant, "kept")
    await sequence_until(conn, tenant, "kept")
    assert await positions(conn, tenant) == [("kept", 1)]
