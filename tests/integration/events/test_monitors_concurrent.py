"""Balance monitors under concurrency: postings (sync and queued) racing the workers' batched apply on one monitored
account give exactly one event per transition of its balance, alternating, none twice."""

from __future__ import annotations

import asyncio
import random
import uuid

import asyncpg
import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient

from cell.api.app import create_app
from tests.integration.conftest import Api, cell_settings


@pytest_asyncio.fixture
async def hybrid_api(cell_database_url, new_tenant):
    # Hybrid mode without a queue: what is queued waits for the batches this test runs (ledger_apply_report).
    app = create_app(cell_settings(cell_database_url, posting_mode="hybrid", sqs_queue_url=""))
    async with AsyncTestClient(app) as client:
        yield await new_tenant(client)


async def test_racing_postings_and_batches_give_one_event_per_transition(hybrid_api: Api, cell_database_url):
    api = hybrid_api
    ledger = await api.ledger()
    hot = await api.account(ledger["id"], "credit")
    other = await api.account(ledger["id"], "debit")
    r = await api.post("/api/ledger_account_balance_monitors", {
        "ledger_account_id": hot["id"], "alert_condition": {"field": "posted_balance_amount", "operator": "less_than",
                                                            "value": 0}})
    assert r.status_code == 201, r.text
    monitor = r.json()
    assert monitor["current_ledger_account_balance_state"]["triggered"] is False
    rng = random.Random(7)
    stop = asyncio.Event()

    async def post(n: int) -> None:
        for _ in range(n):
            direction, amount = rng.choice(["credit", "debit"]), rng.randint(1, 3)
            r = await api.post("/api/ledger_transactions", {"ledger_id": ledger["id"], "status": "posted",
                                                            "ledger_entries": [
                {"ledger_account_id": hot["id"], "direction": direction, "amount": amount,
                 "show_resulting_ledger_account_balances": rng.random() < 0.3},  # sync on the hot account
                {"ledger_account_id": other["id"], "direction": "debit" if direction == "credit" else "credit",
                 "amount": amount}]})
            assert r.status_code == 201, r.text

    async def batches() -> None:
        conn = await asyncpg.connect(cell_database_url)
        try:
            while not stop.is_set():
                await conn.fetchrow("SELECT * FROM ledger_apply_report($1::uuid[], true)", [uuid.UUID(hot["id"])])
                await asyncio.sleep(0)
        finally:
            await conn.close()

    appliers = [asyncio.create_task(batches()) for _ in range(2)]
    await asyncio.gather(*(post(25) for _ in range(6)))
    stop.set()
    await asyncio.gather(*appliers)
    conn = await asyncpg.connect(cell_database_url)
    try:
        await conn.fetchrow("SELECT * FROM ledger_apply_report($1::uuid[], false)", [uuid.UUID(hot["id"])])
        while await conn.fetchval("SELECT count(*) FROM events WHERE tenant_id = $1 AND position IS NULL",
                                  api.tenant_id):
            await conn.fetchval("SELECT ledger_sequence_events()")
    finally:
        await conn.close()

    entries, cursor = [], None
    while True:
        r = await api.get("/api/ledger_entries", params={"ledger_account_id": hot["id"], "per_page": 100,
                                                         **({"after_cursor": cursor} if cursor else {})})
        entries += r.json()
        if not (cursor := r.headers.get("x-after-cursor")):
            break
    posted, state, expected = 0, False, []
    for e in sorted(entries, key=lambda e: e["ledger_account_lock_version"]):
        posted += e["amount"] if e["direction"] == "credit" else -e["amount"]
        if (posted < 0) != state:
            state = posted < 0
            expected.append(("balance_monitor.triggered" if state else "balance_monitor.resolved",
                             e["ledger_account_lock_version"]))
    r = await api.get("/api/events", params={"entity_id": monitor["id"], "per_page": 100})
    got = [(e["event_name"], e["data"]["current_ledger_account_balance_state"]["ledger_account_lock_version"])
           for e in r.json() if e["event_name"] != "balance_monitor.created"]
    assert len(expected) >= 2, "the walk should cross zero"
    assert got == expected


async def _until_lock_waits(conn: asyncpg.Connection, count: int, timeout_s: float = 20.0) -> None:
    """Until `count` backends of this database wait for a lock (a bound on waiting, not a speed assertion)."""
    import time

    deadline = time.monotonic() + timeout_s
    while await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                              "AND datname = current_database()") < count:
        assert time.monotonic() < deadline, f"fewer than {count} requests ever waited for the held lock"
        await asyncio.sleep(0.01)


async def _race(database_url: str, account_id: str, first, then) -> tuple:
    """`first` and `then` (requests), each waiting in turn for the account's balance row (held here until both
    wait), so that `first` gets it and commits before `then` does: their answers."""
    holder = await asyncpg.connect(database_url)
    try:
        held = holder.transaction()
        await held.start()
        await holder.execute("SELECT 1 FROM account_balances WHERE account_id = $1 FOR UPDATE", uuid.UUID(account_id))
        a = asyncio.create_task(first)
        await _until_lock_waits(holder, 1)
        b = asyncio.create_task(then)
        await _until_lock_waits(holder, 2)
        await held.rollback()
        return await a, await b
    finally:
        await holder.close()


@pytest.mark.parametrize("create_first", [True, False], ids=["create-then-delete", "delete-then-create"])
async def test_a_monitor_created_while_another_is_deleted_is_still_evaluated(live_api: Api, cell_database_url,
                                                                           create_first: bool):
    # The create and the delete both wait for the account's balance row; whichever gets it second must see what the
    # first committed: the account stays monitored, and the new monitor triggers when its condition holds.
    api = live_api
    ledger = await api.ledger()
    hot, other = await api.account(ledger["id"], "credit"), await api.account(ledger["id"], "debit")
    path = "/api/ledger_account_balance_monitors"

    def body(value: int) -> dict:
        return {"ledger_account_id": hot["id"], "alert_condition": {"field": "posted_balance_amount",
                                                                   "operator": "greater_than", "value": value}}

    old = await api.post(path, body(1000))
    assert old.status_code == 201, old.text
    create, delete = api.post(path, body(0)), api.request("DELETE", f"{path}/{old.json()['id']}")
    if create_first:
        created, deleted = await _race(cell_database_url, hot["id"], create, delete)
    else:
        deleted, created = await _race(cell_database_url, hot["id"], delete, create)
    assert created.status_code == 201 and deleted.status_code == 200, (created.text, deleted.text)

    r = await api.transfer(ledger["id"], other["id"], hot["id"], 5)
    assert r.status_code == 201, r.text
    state = (await api.get(f"{path}/{created.json()['id']}")).json()["current_ledger_account_balance_state"]
    assert (state["triggered"], state["ledger_account_lock_version"]) == (True, 1)


async def test_verify_finds_a_monitor_that_is_no_longer_evaluated_or_disagrees_with_its_account(api, admin_conn):
    """What the races above would leave: an account no longer flagged monitored (its monitor never triggers again),
    or a monitor whose `triggered` is not its condition at the lock version it was evaluated to."""
    from cell.store.verify import verify

    ledger = await api.ledger()
    hot, other = await api.account(ledger["id"], "credit"), await api.account(ledger["id"], "debit")
    r = await api.post("/api/ledger_account_balance_monitors", {
        "ledger_account_id": hot["id"], "alert_condition": {"field": "posted_balance_amount", "operator": "greater_than",
                                                            "value": 10}})
    monitor = r.json()["id"]
    assert (await api.transfer(ledger["id"], other["id"], hot["id"], 50)).status_code == 201
    assert (await api.get(f"/api/ledger_account_balance_monitors/{monitor}")).json()[
        "current_ledger_account_balance_state"]["triggered"] is True
    assert await verify(admin_conn, api.tenant_id) == []
    for corrupt, undo in (
            ("UPDATE account_balances SET monitored = false WHERE account_id = $1",
             "UPDATE account_balances SET monitored = true WHERE account_id = $1"),
            ("UPDATE ledger_account_balance_monitors SET triggered = false WHERE ledger_account_id = $1",
             "UPDATE ledger_account_balance_monitors SET triggered = true WHERE ledger_account_id = $1")):
        await admin_conn.execute(corrupt, uuid.UUID(hot["id"]))
        problems = await verify(admin_conn, api.tenant_id)
        assert len(problems) == 1 and f"balance monitor {monitor}" in problems[0], problems
        await admin_conn.execute(undo, uuid.UUID(hot["id"]))
    assert await verify(admin_conn, api.tenant_id) == []
