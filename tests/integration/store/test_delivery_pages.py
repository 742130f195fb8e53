"""A client paging forward through a tenant's webhook deliveries (after the last one it saw) is never skipped past one:
deliveries made by fan-outs whose transactions commit out of order still come on a later page."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from cell.service import webhooks
from cell.store import webhooks as store

DEADLINE_S = 10.0


async def endpoint(conn: asyncpg.Connection, tenant: str) -> object:
    return await conn.fetchval(
        "INSERT INTO webhook_endpoints (id, tenant_id, url, event_names, key, after_position)"
        " VALUES (gen_random_uuid(), $1, 'https://receiver.invalid', '{}', 'k', 0) RETURNING id", tenant)


async def blocked_or_done(watcher: asyncpg.Connection, pid: int, task: asyncio.Task) -> None:
    """Until the other connection's transaction has committed or waits on a lock (never a fixed sleep)."""
    deadline = time.monotonic() + DEADLINE_S
    while not task.done():
        if await watcher.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid):
            return
        assert time.monotonic() < deadline, "the second fan-out neither committed nor waited"
        await asyncio.sleep(0.01)


async def test_a_forward_pager_sees_deliveries_whose_fan_out_committed_after_a_later_numbered_one(make_database):
    url = make_database("delivery_pages")
    first, second, reader = [await asyncpg.connect(url) for _ in range(3)]
    try:
        await reader.execute("INSERT INTO tenants (id, name) VALUES ('t', 't')")
        one, two = await endpoint(reader, "t"), await endpoint(reader, "t")
        await reader.execute(
            "INSERT INTO events (id, tenant_id, resource, event_name, entity_id, data, position, event_time_max)"
            " SELECT gen_random_uuid(), 't', 'ledger_account', 'ledger_account.created', gen_random_uuid(), '{}', g,"
            " now() FROM generate_series(1, 3) g")

        async def fan_out(conn: asyncpg.Connection, endpoint_id) -> None:
            async with conn.transaction():
                await store.fan_out(conn, endpoint_id, 100, 3600)

        # The first fan-out numbers its deliveries and has not committed yet; the second starts after it.
        tx = first.transaction()
        await tx.start()
        await store.fan_out(first, one, 100, 3600)
        later = asyncio.create_task(fan_out(second, two))
        await blocked_or_done(reader, second.get_server_pid(), later)

        seen = await webhooks.list_deliveries(reader, "t", after_seq=0, limit=100)  # a client's first page
        cursor = seen[-1]["seq"] if seen else 0
        await tx.commit()
        await asyncio.wait_for(later, DEADLINE_S)
        seen += await webhooks.list_deliveries(reader, "t", after_seq=cursor, limit=100)  # and the next one

        assert sorted((r["endpoint_id"], r["event_position"]) for r in seen) == sorted(
            (e, p) for e in (one, two) for p in (1, 2, 3))
    finally:
        for conn in (first, second, reader):
            await conn.close()
