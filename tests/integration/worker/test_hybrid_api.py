"""The async path as a client sees it, through the cell's HTTP API in hybrid mode: 201 at once with a null
lock version, read-your-writes on demand, the worker's drain assigning versions that as_of_lock_version reads,
and a posting that still succeeds while the SQS endpoint is down."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from litestar.testing import AsyncTestClient
from worker_helpers import api_book, worker_settings

from cell.api.app import create_app
from cell.settings import load_settings
from cell.store.verify import verify
from control_plane.devstack import free_port
from worker import drain

CARDS = {"settlement": "credit", "card": "debit"}


@pytest.fixture(scope="module")
def hybrid_database_url(make_database):
    return make_database("worker_hybrid_api")


async def _client(database_url: str, sqs_endpoint_url: str, queue_url: str):
    settings = load_settings(("CELL_TEST_UNUSED_",), database_url=database_url, posting_mode="hybrid",
                             sqs_endpoint_url=sqs_endpoint_url, sqs_queue_url=queue_url, sqs_send_buffer_ms_max=1,
                             db_pool_min=1, db_pool_max=4)
    return AsyncTestClient(create_app(settings))


def _payment(ids: dict, amount: int, **card_extra) -> dict:
    return {"ledger_id": ids["ledger"], "status": "posted", "ledger_entries": [
        {"ledger_account_id": ids["card"], "direction": "debit", "amount": amount, **card_extra},
        {"ledger_account_id": ids["settlement"], "direction": "credit", "amount": amount}]}


async def _drained(pool, queue, count: int) -> int:
    """Effects the worker's drain applies, batch after batch, until `count` (or ten batches)."""
    settings, applied = worker_settings(queue), 0
    for _ in range(10):
        applied += (await drain.drain_batch(pool, queue, settings, wait_first_s=1)).applied
        if applied >= count:
            break
    return applied


async def _balance(client, auth, account_id: str, **params) -> dict:
    r = await client.get(f"/api/ledger_accounts/{account_id}", auth=auth, params=params)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
async def hybrid_pool(hybrid_database_url):
    from cell.store.db import create_pool

    pool = await create_pool(hybrid_database_url, min_size=1, max_size=4, role="ledger_worker")  # as workers run
    yield pool
    await pool.close()


async def test_async_entries_201_then_the_drain_assigns_versions(hybrid_database_url, hybrid_pool, sqs_queue,
                                                               sqs_endpoint_url):
    async with await _client(hybrid_database_url, sqs_endpoint_url, sqs_queue.url) as client:
        auth, ids = await api_book(client, hybrid_pool, "cards", CARDS)
        r = await client.post("/api/ledger_transactions", json=_payment(ids, 700), auth=auth)
        assert r.status_code == 201, r.text
        assert [e["ledger_account_lock_version"] for e in r.json()["ledger_entries"]] == [None, None]

        # A balance condition makes the card entry sync; the settlement entry stays async.
        r = await client.post("/api/ledger_transactions", auth=auth, json=_payment(
            ids, 300, pending_balance_amount={"gte": 0}))
        assert r.status_code == 201, r.text
        card_entry, settlement_entry = r.json()["ledger_entries"]
        assert card_entry["ledger_account_lock_version"] == 2  # it folded the queued 700 first
        assert settlement_entry["ledger_account_lock_version"] is None

        settlement = await _balance(client, auth, ids["settlement"])
        assert (settlement["lock_version"], settlement["balances"]["posted_balance"]["amount"]) == (0, 0)
        fresh = await _balance(client, auth, ids["settlement"], **{"balances[include_unapplied]": "true"})
        assert fresh["balances"]["posted_balance"]["amount"] == 1000

        assert await _drained(hybrid_pool, sqs_queue, 2) == 2  # the settlement's two; the card's in its posting

        settlement = await _balance(client, auth, ids["settlement"])
        assert (settlement["lock_version"], settlement["balances"]["posted_balance"]["amount"]) == (2, 1000)
        first = await _balance(client, auth, ids["settlement"], **{"balances[as_of_lock_version]": "1"})
        assert first["balances"]["posted_balance"]["amount"] == 700
        r = await client.get("/api/ledger_entries", auth=auth, params={"ledger_account_id": ids["settlement"]})
        assert sorted(e["ledger_account_lock_version"] for e in r.json()) == [1, 2]

    async with hybrid_pool.acquire() as conn:
        assert await verify(conn, auth[0]) == []


async def test_a_posting_succeeds_while_sqs_is_down_and_the_sweeper_applies_it(hybrid_database_url, hybrid_pool,
                                                                             sqs_queue):
    dead = f"http://127.0.0.1:{free_port()}"
    async with await _client(hybrid_database_url, dead, f"{dead}/123456789012/nowhere") as client:
        auth, ids = await api_book(client, hybrid_pool, "cards", CARDS)
        r = await client.post("/api/ledger_transactions", json=_payment(ids, 450), auth=auth)
        assert r.status_code == 201, r.text
        assert (await _balance(client, auth, ids["card"]))["lock_version"] == 0
        await drain.sweep(hybrid_pool, worker_settings(sqs_queue, sweep_after_s=0.000001))
        card = await _balance(client, auth, ids["card"])
        assert (card["lock_version"], card["balances"]["posted_balance"]["amount"]) == (1, 450)
    async with hybrid_pool.acquire() as conn:
        assert await verify(conn, auth[0]) == []


async def test_a_process_that_remembers_a_deleted_account_is_refused_by_the_database(
        hybrid_database_url, hybrid_pool, sqs_queue, sqs_endpoint_url):
    """Two cell processes: the one that created the account (and remembers it) posts after the other deleted it;
    alone or in a group with others, the postings naming it are refused and the others written."""
    async with await _client(hybrid_database_url, sqs_endpoint_url, sqs_queue.url) as here, \
            await _client(hybrid_database_url, sqs_endpoint_url, sqs_queue.url) as there:
        auth, ids = await api_book(here, hybrid_pool, "two", CARDS)
        r = await here.post("/api/ledger_accounts", auth=auth, json={
            "name": "fresh", "ledger_id": ids["ledger"], "normal_balance": "debit", "currency": "USD"})
        fresh = r.json()["id"]
        r = await there.delete(f"/api/ledger_accounts/{fresh}", auth=auth)
        assert r.status_code == 200, r.text
        r = await here.post("/api/ledger_transactions", auth=auth, json=_payment({**ids, "card": fresh}, 5))
        assert r.status_code == 422 and r.json()["code"] == "ledger_account_not_found", r.text
        answers = await asyncio.gather(*(here.post("/api/ledger_transactions", auth=auth, json=_payment(
            {**ids, "card": fresh} if i == 2 else ids, 10 + i)) for i in range(6)))
        assert [a.status_code for a in answers] == [201, 201, 422, 201, 201, 201], [a.text for a in answers]
        assert answers[2].json()["code"] == "ledger_account_not_found"
        r = await here.get(f"/api/ledger_accounts/{fresh}", auth=auth)
        assert r.status_code == 404, r.text
        async with hybrid_pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM ledger_entries WHERE ledger_account_id = $1",
                                       uuid.UUID(fresh)) == 0
            assert await verify(conn, auth[0]) == []


async def test_a_hold_moved_off_a_sync_only_account_releases_it_at_once(
        hybrid_database_url, hybrid_pool, sqs_queue, sqs_endpoint_url):
    """A sync-only account is exact on every read: when a replacement moves a hold off it, the old entry's archive is
    applied in the PATCH (its pending balance 0 at once, no worker), while the other accounts' effects are queued."""
    async with await _client(hybrid_database_url, sqs_endpoint_url, sqs_queue.url) as client:
        auth, ids = await api_book(client, hybrid_pool, "moved", {**CARDS, "other": "credit"})
        r = await client.patch(f"/api/ledger_accounts/{ids['settlement']}", json={"sync_only": True}, auth=auth)
        assert r.status_code == 200, r.text
        r = await client.post("/api/ledger_transactions", json={**_payment(ids, 200), "status": "pending"}, auth=auth)
        assert r.status_code == 201, r.text
        moved = [{**e, "ledger_account_id": ids["other"]} if e["ledger_account_id"] == ids["settlement"] else e
                 for e in _payment(ids, 200)["ledger_entries"]]
        r = await client.patch(f"/api/ledger_transactions/{r.json()['id']}", json={"ledger_entries": moved}, auth=auth)
        assert r.status_code == 200, r.text
        settlement = await _balance(client, auth, ids["settlement"])
        assert (settlement["lock_version"], settlement["balances"]["pending_balance"]["amount"]) == (2, 0)
        other = await _balance(client, auth, ids["other"])
        assert (other["lock_version"], other["balances"]["pending_balance"]["amount"]) == (0, 0)
        assert await _drained(hybrid_pool, sqs_queue, 4) == 4  # the card's entry, archive and new entry; other's
        other = await _balance(client, auth, ids["other"])
        assert (other["lock_version"], other["balances"]["pending_balance"]["amount"]) == (1, 200)
        card = await _balance(client, auth, ids["card"])
        assert (card["lock_version"], card["balances"]["pending_balance"]["amount"]) == (3, 200)
    async with hybrid_pool.acquire() as conn:
        assert await verify(conn, auth[0]) == []


async def test_a_holds_raise_applies_the_locked_card_now_and_queues_the_rest_for_the_worker(
        hybrid_database_url, hybrid_pool, sqs_queue, sqs_endpoint_url):
    """A pending hold's entries replaced in hybrid mode: the balance-locked card entry's account is applied in the
    PATCH (its old hold released, the new one checked), the settlement's archive and new entry are queued and
    nudged; the worker's drain applies both, and the settlement's balance is the new hold's alone."""
    async with await _client(hybrid_database_url, sqs_endpoint_url, sqs_queue.url) as client:
        auth, ids = await api_book(client, hybrid_pool, "holds", CARDS)
        hold = {**_payment(ids, 200, pending_balance_amount={"lte": 250}), "status": "pending"}
        r = await client.post("/api/ledger_transactions", json=hold, auth=auth)
        assert r.status_code == 201, r.text
        assert await _drained(hybrid_pool, sqs_queue, 1) == 1  # the settlement's entry

        raised = _payment(ids, 240, pending_balance_amount={"lte": 250})["ledger_entries"]
        r = await client.patch(f"/api/ledger_transactions/{r.json()['id']}", json={"ledger_entries": raised},
                               auth=auth)
        assert r.status_code == 200, r.text  # 240 <= 250: the 200 is no longer held
        card = await _balance(client, auth, ids["card"])
        assert (card["lock_version"], card["balances"]["pending_balance"]["amount"]) == (3, 240)
        settlement = await _balance(client, auth, ids["settlement"])
        assert (settlement["lock_version"], settlement["balances"]["pending_balance"]["amount"]) == (1, 200)
        assert await _drained(hybrid_pool, sqs_queue, 2) == 2  # the old entry's archive and the new entry, nudged
        settlement = await _balance(client, auth, ids["settlement"])
        assert (settlement["lock_version"], settlement["balances"]["pending_balance"]["amount"]) == (3, 240)
    async with hybrid_pool.acquire() as conn:
        assert await verify(conn, auth[0]) == []
