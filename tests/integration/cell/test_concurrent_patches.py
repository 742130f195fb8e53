"""Two PATCHes of one resource's metadata at once (ledger, account, category, balance monitor): each merges into what
the other wrote, none is lost. The resource's row is held by the test, so both PATCHes are in flight together."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest


async def _made(api, table: str) -> dict:
    ledger = await api.ledger()
    if table == "ledgers":
        return ledger
    if table == "ledger_account_categories":
        r = await api.post("/api/ledger_account_categories", {"name": "c", "ledger_id": ledger["id"],
                                                               "normal_balance": "debit", "currency": "USD"})
        return r.json()
    account = await api.account(ledger["id"])
    if table == "ledger_accounts":
        return account
    r = await api.post("/api/ledger_account_balance_monitors", {
        "ledger_account_id": account["id"],
        "alert_condition": {"field": "posted_balance_amount", "operator": "greater_than", "value": 0}})
    return r.json()


@pytest.mark.parametrize("table", ["ledgers", "ledger_accounts", "ledger_account_categories",
                                   "ledger_account_balance_monitors"])
async def test_two_patches_of_its_metadata_at_once_keep_both_keys(live_api, cell_database_url, table):
    api = live_api
    made = await _made(api, table)
    path = f"/api/{table}/{made['id']}"
    assert (await api.patch(path, {"metadata": {"kept": "1"}})).status_code == 200
    holder = await asyncpg.connect(cell_database_url)

    async def waiting(count: int) -> None:
        deadline = time.monotonic() + 20
        while await holder.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                    "AND datname = current_database()") < count:
            assert time.monotonic() < deadline, f"fewer than {count} PATCHes ever waited for the held row"
            await asyncio.sleep(0.01)

    try:
        held = holder.transaction()
        await held.start()  # the row held: each PATCH waits for it in turn
        await holder.execute(f"SELECT 1 FROM {table} WHERE id = $1 FOR UPDATE", uuid.UUID(made["id"]))
        first = asyncio.create_task(api.patch(path, {"metadata": {"a": "1"}}))
        await waiting(1)
        second = asyncio.create_task(api.patch(path, {"metadata": {"b": "2"}}))
        await waiting(2)
        await held.rollback()
        answers = [await first, await second]
    finally:
        await holder.close()
    assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
    assert answers[1].json()["metadata"] == {"kept": "1", "a": "1", "b": "2"}
    assert (await api.get(path)).json()["metadata"] == {"kept": "1", "a": "1", "b": "2"}
