"""A reversal made while its original changes: a pending transaction whose entries a PATCH replaces and posts while
the reversal is in flight is reversed as it was posted, never by the entries it had before (the reversal's entries,
made from a read before the original's row lock, are checked against it under the lock)."""

from __future__ import annotations

import asyncio

import asyncpg

WAIT_S = 30


async def _waiters(conn: asyncpg.Connection, n: int) -> None:
    """Until n sessions of this database wait on a lock (the row held below), within a generous bound."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                              "AND datname = current_database()") < n:
        assert asyncio.get_running_loop().time() < deadline, f"fewer than {n} sessions waited on the row"
        await asyncio.sleep(0.01)


async def test_a_reversal_mirrors_the_entries_the_original_was_posted_with(live_api, cell_database_url):
    api = live_api
    ledger = await api.ledger()
    debit, credit = await api.account(ledger["id"], "debit"), await api.account(ledger["id"], "credit")
    r = await api.transfer(ledger["id"], debit["id"], credit["id"], 100, status="pending")
    assert r.status_code == 201, r.text
    txn = r.json()["id"]
    holder = await asyncpg.connect(cell_database_url)
    try:
        held = holder.transaction()
        await held.start()
        # The original's row held, so that the PATCH and the reversal both read it first and then queue for it.
        await holder.fetch("SELECT 1 FROM ledger_transactions WHERE id = $1::uuid FOR UPDATE", txn)
        patch = asyncio.ensure_future(api.patch(f"/api/ledger_transactions/{txn}", {
            "status": "posted", "ledger_entries": [
                {"ledger_account_id": debit["id"], "direction": "debit", "amount": 500},
                {"ledger_account_id": credit["id"], "direction": "credit", "amount": 500}]}))
        await _waiters(holder, 1)
        reversal = asyncio.ensure_future(api.post(f"/api/ledger_transactions/{txn}/reversal", {}))
        await _waiters(holder, 2)
        await held.rollback()
        patched, reversed_ = await asyncio.gather(patch, reversal)
    finally:
        await holder.close()
    assert patched.status_code == 200 and patched.json()["status"] == "posted", patched.text
    if reversed_.status_code != 201:  # the original changed under it: a conflict the client retries
        assert reversed_.status_code == 409 and reversed_.json()["code"] == "retryable_conflict", reversed_.text
        reversed_ = await api.post(f"/api/ledger_transactions/{txn}/reversal", {})
    assert reversed_.status_code == 201, reversed_.text
    assert sorted((e["direction"], e["amount"]) for e in reversed_.json()["ledger_entries"]) == [
        ("credit", 500), ("debit", 500)]
    assert (await api.balances(debit["id"]))["posted_balance"]["amount"] == 0
