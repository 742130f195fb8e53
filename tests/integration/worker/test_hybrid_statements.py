"""Statements and settlements in hybrid mode, where postings leave their balance effects queued for the workers: a
statement folds its account's queued effects first (its balances and lock version are never stale), and a
settlement settles posted entries whether or not their effects were applied yet, its own transaction queued like any
other posting's. No queue and no sweeper here: nothing is applied but by the requests themselves."""

from __future__ import annotations

import uuid

import pytest
from litestar.testing import AsyncTestClient

from cell.api.app import create_app
from cell.service.tenants import create_api_key, create_tenant
from cell.settings import load_settings
from cell.store.verify import verify


@pytest.fixture(scope="module")
def hybrid_database_url(make_database):
    return make_database("worker_hybrid_statements")


@pytest.fixture
async def hybrid(hybrid_database_url, pool):
    settings = load_settings(("CELL_TEST_UNUSED_",), database_url=hybrid_database_url, posting_mode="hybrid",
                             sqs_queue_url="", sweep_interval_s=0, db_pool_min=1, db_pool_max=4)
    async with AsyncTestClient(create_app(settings)) as client:
        yield client


async def _books(client, database_url: str):
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        tenant = f"t-{uuid.uuid4().hex[:12]}"
        await create_tenant(conn, tenant)
        _, secret = await create_api_key(conn, tenant)
    finally:
        await conn.close()
    auth = (tenant, secret)
    ledger = (await client.post("/api/ledgers", json={"name": "books"}, auth=auth)).json()["id"]
    ids = {}
    for name, normal in (("wallet", "credit"), ("cash", "debit"), ("payouts", "debit")):
        r = await client.post("/api/ledger_accounts", auth=auth, json={
            "name": name, "ledger_id": ledger, "normal_balance": normal, "currency": "USD"})
        ids[name] = r.json()["id"]
    for day, amount in ((2, 10), (3, 20)):
        r = await client.post("/api/ledger_transactions", auth=auth, json={
            "ledger_id": ledger, "status": "posted", "effective_at": f"2024-01-0{day}T00:00:00Z", "ledger_entries": [
                {"ledger_account_id": ids["cash"], "direction": "debit", "amount": amount},
                {"ledger_account_id": ids["wallet"], "direction": "credit", "amount": amount}]})
        assert r.status_code == 201 and r.json()["ledger_entries"][0]["ledger_account_lock_version"] is None
    return tenant, auth, ids


async def test_a_statement_folds_its_accounts_queued_effects_first(hybrid, hybrid_database_url):
    tenant, auth, ids = await _books(hybrid, hybrid_database_url)
    r = await hybrid.post("/api/ledger_account_statements", auth=auth, json={
        "ledger_account_id": ids["wallet"], "effective_at_lower_bound": "2024-01-03T00:00:00Z",
        "effective_at_upper_bound": "2024-02-01T00:00:00Z"})
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["ledger_account_lock_version"] == 2
    assert (s["starting_balance"]["posted_balance"]["amount"], s["ending_balance"]["posted_balance"]["amount"]) == (10, 30)
    listed = await hybrid.get("/api/ledger_entries", auth=auth, params={"ledger_account_statement_id": s["id"]})
    assert [e["amount"] for e in listed.json()] == [20]
    assert (await hybrid.get(f"/api/ledger_accounts/{ids['wallet']}", auth=auth)).json()["lock_version"] == 2


async def test_a_settlement_settles_posted_entries_still_queued(hybrid, hybrid_database_url, pool):
    tenant, auth, ids = await _books(hybrid, hybrid_database_url)
    r = await hybrid.post("/api/ledger_account_settlements", auth=auth, json={
        "settled_ledger_account_id": ids["wallet"], "contra_ledger_account_id": ids["payouts"], "status": "posted"})
    assert r.status_code == 201, r.text
    assert (r.json()["status"], r.json()["amount"]) == ("posted", 30)
    wallet = (await hybrid.get(f"/api/ledger_accounts/{ids['wallet']}", auth=auth,
                               params={"balances[include_unapplied]": "true"})).json()
    assert wallet["balances"]["posted_balance"]["amount"] == 0
    async with pool.acquire() as conn:
        assert await verify(conn, tenant) == []


async def test_a_posting_a_statement_counts_is_posted_in_its_versions(hybrid, hybrid_database_url):
    # The statement (on a cell process of its own: truly concurrent) has begun and waits for its account's balance row
    # (held here) when the PATCH posts its pending transaction (queued: no wait) and commits: the statement then
    # folds that post in, and its versions show it posted.
    import asyncio
    import time

    import asyncpg
    import httpx

    from tests.integration.conftest import cell_process

    tenant, auth, ids = await _books(hybrid, hybrid_database_url)
    ledger = (await hybrid.get(f"/api/ledger_accounts/{ids['wallet']}", auth=auth)).json()["ledger_id"]
    r = await hybrid.post("/api/ledger_transactions", auth=auth, json={
        "ledger_id": ledger, "status": "pending", "effective_at": "2024-01-05T00:00:00Z", "ledger_entries": [
            {"ledger_account_id": ids["cash"], "direction": "debit", "amount": 7},
            {"ledger_account_id": ids["wallet"], "direction": "credit", "amount": 7}]})
    assert r.status_code == 201, r.text
    pending = r.json()["id"]
    with cell_process(hybrid_database_url, name="hybrid-statement", posting_mode="hybrid", sqs_queue_url="",
                      sweep_interval_s="0", lock_wait_ms_max="20000") as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as live:
            holder = await asyncpg.connect(hybrid_database_url)
            try:
                lock = holder.transaction()
                await lock.start()
                await holder.execute("SELECT 1 FROM account_balances WHERE account_id = $1 FOR UPDATE",
                                     uuid.UUID(ids["wallet"]))
                stating = asyncio.create_task(live.post("/api/ledger_account_statements", auth=auth, json={
                    "ledger_account_id": ids["wallet"], "effective_at_lower_bound": "2024-01-01T00:00:00Z",
                    "effective_at_upper_bound": "2024-02-01T00:00:00Z"}))
                deadline = time.monotonic() + 20
                while not await holder.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                                                "'Lock' AND datname = current_database()"):
                    assert time.monotonic() < deadline and not stating.done(), "the statement never waited"
                    await asyncio.sleep(0.01)
                posted = await hybrid.patch(f"/api/ledger_transactions/{pending}", auth=auth, json={"status": "posted"})
                assert posted.status_code == 200, posted.text
                await lock.rollback()
                s = await stating
            finally:
                await holder.close()
    assert s.status_code == 201, s.text
    assert s.json()["ending_balance"]["posted_balance"]["amount"] == 37  # 10 + 20 + the 7 just posted
    r = await hybrid.get("/api/ledger_transaction_versions", auth=auth,
                         params={"ledger_account_statement_id": s.json()["id"]})
    assert r.status_code == 200, r.text
    assert [(v["version"], v["status"]) for v in r.json() if v["ledger_transaction_id"] == pending] == \
        [(1, "pending"), (2, "posted")]
