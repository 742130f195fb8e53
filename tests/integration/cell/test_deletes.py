"""DELETE of an account or a ledger against a write in flight that would make it non-empty: the delete takes the
tenant's fence exclusively, so it never discards an account whose first entries are being written, nor a ledger
whose first account is being created (each held in flight by a lock the test holds, after it has checked what the
delete changes)."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg

from tests.integration.events.events_helpers import events_until


async def _until_a_lock_wait(conn: asyncpg.Connection, timeout_s: float = 20.0) -> None:
    """Until some backend of this database waits for a lock (a bound on waiting, not a speed assertion)."""
    deadline = time.monotonic() + timeout_s
    while not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                  "AND datname = current_database()"):
        assert time.monotonic() < deadline, "the posting never waited for the held lock"
        await asyncio.sleep(0.01)


async def _delete_during(api, database_url: str, path: str, write, hold: str, *args):
    """DELETE `path` while the request `write` is in flight, held there by another session's lock (`hold`, run in
    its transaction, rolled back once the delete has answered): the write's answer and the delete's."""
    holder = await asyncpg.connect(database_url)
    try:
        held = holder.transaction()
        await held.start()
        await holder.execute(hold, *args)
        writing = asyncio.create_task(write)
        await _until_a_lock_wait(holder)  # the write has checked what the delete changes, and waits
        deleted = await api.request("DELETE", path)
        await held.rollback()
        return await writing, deleted
    finally:
        await holder.close()


async def test_a_delete_never_discards_an_account_whose_first_posting_is_in_flight(live_api, cell_database_url):
    api = live_api  # a real cell process: the posting and the delete run concurrently
    ledger = await api.ledger()
    credit, fresh = await api.account(ledger["id"], "credit"), await api.account(ledger["id"], "debit")
    # The posting has read the account and waits to apply it (sync mode: a balance row lock).
    posted, deleted = await _delete_during(api, cell_database_url, f"/api/ledger_accounts/{fresh['id']}",
                                           api.transfer(ledger["id"], fresh["id"], credit["id"], 40),
                                           "SELECT 1 FROM account_balances WHERE account_id = $1 FOR UPDATE",
                                           credit["id"])
    assert posted.status_code == 201, posted.text
    # The delete waited for the posting's fence, at most its bound, and did nothing.
    assert deleted.status_code == 503 and deleted.json()["code"] == "lock_timeout", deleted.text
    assert (await api.balances(fresh["id"]))["posted_balance"]["amount"] == 40
    again = await api.request("DELETE", f"/api/ledger_accounts/{fresh['id']}")
    assert again.status_code == 422 and again.json()["code"] == "ledger_account_has_entries", again.text


async def test_a_deleted_account_is_gone_from_categories_statements_and_postings(api, books):
    ledger, debit, credit = books
    fresh = await api.account(ledger["id"], "debit")
    r = await api.post("/api/ledger_account_categories", {"name": "all", "ledger_id": ledger["id"],
                                                           "normal_balance": "debit", "currency": "USD"})
    category = r.json()["id"]
    r = await api.request("DELETE", f"/api/ledger_accounts/{fresh['id']}")
    assert r.status_code == 200 and r.json()["discarded_at"] is not None, r.text
    events = await events_until(api, 2, entity_id=fresh["id"])
    assert [e["event_name"] for e in events] == ["ledger_account.created", "ledger_account.deleted"]
    r = await api.request("PUT", f"/api/ledger_account_categories/{category}/ledger_accounts/{fresh['id']}")
    assert r.status_code in (404, 422) and r.json()["code"] in ("not_found", "ledger_account_not_found"), r.text
    r = await api.post("/api/ledger_account_statements", {
        "ledger_account_id": fresh["id"], "effective_at_lower_bound": "2026-01-01T00:00:00Z",
        "effective_at_upper_bound": "2026-02-01T00:00:00Z"})
    assert r.status_code == 422 and r.json()["code"] == "ledger_account_not_found", r.text
    r = await api.transfer(ledger["id"], fresh["id"], credit["id"], 5)
    assert r.status_code == 422 and r.json()["code"] == "ledger_account_not_found", r.text
    assert (await api.transfer(ledger["id"], debit["id"], credit["id"], 5)).status_code == 201


async def test_a_delete_never_discards_a_ledger_whose_first_account_is_being_created(live_api, cell_database_url):
    api = live_api
    ledger = await api.ledger()
    # The creation has found the ledger and waits to insert: an uncommitted account holds its external id.
    created, deleted = await _delete_during(
        api, cell_database_url, f"/api/ledgers/{ledger['id']}",
        api.post("/api/ledger_accounts", {"name": "first", "ledger_id": ledger["id"], "normal_balance": "debit",
                                          "currency": "USD", "external_id": "first"}),
        "INSERT INTO ledger_accounts (id, tenant_id, ledger_id, name, normal_balance, currency, currency_exponent,"
        " metadata, sync_only, external_id) VALUES (gen_random_uuid(), $1, $2, 'held', 'debit', 'USD', 2, '{}',"
        " false, 'first')", api.tenant_id, uuid.UUID(ledger["id"]))
    assert created.status_code == 201, created.text
    assert deleted.status_code == 503 and deleted.json()["code"] == "lock_timeout", deleted.text
    again = await api.request("DELETE", f"/api/ledgers/{ledger['id']}")
    assert again.status_code == 422 and again.json()["code"] == "ledger_not_empty", again.text
    assert (await api.get(f"/api/ledger_accounts/{created.json()['id']}")).status_code == 200


async def test_an_account_a_monitor_watches_or_a_category_holds_is_not_deleted_until_they_let_go(api, books):
    """Deleted, it would leave the monitor evaluated against, and the category listing, an account not found."""
    ledger, _, _ = books
    watched, held = await api.account(ledger["id"], "debit"), await api.account(ledger["id"], "debit")
    r = await api.post("/api/ledger_account_balance_monitors", {
        "ledger_account_id": watched["id"],
        "alert_condition": {"field": "posted_balance_amount", "operator": "greater_than", "value": 0}})
    assert r.status_code == 201, r.text
    monitor = r.json()["id"]
    category = (await api.post("/api/ledger_account_categories", {
        "name": "c", "ledger_id": ledger["id"], "normal_balance": "debit", "currency": "USD"})).json()["id"]
    member = f"/api/ledger_account_categories/{category}/ledger_accounts/{held['id']}"
    assert (await api.request("PUT", member)).status_code in (200, 204)
    for account in (watched, held):
        r = await api.request("DELETE", f"/api/ledger_accounts/{account['id']}")
        assert r.status_code == 422 and r.json()["code"] == "ledger_account_in_use", r.text
        assert (await api.get(f"/api/ledger_accounts/{account['id']}")).status_code == 200
    assert (await api.request("DELETE", f"/api/ledger_account_balance_monitors/{monitor}")).status_code == 200
    assert (await api.request("DELETE", member)).status_code in (200, 204)
    for account in (watched, held):
        assert (await api.request("DELETE", f"/api/ledger_accounts/{account['id']}")).status_code == 200
