"""DELETE /api/ledger_accounts/{id} against a posting in flight: the delete takes the tenant's fence exclusively, so
it never discards an account whose first entries are being written (sync mode: the posting waits on a balance row
lock after it has read the account)."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from tests.integration.events.events_helpers import events_until


async def _until_a_lock_wait(conn: asyncpg.Connection, timeout_s: float = 20.0) -> None:
    """Until some backend of this database waits for a lock (a bound on waiting, not a speed assertion)."""
    deadline = time.monotonic() + timeout_s
    while not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                  "AND datname = current_database()"):
        assert time.monotonic() < deadline, "the posting never waited for the held lock"
        await asyncio.sleep(0.01)


async def test_a_delete_never_discards_an_account_whose_first_posting_is_in_flight(live_api, cell_database_url):
    api = live_api  # a real cell process: the posting and the delete run concurrently
    ledger = await api.ledger()
    credit, fresh = await api.account(ledger["id"], "credit"), await api.account(ledger["id"], "debit")
    holder = await asyncpg.connect(cell_database_url)
    try:
        hold = holder.transaction()
        await hold.start()
        await holder.execute("SELECT 1 FROM account_balances WHERE account_id = $1 FOR UPDATE", credit["id"])
        posting = asyncio.create_task(api.transfer(ledger["id"], fresh["id"], credit["id"], 40))
        await _until_a_lock_wait(holder)  # the posting has read the account and waits to apply it
        deleted = await api.request("DELETE", f"/api/ledger_accounts/{fresh['id']}")
        await hold.rollback()
        posted = await posting
    finally:
        await holder.close()
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
