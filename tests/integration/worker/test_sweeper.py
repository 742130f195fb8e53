"""The sweeper does not share fate with what it backs up: with the worker's broker unreachable (no beat, no
Celery task ever runs) its in-process sweeper thread applies stale effects, and so does a cell API process
with no worker at all; a broker that returns is used again within seconds."""

from __future__ import annotations

import re

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from worker_helpers import assert_invariants, new_book, post, unapplied, wait_until, worker_settings

from cell.api.app import create_app
from cell.service.nudge import SqsNudger, queue_gauges
from cell.settings import load_settings
from cell.store.verify import verify
from control_plane.devstack import EmbeddedValkey, free_port
from worker import drain


async def _queued_payments(pool, count: int):
    """Effects posted through the store and never nudged: only a sweeper can apply them."""
    async with pool.acquire() as conn:
        book = await new_book(conn, {"settlement": "credit", "card": "debit"})
        for _ in range(count):
            await post(conn, book, [("card", "debit", 100), ("settlement", "credit", 100)])
        assert sum((await unapplied(conn, book)).values()) == 2 * count
    return book


async def _all_applied(pool, book) -> bool:
    async with pool.acquire() as conn:
        return await unapplied(conn, book) == {}


async def test_a_worker_whose_broker_is_unreachable_still_sweeps(pool, sqs_queue, worker_process):
    dead_broker = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens: Celery never connects, beat never ticks
    worker = worker_process(sqs_queue, broker_url=dead_broker, sweep_after_s=1, sweep_every_s=0.5)
    book = await _queued_payments(pool, 3)
    # Bound: process start-up (imports, a few seconds on a loaded machine) + sweep_after_s + 2 * sweep_every_s.
    await wait_until(lambda: _all_applied(pool, book), timeout_s=20, what="swept by the worker's thread\n" + worker.log())
    assert worker.proc.poll() is None, "the worker gave up on its broker and exited"
    async with pool.acquire() as conn:
        await assert_invariants(conn, book)


async def test_the_cell_api_sweeps_with_no_worker_at_all(pool, worker_database_url):
    settings = load_settings(("CELL_TEST_UNUSED_",), database_url=worker_database_url, posting_mode="hybrid",
                             db_pool_min=1, db_pool_max=4, sweep_interval_s=0.2, sweep_after_s=0.5)
    async with AsyncTestClient(create_app(settings)):
        book = await _queued_payments(pool, 3)
        await wait_until(lambda: _all_applied(pool, book), timeout_s=10, what="swept by the API process")
    async with pool.acquire() as conn:
        await assert_invariants(conn, book)


RETRY = re.compile(r"Trying again (?:in ([\d.]+) seconds?|now)\.\.\. \((\d+)/")


async def test_the_worker_reconnects_to_a_returning_broker_within_seconds(pool, sqs_queue, worker_process, tmp_path):
    valkey = EmbeddedValkey(tmp_path / "valkey").start()
    try:
        # The sweeper far away: only the Celery drain (beat -> Redis -> worker) applies nudged effects here.
        # Fewer threads than periodic task kinds: a task waits reserved and unacked when the broker goes, and
        # kombu's restore of it on the lost connection raises inside Celery (worker.app.BoundedRetryConsumer).
        worker = worker_process(sqs_queue, broker_url=valkey.url, drain_run_s=1, sweep_after_s=60, concurrency=2)
        first = await _queued_payments(pool, 2)
        await _nudge(sqs_queue, first)
        await wait_until(lambda: _all_applied(pool, first), what="applied through Celery\n" + worker.log())

        valkey._proc.kill()  # SIGKILL: it comes back empty, as a Valkey without persistence does
        valkey._proc.wait(10)
        # Celery's own back-off is 2, 4, 6 ... 30 s; bounded, its retries stay at most 2 s apart.
        await wait_until(lambda: _retries_logged(worker, 3), timeout_s=15, what="three reconnection attempts\n"
                         + worker.log())
        waits = [float(m.group(1) or 0) for m in RETRY.finditer(worker.log())]
        assert waits and max(waits) <= 2.0, waits
        valkey = EmbeddedValkey(tmp_path / "valkey", port=valkey.port).start()

        second = await _queued_payments(pool, 2)
        await _nudge(sqs_queue, second)
        # Bound: one reconnection interval (2 s) + one beat tick (drain_run_s) + a loaded machine's slack.
        await wait_until(lambda: _all_applied(pool, second), timeout_s=10,
                         what="applied through Celery after the broker returned\n" + worker.log())
    finally:
        valkey.stop()


async def _retries_logged(worker, count: int) -> bool:
    return len(RETRY.findall(worker.log())) >= count


async def _nudge(queue, book) -> None:
    nudger = SqsNudger(queue.client, queue.url, buffer_ms_max=1)
    await nudger.nudge(book.tenant, [str(a) for a in book.accounts.values()])
    await nudger.close()


async def _moved_out_with_queued_effects(pool, worker_database_url, accounts: int, state: str = "moved_out"):
    """A tenant that moved to another cell while some of its effects were queued: the source keeps them, unapplied
    (its workers leave a tenant that is not active alone; the target applies its copy), until its copy is purged.
    They date from long ago, as after a move hours or days back: older than anything else in the queue. (`state`
    arriving: a move's copy being made here, its effects as old, applied once the move unfreezes it.)"""
    async with pool.acquire() as conn:
        book = await new_book(conn, {"settlement": "credit", **{f"card{i}": "debit" for i in range(accounts - 1)}})
        for i in range(accounts - 1):
            await post(conn, book, [(f"card{i}", "debit", 100), ("settlement", "credit", 100)])
    owner = await asyncpg.connect(worker_database_url)
    try:
        await owner.execute("UPDATE tenants SET state = $2 WHERE id = $1", book.tenant, state)
        await owner.execute("UPDATE balance_effects SET created_at = '2026-01-01T00:00:00Z' WHERE tenant_id = $1",
                            book.tenant)
    finally:
        await owner.close()
    return book


async def test_a_moved_out_tenant_s_leftover_effects_never_crowd_active_tenants_out_of_a_sweep(
        pool, sqs_queue, worker_database_url):
    gone = await _moved_out_with_queued_effects(pool, worker_database_url, accounts=4)
    book = await _queued_payments(pool, 2)
    # Each run takes sweep_accounts_max of the stale accounts, oldest first: the moved-out tenant's, applied by no
    # one, must not take those places run after run.
    settings = worker_settings(sqs_queue, sweep_after_s=0.000001, sweep_accounts_max=len(gone.accounts))
    for _ in range(1000):
        if not await drain.sweep(pool, settings):
            break
    assert await _all_applied(pool, book), "the active tenant's stale effects were never swept"
    async with pool.acquire() as conn:
        await assert_invariants(conn, book)
        assert sum((await unapplied(conn, gone)).values()) == 2 * (len(gone.accounts) - 1)  # the target's to apply


@pytest.mark.parametrize("state", ["moved_out", "arriving"])
async def test_a_moved_out_tenant_s_leftover_effects_breach_no_bound_in_the_cell_it_left(
        pool, sqs_queue, worker_database_url, state):
    gone = await _moved_out_with_queued_effects(pool, worker_database_url, accounts=2, state=state)
    await drain.sweep(pool, worker_settings(sqs_queue, sweep_after_s=0.000001))  # every active tenant's: applied
    bound_s = worker_settings(sqs_queue).unapplied_age_max_s
    async with pool.acquire() as conn:
        # /readyz, /metrics and the worker's verifier (every tenant), and `ledgerctl verify` of the tenant on this cell.
        gauges = await queue_gauges(conn, bound_s)
        assert gauges["unapplied_age_breach"] is False, gauges
        assert await verify(conn, None, unapplied_age_max_s=bound_s) == []
        assert await verify(conn, gone.tenant, unapplied_age_max_s=bound_s) == []
        assert sum((await unapplied(conn, gone)).values()) == 2  # kept until the copy is purged
