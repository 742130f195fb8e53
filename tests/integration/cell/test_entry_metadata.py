"""PATCH /api/ledger_entries/{id}: metadata only. The entry row stays insert-only (its trigger still refuses any
UPDATE); the edit lives in ledger_entry_metadata and reads take it."""

from __future__ import annotations

import asyncpg
import pytest


async def _entry(api) -> dict:
    ledger = (await api.ledger())["id"]
    a = (await api.account(ledger))["id"]
    b = (await api.account(ledger))["id"]
    r = await api.post("/api/ledger_transactions", {"ledger_id": ledger, "status": "posted", "ledger_entries": [
        {"ledger_account_id": a, "direction": "debit", "amount": 7, "metadata": {"leg": "out", "keep": "1"}},
        {"ledger_account_id": b, "direction": "credit", "amount": 7}]})
    assert r.status_code == 201, r.text
    return r.json()["ledger_entries"][0]


async def test_patch_merges_metadata_and_reads_take_it(api):
    entry = await _entry(api)
    r = await api.patch(f"/api/ledger_entries/{entry['id']}", {"metadata": {"leg": "", "note": "checked"}})
    assert r.status_code == 200, r.text
    patched = r.json()
    assert patched["metadata"] == {"keep": "1", "note": "checked"}
    assert patched["updated_at"] >= entry["updated_at"]
    assert {k: patched[k] for k in ("amount", "direction", "ledger_account_id")} == \
        {k: entry[k] for k in ("amount", "direction", "ledger_account_id")}
    assert (await api.get(f"/api/ledger_entries/{entry['id']}")).json()["metadata"] == patched["metadata"]
    txn = (await api.get(f"/api/ledger_transactions/{entry['ledger_transaction_id']}")).json()
    assert [e["metadata"] for e in txn["ledger_entries"] if e["id"] == entry["id"]] == [patched["metadata"]]
    listed = (await api.get("/api/ledger_entries", params={"ledger_transaction_id": entry["ledger_transaction_id"]}))
    assert [e["metadata"] for e in listed.json() if e["id"] == entry["id"]] == [patched["metadata"]]

    again = await api.patch(f"/api/ledger_entries/{entry['id']}", {"metadata": {"note": "twice"}})
    assert again.json()["metadata"] == {"keep": "1", "note": "twice"}
    same = await api.patch(f"/api/ledger_entries/{entry['id']}", {"metadata": {"note": "twice"}})
    assert same.json() == again.json()  # nothing changed: nothing written


@pytest.mark.parametrize("body", [{"amount": 8}, {"direction": "credit"}, {"ledger_account_id": None}])
async def test_only_metadata_may_change(api, body):
    entry = await _entry(api)
    r = await api.patch(f"/api/ledger_entries/{entry['id']}", body)
    assert r.status_code in (400, 422), r.text
    assert (await api.get(f"/api/ledger_entries/{entry['id']}")).json()["amount"] == 7


async def test_another_tenants_entry_is_not_found(api, new_tenant):
    entry = await _entry(api)
    other = await new_tenant()
    r = await other.patch(f"/api/ledger_entries/{entry['id']}", {"metadata": {"x": "y"}})
    assert r.status_code == 404, r.text
    assert (await api.get(f"/api/ledger_entries/{entry['id']}")).json()["metadata"] == {"leg": "out", "keep": "1"}


async def test_the_entry_row_stays_insert_only(api, cell_database_url):
    entry = await _entry(api)
    await api.patch(f"/api/ledger_entries/{entry['id']}", {"metadata": {"note": "x"}})
    conn = await asyncpg.connect(cell_database_url)
    try:
        with pytest.raises(asyncpg.PostgresError) as caught:
            await conn.execute("UPDATE ledger_entries SET metadata = '{}' WHERE id = $1", entry["id"])
        assert caught.value.sqlstate == "LG009"
        assert await conn.fetchval("SELECT metadata FROM ledger_entries WHERE id = $1", entry["id"]) == \
            '{"leg": "out", "keep": "1"}'
    finally:
        await conn.close()
