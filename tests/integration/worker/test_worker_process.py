"""`python -m worker` as a real process (Celery worker + embedded beat, Valkey broker, moto SQS): it applies
nudged effects, sweeps lost ones, and a SIGKILL before commit or between commit and SQS delete loses nothing
and doubles nothing."""

from __future__ import annotations

import asyncio
import urllib.request

import asyncpg
from worker_helpers import (
    assert_invariants,
    new_book,
    post,
    totals,
    unapplied,
    wait_until,
)

from cell.service.nudge import SqsNudger
from control_plane.devstack import free_port


async def _post_card_payments(pool, count: int, amount: int = 250):
    async with pool.acquire() as conn:
        book = await new_book(conn, {"settlement": "credit", "card0": "debit", "card1": "debit"})
        for i in range(count):
            await post(conn, book, [(f"card{i % 2}", "debit", amount), ("settlement", "credit", amount)])
    return book


async def _nudge(queue, book) -> None:
    nudger = SqsNudger(queue.client, queue.url, buffer_ms_max=1)
    await nudger.nudge(book.tenant, [str(a) for a in book.accounts.values()])
    await nudger.close()


async def _all_applied(pool, book):
    async with pool.acquire() as conn:
        return await unapplied(conn, book) == {}


async def _idle_in_transaction(url: str, database: str) -> bool:
    # An admin connection: the app role's pool cannot see other sessions' state in pg_stat_activity.
    conn = await asyncpg.connect(url)
    try:
        return bool(await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND state = 'idle in transaction'"
            " AND pid <> pg_backend_pid()", database))
    finally:
        await conn.close()


async def test_the_worker_process_applies_nudged_effects_and_sweeps_lost_ones(pool, sqs_queue, worker_process):
    port = free_port()
    worker = worker_process(sqs_queue, metrics_port=port, sweep_after_s=1)
    book = await _post_card_payments(pool, 5)
    await _nudge(sqs_queue, book)
    await wait_until(lambda: _all_applied(pool, book), what="nudged effects applied\n" + worker.log())

    lost = await _post_card_payments(pool, 3)  # never nudged: the beat's sweeper must find them
    await wait_until(lambda: _all_applied(pool, lost), what="swept effects applied\n" + worker.log())
    async with pool.acquire() as conn:
        assert (await totals(conn, book, "settlement"))["posted_credits"] == 5 * 250
        await assert_invariants(conn, book)
        await assert_invariants(conn, lost)
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode())
    assert "ledger_apply_lag_seconds_count" in body
    assert 'ledger_effects_applied_total{by="sweep"}' in body


async def test_sigkill_before_commit_loses_nothing(pool, sqs_queue, worker_process, worker_database_url):
    database = worker_database_url.rsplit("/", 1)[1]
    worker = worker_process(sqs_queue, fault_pause_before_commit_s=60)
    book = await _post_card_payments(pool, 4)
    await _nudge(sqs_queue, book)
    # The worker has run its apply and sits inside the open transaction: kill it there.
    await wait_until(lambda: _idle_in_transaction(worker_database_url, database), what="the worker inside its transaction\n"
                     + worker.log())
    worker.kill()
    await wait_until(lambda: _not(worker_database_url, database),
                     what="the killed worker's backend gone")
    async with pool.acquire() as conn:
        assert sum((await unapplied(conn, book)).values()) == 8  # rolled back: nothing applied

    # A fresh worker (its sweeper far away) gets the message back after the visibility timeout.
    worker_process(sqs_queue)
    await wait_until(lambda: _all_applied(pool, book), what="effects applied after redelivery")
    async with pool.acquire() as conn:
        t = await totals(conn, book, "settlement")
        assert (t["posted_credits"], t["lock_version"]) == (4 * 250, 4)
        await assert_invariants(conn, book)
    await wait_until(lambda: _queue_empty(sqs_queue), what="the message deleted")


async def test_sigkill_after_commit_before_the_sqs_delete_doubles_nothing(pool, sqs_queue, worker_process):
    worker = worker_process(sqs_queue, fault_pause_before_delete_s=60)
    book = await _post_card_payments(pool, 4)
    await _nudge(sqs_queue, book)
    await wait_until(lambda: _all_applied(pool, book), what="effects applied\n" + worker.log())
    worker.kill()
    assert sqs_queue.depth() >= 1  # committed, but the message was never deleted

    worker_process(sqs_queue)
    await wait_until(lambda: _queue_empty(sqs_queue), what="the redelivered message deleted")
    async with pool.acquire() as conn:
        t = await totals(conn, book, "settlement")
        assert (t["posted_credits"], t["lock_version"]) == (4 * 250, 4)
        assert (await totals(conn, book, "card0"))["lock_version"] == 2
        await assert_invariants(conn, book)


async def _not(url, database):
    return not await _idle_in_transaction(url, database)


async def _queue_empty(queue) -> bool:
    return await asyncio.to_thread(queue.depth) == 0


async def test_the_worker_process_positions_events(pool, sqs_queue, worker_process):
    """No API process here: the worker's sequencer thread alone gives events their positions, within about
    events_sequence_interval_s, in the order their transactions wrote them."""
    worker = worker_process(sqs_queue)
    book = await _post_card_payments(pool, 1)
    async with pool.acquire() as conn:
        for name in ("first", "second", "third"):
            await conn.execute("SELECT ledger_event($1, 'ledger_account', $2, $3, '{}'::jsonb)", book.tenant, name,
                               book.id("settlement"))

    async def positioned() -> bool:
        async with pool.acquire() as conn:
            rows = await conn.fetch("SELECT event_name, position FROM events WHERE tenant_id = $1 ORDER BY seq",
                                    book.tenant)
        return [(r["event_name"], r["position"]) for r in rows] == [("first", 1), ("second", 2), ("third", 3)]

    await wait_until(positioned, what="events positioned by the worker\n" + worker.log())
