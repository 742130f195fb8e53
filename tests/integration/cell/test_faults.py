"""Faults a client must get a truthful, prompt answer through: a stalled session holding a balance row (a
SIGSTOPped worker, as PostgreSQL sees it). A 503 with Retry-After and a stable code, never a hang or a 500."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg

from cell.store.db import session_bounds

LOCK_WAIT_S_MAX = 2.0  # CellSettings.lock_wait_ms_max's default, the cell these tests talk to
SLACK_S = 3.0  # a loaded 2-core machine: generous, a bound on waiting and not a speed assertion


async def _poll(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not (value := await predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.05)
    return value


def _payment(ledger_id: str, debit: str, credit: str, amount: int) -> dict:
    return {"ledger_id": ledger_id, "status": "posted", "ledger_entries": [
        {"ledger_account_id": debit, "direction": "debit", "amount": amount},
        {"ledger_account_id": credit, "direction": "credit", "amount": amount}]}


async def _book(api) -> tuple[str, str, str]:
    ledger = await api.ledger()
    a, b = await api.account(ledger["id"], "debit"), await api.account(ledger["id"], "credit")
    return ledger["id"], a["id"], b["id"]


async def test_a_posting_behind_a_stalled_lock_holder_is_answered_then_succeeds_once_the_server_ends_it(
        api, cell_database_url):
    ledger, a, b = await _book(api)
    # A session that took a balance-row lock and went silent (a SIGSTOPped worker inside its apply), with the
    # idle-in-transaction bound the workers' and cells' sessions carry (here 4 s, above the 2 s lock wait).
    stalled = await asyncpg.connect(cell_database_url, server_settings=session_bounds(idle_in_transaction_ms_max=4000))
    try:
        await stalled.execute("BEGIN")
        await stalled.execute("SELECT 1 FROM account_balances WHERE account_id = $1 FOR UPDATE", uuid.UUID(a))
        started = time.monotonic()
        blocked = await api.post("/api/ledger_transactions", _payment(ledger, a, b, 100))
        assert blocked.status_code == 503, blocked.text
        assert blocked.json()["code"] == "lock_timeout" and blocked.headers["retry-after"]
        assert time.monotonic() - started < LOCK_WAIT_S_MAX + SLACK_S

        # The server ends the stalled session after its bound; its locks go with it.
        await _poll(lambda: _closed(stalled), 4 + SLACK_S + 5, "the stalled session ended by the server")
    finally:
        await stalled.close()
    posted = await api.post("/api/ledger_transactions", _payment(ledger, a, b, 100))
    assert posted.status_code == 201, posted.text
    assert (await api.balances(a))["posted_balance"]["debits"] == 100


async def _closed(conn: asyncpg.Connection) -> bool:
    return conn.is_closed()

