"""When every pooled connection is in use, CellContext's requests wait for one: served in arrival order, each within
db_acquire_s_max or DatabaseUnavailable, a cancelled waiter never keeps or loses a connection, a connection is never
handed to two, and each acts for its own request's tenant."""

from __future__ import annotations

import asyncio

import pytest

from cell.ledger.errors import DatabaseUnavailable
from cell.service.context import AccountCache, CellContext
from cell.store.db import ACTING_TENANT, create_pool
from tests.integration.conftest import cell_settings

POOL = 2


async def context(url: str, acquire_s_max: float = 10.0) -> CellContext:
    pool = await create_pool(url, min_size=POOL, max_size=POOL, role="ledger_app", idle_close_s=0)
    return CellContext(settings=cell_settings(url, db_acquire_s_max=acquire_s_max), pool=pool,
                       cache=AccountCache(10))


async def until(condition, what: str, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.005)


async def all_free_and_working(ctx: CellContext) -> None:
    await until(lambda: ctx.pool.get_idle_size() == POOL, "every connection back in the pool")
    pids = await asyncio.gather(*(ctx.run(lambda conn: conn.fetchval("SELECT pg_backend_pid() FROM pg_sleep(0.05)"))
                                  for _ in range(POOL)))
    assert len(set(pids)) == POOL  # two at once: two different sessions, none handed out twice
    assert not ctx._waiting or all(getter.done() for _, getter in ctx._waiting)


async def hold_every_connection(ctx: CellContext) -> tuple[asyncio.Event, list[asyncio.Future]]:
    """Every pooled connection held by a use that ends (answering 1) when the returned event is set."""
    release = asyncio.Event()

    async def hold(conn):
        await release.wait()
        return await conn.fetchval("SELECT 1")

    holders = [asyncio.ensure_future(ctx.run(hold)) for _ in range(POOL)]
    await until(lambda: ctx.pool.get_idle_size() == 0, "both connections held")
    return release, holders


async def test_waiters_are_served_in_arrival_order_and_no_connection_is_used_by_two_at_once(cell_database_url):
    ctx = await context(cell_database_url)
    in_use: set[int] = set()
    order: list[int] = []

    async def use(conn, i: int) -> int:
        order.append(i)  # the moment it got its connection
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        assert pid not in in_use
        in_use.add(pid)
        await asyncio.sleep(0.002)
        in_use.discard(pid)
        return i

    try:
        holders = [asyncio.ensure_future(ctx.run(lambda conn, i=i: use(conn, i))) for i in range(POOL)]
        await asyncio.sleep(0)
        waiters = []
        for i in range(POOL, 40):
            waiters.append(asyncio.ensure_future(ctx.run(lambda conn, i=i: use(conn, i))))
            await asyncio.sleep(0)  # each arrives after the one before
        assert await asyncio.gather(*holders, *waiters) == list(range(40))
        assert order[POOL:] == sorted(order[POOL:])
        await all_free_and_working(ctx)
    finally:
        await ctx.pool.close()


async def test_a_wait_past_db_acquire_s_max_is_database_unavailable_and_the_pool_stays_whole(cell_database_url):
    ctx = await context(cell_database_url, acquire_s_max=0.3)
    try:
        release, holders = await hold_every_connection(ctx)
        started = asyncio.get_running_loop().time()
        results = await asyncio.gather(*(ctx.run(lambda conn: conn.fetchval("SELECT 2")) for _ in range(5)),
                                       return_exceptions=True)
        waited = asyncio.get_running_loop().time() - started
        assert all(isinstance(r, DatabaseUnavailable) for r in results), results
        assert 0.25 <= waited < 5.0
        release.set()
        assert await asyncio.gather(*holders) == [1] * POOL
        await all_free_and_working(ctx)
    finally:
        await ctx.pool.close()


async def test_a_waiter_that_comes_later_is_not_timed_out_with_an_earlier_one(cell_database_url):
    ctx = await context(cell_database_url, acquire_s_max=0.5)
    try:
        release, holders = await hold_every_connection(ctx)
        early = asyncio.ensure_future(ctx.run(lambda conn: conn.fetchval("SELECT 2")))
        await asyncio.sleep(0.3)
        late = asyncio.ensure_future(ctx.run(lambda conn: conn.fetchval("SELECT 3")))
        with pytest.raises(DatabaseUnavailable):
            await early
        assert not late.done()
        release.set()
        assert await late == 3
        await asyncio.gather(*holders)
        await all_free_and_working(ctx)
    finally:
        await ctx.pool.close()


async def test_cancelled_waiters_never_keep_or_lose_a_connection(cell_database_url):
    """Clients gone at every moment: while waiting, right when a connection was handed to them, while using it."""
    ctx = await context(cell_database_url)
    try:
        for round_ in range(6):
            tasks = [asyncio.ensure_future(ctx.run(lambda conn: conn.fetchval("SELECT 1 FROM pg_sleep(0.01)")))
                     for _ in range(30)]
            for step in range(40):
                await asyncio.sleep(0 if step % 3 else 0.004)
                for i, task in enumerate(tasks):
                    if (i + step + round_) % 7 == 0 and not task.done():
                        task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(r == 1 or isinstance(r, asyncio.CancelledError) for r in results), results
            await all_free_and_working(ctx)
    finally:
        await ctx.pool.close()


async def test_a_waiter_acts_for_its_own_tenant_on_a_connection_another_tenant_released(cell_database_url):
    ctx = await context(cell_database_url)

    async def tenant_seen(tenant: str) -> str:
        token = ACTING_TENANT.set(tenant)
        try:
            return await ctx.run(lambda conn: conn.fetchval(
                "SELECT coalesce(current_setting('ledger.tenant', true), '') FROM pg_sleep(0.005)"))
        finally:
            ACTING_TENANT.reset(token)

    try:
        tenants = [f"tenant-{i % 3}" for i in range(30)]
        assert await asyncio.gather(*(tenant_seen(t) for t in tenants)) == tenants
        await all_free_and_working(ctx)
    finally:
        await ctx.pool.close()


async def test_a_waiter_gets_a_connection_released_through_asyncpgs_reset_or_replaced_after_a_loss(cell_database_url):
    """A connection left in a transaction goes back through asyncpg's release (its reset), one terminated is
    replaced by a new one: either wakes a waiter, which gets a clean, working connection."""
    ctx = await context(cell_database_url)

    async def leave_open(conn):
        await conn.execute("BEGIN")
        await conn.fetchval("SELECT txid_current()")  # a transaction id of its own
        await asyncio.sleep(0.02)
        return "open"

    async def lose(conn):
        await asyncio.sleep(0.02)
        conn.terminate()
        return "lost"

    async def clean(conn):
        return await conn.fetchval("SELECT txid_current_if_assigned() IS NULL")  # not inside an old transaction

    try:
        for first in (leave_open, lose):
            tasks = [ctx.run(first) for _ in range(POOL)] + [ctx.run(clean) for _ in range(10)]
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert results[POOL:] == [True] * 10, results
            await all_free_and_working(ctx)
    finally:
        await ctx.pool.close()
