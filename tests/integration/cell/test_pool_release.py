"""CellContext hands its connections back to the pool itself when they are idle, and through asyncpg's own release
(which resets them) otherwise: a connection never comes back busy, in a transaction, or not at all."""

from __future__ import annotations

import asyncio

from cell.service.context import AccountCache, CellContext
from cell.store.db import ACTING_TENANT, close_idle, create_pool
from tests.integration.conftest import cell_settings


async def context(cell_database_url: str) -> CellContext:
    pool = await create_pool(cell_database_url, min_size=1, max_size=1, role="ledger_app")
    return CellContext(settings=cell_settings(cell_database_url, db_acquire_s_max=2.0), pool=pool,
                       cache=AccountCache(10))


async def test_a_one_connection_pool_serves_many_uses_in_turn_and_at_once(cell_database_url):
    ctx = await context(cell_database_url)
    try:
        for i in range(50):
            assert await ctx.run(lambda conn, i=i: conn.fetchval("SELECT $1::int", i)) == i
        assert await asyncio.gather(*(ctx.run(lambda conn, i=i: conn.fetchval("SELECT $1::int", i))
                                      for i in range(20))) == list(range(20))
        assert ctx.pool.get_idle_size() == 1
    finally:
        await ctx.pool.close()


async def test_a_transaction_left_open_is_rolled_back_before_the_connection_is_used_again(cell_database_url):
    ctx = await context(cell_database_url)
    try:
        async def leave_open(conn):
            await conn.execute("BEGIN")
            return await conn.fetchval("SELECT txid_current()")

        first = await ctx.run(leave_open)
        assert await ctx.run(lambda conn: conn.fetchval("SELECT txid_current()")) != first
        assert not await ctx.run(lambda conn: asyncio.sleep(0, conn.is_in_transaction()))
    finally:
        await ctx.pool.close()


async def test_each_use_of_a_reused_connection_acts_for_its_own_tasks_tenant(cell_database_url):
    ctx = await context(cell_database_url)
    try:
        for tenant in ("tenant-a", "tenant-b", "tenant-b", "", "tenant-a"):
            token = ACTING_TENANT.set(tenant)
            try:
                assert await ctx.run(lambda conn: conn.fetchval(
                    "SELECT coalesce(current_setting('ledger.tenant', true), '')")) == tenant
            finally:
                ACTING_TENANT.reset(token)
        assert ctx.pool.get_idle_size() == 1
    finally:
        await ctx.pool.close()


async def test_idle_connections_above_the_minimum_are_closed_and_a_connection_in_use_is_kept(cell_database_url):
    pool = await create_pool(cell_database_url, min_size=0, max_size=3, role="ledger_app", idle_close_s=0)
    ctx = CellContext(settings=cell_settings(cell_database_url, db_acquire_s_max=2.0), pool=pool,
                      cache=AccountCache(10))
    closer = asyncio.get_running_loop().create_task(close_idle(pool, 0.5))
    try:
        await asyncio.gather(*(ctx.run(lambda conn: conn.execute("SELECT pg_sleep(0.1)")) for _ in range(3)))
        assert pool.get_size() == 3
        backend = await ctx.run(lambda conn: conn.fetchval("SELECT pg_backend_pid()"))
        deadline = asyncio.get_running_loop().time() + 30
        while pool.get_size() > 1:  # the two left idle go; the one used every 50 ms stays
            assert asyncio.get_running_loop().time() < deadline, pool.get_size()
            assert await ctx.run(lambda conn: conn.fetchval("SELECT pg_backend_pid()")) == backend
            await asyncio.sleep(0.05)
        for _ in range(25):  # over two passes of the closer
            assert await ctx.run(lambda conn: conn.fetchval("SELECT pg_backend_pid()")) == backend
            await asyncio.sleep(0.05)
        while pool.get_size() > 0:  # left idle too (min_size 0), it goes
            assert asyncio.get_running_loop().time() < deadline, pool.get_size()
            await asyncio.sleep(0.05)
        assert await ctx.run(lambda conn: conn.fetchval("SELECT 1")) == 1
    finally:
        closer.cancel()
        await pool.close()
