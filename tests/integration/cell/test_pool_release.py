"""CellContext hands its connections back to the pool itself when they are idle, and through asyncpg's own release
(which resets them) otherwise: a connection never comes back busy, in a transaction, or not at all."""

from __future__ import annotations

import asyncio
import os
import signal

import asyncpg
import pytest

from cell.ledger.errors import DatabaseUnavailable
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


async def test_a_connection_lost_while_it_takes_the_tasks_tenant_is_database_unavailable(cell_database_url):
    """PostgreSQL ends the session of a free pooled connection just as a request of another tenant takes it (a
    restart, seen by the chaos bank as a 500): the acquire's one statement, setting the acting tenant, fails with
    the connection gone. The request is answered DatabaseUnavailable (nothing of it was sent), and the pool, whose
    holder asyncpg released when the connection closed, serves the next request on a new one."""
    ctx = await context(cell_database_url)
    admin = await asyncpg.connect(cell_database_url)
    loop = asyncio.get_running_loop()
    try:
        token = ACTING_TENANT.set("tenant-a")
        try:
            backend = await ctx.run(lambda conn: conn.fetchval("SELECT pg_backend_pid()"))
        finally:
            ACTING_TENANT.reset(token)
        os.kill(backend, signal.SIGSTOP)  # the session takes the next statement in but answers nothing yet
        try:
            async def as_tenant_b():
                ACTING_TENANT.set("tenant-b")
                return await ctx.run(lambda conn: conn.fetchval("SELECT 1"))

            request = loop.create_task(as_tenant_b())
            deadline = loop.time() + 30
            while ctx.pool.get_idle_size() != 0:  # taken: its tenant's statement is sent
                assert loop.time() < deadline
                await asyncio.sleep(0.01)
            assert await admin.fetchval("SELECT pg_terminate_backend($1, 0)", backend) is True
        finally:
            os.kill(backend, signal.SIGCONT)
        with pytest.raises(DatabaseUnavailable):
            await asyncio.wait_for(request, 30)
        token = ACTING_TENANT.set("tenant-b")
        try:
            assert await ctx.run(lambda conn: conn.fetchval(
                "SELECT current_setting('ledger.tenant', true) || ' ' || (pg_backend_pid() <> $1)", backend)
            ) == "tenant-b true"
        finally:
            ACTING_TENANT.reset(token)
    finally:
        await admin.close()
        await ctx.pool.close()
