"""The drain and the sweeper in-process, against real PostgreSQL and the moto SQS server: duplicates,
reordering, loss, locked accounts, SQS down at posting time, mixed sync/async, consistent lock versions."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest
from worker_helpers import (
    assert_invariants,
    new_book,
    post,
    totals,
    unapplied,
    wait_until,
    worker_settings,
)

from cell.service.nudge import NUDGE_FAILURES, SqsNudger, queue_gauges
from cell.store.db import create_pool
from control_plane.devstack import free_port
from ledger_common.nudge import decode_nudge, encode_nudges
from ledger_common.sqs import make_sqs_client
from worker import drain

CARD = "debit"  # card accounts: debit-normal receivables; the settlement account is credit-normal


async def drain_until_empty(pool, queue, settings, rounds_max: int = 200) -> int:
    """Drain batches until one comes back empty (wait 0: moto answers at once)."""
    applied = 0
    for _ in range(rounds_max):
        outcome = await drain.drain_batch(pool, queue, settings, wait_first_s=0)
        if outcome.messages == 0:
            return applied
        applied += outcome.applied
    raise AssertionError("the queue never drained")


async def test_duplicated_reordered_and_lost_messages_apply_every_effect_exactly_once(pool, sqs_queue):
    rng = random.Random(7)
    settings = worker_settings(sqs_queue, batch_size_max=7, group_size_max=3)
    # The sweeps below count what they apply in the whole database: earlier tests' unapplied effects (a hybrid
    # posting no worker applied) are applied first, so that only this test's are left to count.
    await drain.sweep(pool, worker_settings(sqs_queue, sweep_after_s=0.000001))
    async with pool.acquire() as conn:
        book = await new_book(conn, {"settlement": "credit", **{f"card{i}": CARD for i in range(8)}})
        model: dict[str, int] = {name: 0 for name in book.accounts}
        bodies: list[str] = []
        for i in range(40):
            card, amount = f"card{rng.randrange(8)}", rng.randint(1, 10_000)
            await post(conn, book, [(card, "debit", amount), ("settlement", "credit", amount)])
            model[card] += amount
            model["settlement"] += amount
            bodies += encode_nudges(book.tenant, [str(book.id(card)), str(book.id("settlement"))])

    # Each message 1-3 times, shuffled; about a fifth of them lost outright.
    lost = set(rng.sample(range(len(bodies)), len(bodies) // 5))
    sent = [b for i, b in enumerate(bodies) if i not in lost for _ in range(rng.randint(1, 3))]
    rng.shuffle(sent)
    await asyncio.to_thread(sqs_queue.send, sent)
    assert await drain_until_empty(pool, sqs_queue, settings) > 0

    named = {a for b in sent for a in decode_nudge(b)[1]}
    async with pool.acquire() as conn:
        left = await unapplied(conn, book)
        # Only accounts no delivered message named can still wait: the sweeper's work.
        assert set(left) == set(book.accounts.values()) - named
        assert await drain.sweep(pool, worker_settings(sqs_queue, sweep_after_s=60)) == 0
        applied = await drain.sweep(pool, worker_settings(sqs_queue, sweep_after_s=0.000001))
        assert applied == sum(left.values())
        for name, amount in model.items():
            t = await totals(conn, book, name)
            debits, credits = (t["posted_debits"], t["posted_credits"])
            assert (debits if book.normal[name] == "debit" else credits) == amount
        await assert_invariants(conn, book)
    assert sqs_queue.depth() == 0


async def test_an_account_locked_elsewhere_is_skipped_renudged_and_applied_later(pool, sqs_queue):
    settings = worker_settings(sqs_queue)
    async with pool.acquire() as conn:
        book = await new_book(conn, {"settlement": "credit", "card": CARD})
        await post(conn, book, [("card", "debit", 500), ("settlement", "credit", 500)])
    await asyncio.to_thread(sqs_queue.send, encode_nudges(book.tenant, [str(a) for a in book.accounts.values()]))

    holder = await pool.acquire()
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("SELECT 1 FROM account_balances WHERE account_id = $1 FOR UPDATE", book.id("settlement"))
        outcome = await drain.drain_batch(pool, sqs_queue, settings, wait_first_s=0)
        assert (outcome.applied, outcome.skipped, outcome.deleted) == (1, 1, 1)
        async with pool.acquire() as conn:
            assert await unapplied(conn, book) == {book.id("settlement"): 1}
        await tx.rollback()
    finally:
        await pool.release(holder)

    # The re-nudge names the skipped account only; draining it applies the rest.
    outcome = await drain.drain_batch(pool, sqs_queue, settings, wait_first_s=0)
    assert (outcome.messages, outcome.accounts, outcome.applied) == (1, 1, 1)
    async with pool.acquire() as conn:
        await assert_invariants(conn, book)
    assert sqs_queue.depth() == 0


async def test_sqs_down_at_posting_time_loses_nothing_and_the_sweeper_applies(pool, sqs_queue):
    dead = make_sqs_client(f"http://127.0.0.1:{free_port()}", "us-east-1", timeout_s=0.5)
    nudger = SqsNudger(dead, sqs_queue.url, buffer_ms_max=1)
    failures_before = NUDGE_FAILURES._value.get()
    async with pool.acquire() as conn:
        book = await new_book(conn, {"settlement": "credit", "card": CARD})
        for _ in range(3):
            result = await post(conn, book, [("card", "debit", 100), ("settlement", "credit", 100)])
            assert result.entries == []  # committed, nothing applied yet
            await nudger.nudge(book.tenant, [str(a) for a in book.accounts.values()])
        await nudger.close()  # waits for the failed sends; never raises
        assert NUDGE_FAILURES._value.get() > failures_before
        assert sum((await unapplied(conn, book)).values()) == 6
        gauges = await queue_gauges(conn)
        assert gauges["unapplied_effects"] >= 6 and gauges["oldest_unapplied_age_s"] > 0

    assert await drain.drain_batch(pool, sqs_queue, worker_settings(sqs_queue), wait_first_s=0) == drain.DrainOutcome()
    assert await drain.sweep(pool, worker_settings(sqs_queue, sweep_after_s=0.000001)) >= 6
    async with pool.acquire() as conn:
        assert (await totals(conn, book, "settlement"))["posted_credits"] == 300
        await assert_invariants(conn, book)


async def test_the_nudger_coalesces_a_burst_into_one_message(pool, sqs_queue):
    nudger = SqsNudger(sqs_queue.client, sqs_queue.url, buffer_ms_max=50)
    accounts = [f"00000000-0000-0000-0000-{i:012d}" for i in range(30)]
    for i in range(20):
        await nudger.nudge("t1", [accounts[0], accounts[i + 10], accounts[i]])
    await nudger.close()
    received = await asyncio.to_thread(sqs_queue.receive, 10, 0)
    assert len(received) == 1
    assert received[0].tenant_id == "t1"
    assert sorted(str(a) for a in received[0].accounts) == accounts


async def test_a_locked_debit_sees_every_queued_credit(pool, sqs_queue):
    async with pool.acquire() as conn:
        book = await new_book(conn, {"funding": "debit", "wallet": "credit", "merchant": "credit"})
        for _ in range(10):
            await post(conn, book, [("funding", "debit", 100), ("wallet", "credit", 100)])
        assert (await totals(conn, book, "wallet"))["lock_version"] == 0  # all queued, none applied

        # Spending exactly the queued credits passes the condition: the apply under the lock folded them in.
        check = {"wallet": {"available_balance_amount": {"gte": 0}}}
        result = await post(conn, book, [("wallet", "debit", 1000), ("merchant", "credit", 1000)],
                            sync=("wallet",), locks=check)
        [wallet_entry] = [e for e in result.entries]
        assert wallet_entry.lock_version == 11 and wallet_entry.posted_credits == 1000
        with pytest.raises(asyncpg.PostgresError) as failed:
            await post(conn, book, [("wallet", "debit", 1), ("merchant", "credit", 1)],
                       sync=("wallet",), locks=check)
        assert failed.value.sqlstate == "LG001"
        await drain.sweep(pool, worker_settings(sqs_queue, sweep_after_s=0.000001))
        await assert_invariants(conn, book)


async def test_concurrent_sync_debits_and_async_credits_never_overdraw(pool, sqs_queue):
    settings = worker_settings(sqs_queue, batch_size_max=20)
    async with pool.acquire() as conn:
        book = await new_book(conn, {"funding": "debit", "wallet": "credit", "merchant": "credit"})
    check = {"wallet": {"available_balance_amount": {"gte": 0}}}
    wallet = str(book.id("wallet"))
    outcomes = {"credits": 0, "debits": 0, "refused": 0}

    async def credits():
        for _ in range(60):
            async with pool.acquire() as conn:
                await post(conn, book, [("funding", "debit", 10), ("wallet", "credit", 10)])
            outcomes["credits"] += 1
            await asyncio.to_thread(sqs_queue.send, encode_nudges(book.tenant, [wallet, str(book.id("funding"))]))

    async def debits():
        for _ in range(40):
            try:
                async with pool.acquire() as conn:
                    await post(conn, book, [("wallet", "debit", 15), ("merchant", "credit", 15)],
                               sync=("wallet",), locks=check)
                outcomes["debits"] += 1
            except asyncpg.PostgresError as exc:
                assert exc.sqlstate == "LG001"
                outcomes["refused"] += 1
            await asyncio.sleep(0)

    async def drainer(stop: asyncio.Event):
        while not stop.is_set():
            await drain.drain_batch(pool, sqs_queue, settings, wait_first_s=0)
            await asyncio.sleep(0.005)

    stop = asyncio.Event()
    drainer_task = asyncio.create_task(drainer(stop))
    await asyncio.gather(credits(), credits(), debits(), debits())
    stop.set()
    await drainer_task
    await drain_until_empty(pool, sqs_queue, settings)
    await drain.sweep(pool, worker_settings(sqs_queue, sweep_after_s=0.000001))

    async with pool.acquire() as conn:
        assert outcomes["debits"] > 0
        t = await totals(conn, book, "wallet")
        assert t["posted_credits"] == 10 * outcomes["credits"]
        assert t["posted_debits"] == 15 * outcomes["debits"]
        # Available balance (credit-normal: posted credits - pending debits) never went below zero at any
        # lock version: every sync debit saw every credit committed before it.
        worst = await conn.fetchval(
            "SELECT min(posted_credits - pending_debits) FROM balance_effects WHERE account_id = $1", book.id("wallet"))
        rows = await conn.fetch(
            "SELECT seq, lock_version, d_pending_debits, d_posted_credits, posted_credits - pending_debits AS avail,"
            " applied_at FROM balance_effects WHERE account_id = $1 ORDER BY lock_version", book.id("wallet"))
        assert worst >= 0, "\n".join(str(dict(r)) for r in rows)
        await assert_invariants(conn, book)


async def test_async_entries_get_lock_versions_and_resulting_balances_in_one_order_per_account(pool, sqs_queue):
    settings = worker_settings(sqs_queue, batch_size_max=3)
    now = datetime.now(timezone.utc)
    async with pool.acquire() as conn:
        book = await new_book(conn, {"hot": "credit", **{f"c{i}": CARD for i in range(4)}})
        expected = []
        for i in range(24):
            amount = 100 + i
            # Some backdated: lock versions follow application order, not effective time.
            effective = now - timedelta(days=i % 3)
            await post(conn, book, [(f"c{i % 4}", "debit", amount), ("hot", "credit", amount)],
                       status="pending" if i % 5 == 0 else "posted", effective_at=effective)
            expected.append((amount, i % 5 != 0))
            await asyncio.to_thread(sqs_queue.send, encode_nudges(book.tenant, [str(book.id("hot"))]))
            if i % 7 == 6:  # apply in several batches interleaved with new postings
                await drain.drain_batch(pool, sqs_queue, settings, wait_first_s=0)
        await drain_until_empty(pool, sqs_queue, settings)
        rows = await conn.fetch("SELECT seq, lock_version, pending_credits, posted_credits FROM balance_effects"
                                " WHERE account_id = $1 ORDER BY lock_version", book.id("hot"))
        assert [r["lock_version"] for r in rows] == list(range(1, 25))
        assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)  # committed one by one: seq order
        pending = posted = 0
        for r, (amount, is_posted) in zip(rows, expected):
            pending += amount
            posted += amount if is_posted else 0
            # The resulting balances at each lock version: what as_of_lock_version answers.
            assert (r["pending_credits"], r["posted_credits"]) == (pending, posted)
        assert (await totals(conn, book, "hot"))["lock_version"] == 24
        await drain.sweep(pool, worker_settings(sqs_queue, sweep_after_s=0.000001))
        await assert_invariants(conn, book)


async def test_undecodable_messages_are_dropped_without_harm(pool, sqs_queue):
    await asyncio.to_thread(sqs_queue.send, ["not a nudge", '{"v":1,"t":"x","a":["00000000-0000-0000-0000-000000000000"]}'])
    outcome = await drain.drain_batch(pool, sqs_queue, worker_settings(sqs_queue), wait_first_s=0)
    assert (outcome.messages, outcome.applied, outcome.skipped, outcome.deleted) == (2, 0, 0, 2)
    assert sqs_queue.depth() == 0


async def test_the_worker_creates_its_queue_on_an_sqs_compatible_endpoint(sqs_endpoint_url):
    from worker.settings import load_settings
    from worker.sqs import SqsQueue

    name = "made-" + random.randbytes(6).hex()
    url = f"{sqs_endpoint_url}/123456789012/{name}"
    queue = SqsQueue(load_settings({}, sqs_endpoint_url=sqs_endpoint_url, sqs_queue_url=url))
    assert queue.ensure() == url
    assert queue.ensure() == url  # found the second time
    queue.send(encode_nudges("t1", ["00000000-0000-0000-0000-000000000001"]))
    assert len(queue.receive(10, 0)) == 1
    queue.client.delete_queue(QueueUrl=url)


async def test_the_verifier_is_not_cut_short_by_the_statement_bound(worker_database_url, sqs_queue):
    """Every worker session carries statement_ms_max; the verifier recomputes the whole cell, so it alone lifts it
    (and puts it back on its pooled connection). Held by a lock on a table it reads for twice the bound, it waits and
    answers. (The bound is one the SET that lifts it never misses on a loaded machine: at 10 ms that SET was itself
    cancelled now and then beside a CPU hog.)"""
    one = await create_pool(worker_database_url, min_size=1, max_size=1, role="ledger_worker")  # as workers run
    owner, watcher = await asyncpg.connect(worker_database_url), await asyncpg.connect(worker_database_url)
    try:
        async with one.acquire() as conn:
            pid = conn.get_server_pid()
            await conn.execute("SET statement_timeout = '500ms'")
        held = owner.transaction()
        await held.start()
        try:
            await owner.execute("LOCK TABLE ledger_entries IN ACCESS EXCLUSIVE MODE")
            verifying = asyncio.create_task(drain.verify(one, worker_settings(sqs_queue, statement_ms_max=500)))
            deadline = asyncio.get_running_loop().time() + 60
            while not verifying.done() and not await watcher.fetchval(
                    "SELECT coalesce(wait_event_type = 'Lock' AND clock_timestamp() - query_start > interval '1 s',"
                    " false) FROM pg_stat_activity WHERE pid = $1", pid):
                assert asyncio.get_running_loop().time() < deadline, "the verifier never waited on the lock"
                await asyncio.sleep(0.02)
        finally:
            await held.rollback()
        assert isinstance(await verifying, list)
        async with one.acquire() as conn:
            assert await conn.fetchval("SHOW statement_timeout") == "500ms"
    finally:
        await owner.close()
        await watcher.close()
        await one.close()


async def test_a_drain_task_deletes_what_it_handled_together_and_all_of_it_by_its_end(pool, sqs_queue):
    from ledger_common.sqs import SQS_CALLS

    cards = [f"card{i}" for i in range(6)]
    async with pool.acquire() as conn:
        book = await new_book(conn, {"settlement": "credit", **{card: CARD for card in cards}})
        for card in cards:
            await post(conn, book, [(card, "debit", 100), ("settlement", "credit", 100)])
    for card in cards:
        await asyncio.to_thread(sqs_queue.send, encode_nudges(book.tenant, [str(book.id(card)),
                                                                          str(book.id("settlement"))]))
    deletes = SQS_CALLS.labels("DeleteMessageBatch")
    before = deletes._value.get()
    settings = worker_settings(sqs_queue, batch_size_max=1)  # one message a batch: six batches
    outcome = await drain.drain_for(pool, sqs_queue, settings, run_s=1.5)
    assert (outcome.messages, outcome.deleted) == (6, 6)
    assert deletes._value.get() - before < 6  # fewer delete calls than batches
    assert sqs_queue.depth() == 0
    async with pool.acquire() as conn:
        assert sum((await unapplied(conn, book)).values()) == 0
        await assert_invariants(conn, book)


async def test_under_steady_nudges_a_drain_receives_at_most_once_an_interval_and_applies_everything(pool, sqs_queue):
    from ledger_common.sqs import SQS_CALLS

    cards = [f"card{i}" for i in range(30)]
    async with pool.acquire() as conn:
        book = await new_book(conn, {"settlement": "credit", **{card: CARD for card in cards}})
    settings = worker_settings(sqs_queue, batch_wait_ms_max=0, long_poll_s_max=1, receive_every_ms_min=500)
    receives = SQS_CALLS.labels("ReceiveMessage")
    before = receives._value.get()
    draining = asyncio.create_task(drain.drain_for(pool, sqs_queue, settings, run_s=4.0))
    for card in cards:  # a nudge every ~50 ms for ~1.5 s, as a cell sends them under steady load
        async with pool.acquire() as conn:
            await post(conn, book, [(card, "debit", 100), ("settlement", "credit", 100)])
        await asyncio.to_thread(sqs_queue.send, encode_nudges(book.tenant, [str(book.id(card)),
                                                                          str(book.id("settlement"))]))
        await asyncio.sleep(0.05)
    outcome = await draining
    assert (outcome.messages, outcome.deleted) == (30, 30)
    assert receives._value.get() - before < 15  # ~30 without the interval: one receive per nudge
    async with pool.acquire() as conn:
        assert (await totals(conn, book, "settlement"))["posted_credits"] == 3000
        await assert_invariants(conn, book)


async def test_a_tenant_whose_fence_a_move_holds_delays_no_other_tenant_s_balances_in_its_batch(pool, sqs_queue):
    """A move's freeze holds the exclusive form of its tenant's fence while it waits out that tenant's writes and
    links its history (control_plane/moves.py step_freeze): a batch naming that tenant's accounts and another's applies
    the other at once (the moving tenant's are skipped and re-nudged), instead of waiting with it."""
    settings = worker_settings(sqs_queue)
    async with pool.acquire() as conn:
        moving = await new_book(conn, {"settlement": "credit", "card": CARD})
        other = await new_book(conn, {"settlement": "credit", "card": CARD})
        for book in (moving, other):
            await post(conn, book, [("card", "debit", 100), ("settlement", "credit", 100)])
    await asyncio.to_thread(sqs_queue.send, [
        body for book in (moving, other) for body in encode_nudges(book.tenant, [str(a) for a in book.accounts.values()])])

    async def other_applied() -> bool:
        async with pool.acquire() as conn:
            return await unapplied(conn, other) == {}

    freeze = await pool.acquire()
    draining = None
    try:
        tx = freeze.transaction()
        await tx.start()
        await freeze.execute("SELECT pg_advisory_xact_lock(ledger_fence_key($1))", moving.tenant)
        draining = asyncio.create_task(drain.drain_batch(pool, sqs_queue, settings, wait_first_s=0))
        await wait_until(other_applied, timeout_s=5, what="the other tenant's effects applied during the freeze")
        outcome = await asyncio.wait_for(draining, 5)
        assert (outcome.applied, outcome.skipped) == (2, 2)
        await tx.rollback()  # the move aborted: its tenant writes again
    finally:
        if draining is not None and not draining.done():
            await tx.rollback()
            await draining
        await pool.release(freeze)
    assert await drain_until_empty(pool, sqs_queue, settings) == 2  # the re-nudge
    async with pool.acquire() as conn:
        for book in (moving, other):
            await assert_invariants(conn, book)
    assert sqs_queue.depth() == 0
