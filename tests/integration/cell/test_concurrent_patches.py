"""Two PATCHes of one ledger's or account's metadata at once: each merges into what the other wrote, none is lost
(as categories' and monitors' do: tests/integration/cell/test_categories.py, events/test_monitors_concurrent.py)."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest


@pytest.mark.parametrize("table", ["ledgers", "ledger_accounts"])
async def test_two_patches_of_its_metadata_at_once_keep_both_keys(live_api, cell_database_url, table):
    api = live_api
    ledger = await api.ledger()
    made = ledger if table == "ledgers" else await api.account(ledger["id"])
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
    assert (await api.get(path)).json()["metadata"] == {"kept": "1", "a": "1", "b": "2"}
