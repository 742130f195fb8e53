"""pending -> posted | archived, reversals, versions with the audit chain, external ids, metadata."""


import pytest


async def test_pending_then_posted(api, books):
    ledger, cash, rev = books
    txn = (await api.transfer(ledger["id"], cash["id"], rev["id"], 300, status="pending")).json()
    assert txn["status"] == "pending" and txn["posted_at"] is None
    b = await api.balances(rev["id"])
    assert (b["pending_balance"]["amount"], b["posted_balance"]["amount"], b["available_balance"]["amount"]) == (300, 0, 0)
    b = await api.balances(cash["id"])
    # Debit-normal: available = posted debits - pending credits.
    assert (b["pending_balance"]["amount"], b["posted_balance"]["amount"], b["available_balance"]["amount"]) == (300, 0, 0)
    r = await api.patch(f"/api/ledger_transactions/{txn['id']}", {"status": "posted"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "posted" and r.json()["posted_at"] and r.json()["version"] == 2
    b = await api.balances(rev["id"])
    assert (b["pending_balance"]["amount"], b["posted_balance"]["amount"], b["available_balance"]["amount"]) == (300, 300, 300)
    assert (await api.get(f"/api/ledger_accounts/{rev['id']}")).json()["lock_version"] == 2


async def test_available_balance_counts_pending_debits_against_a_credit_account(api, books):
    ledger, cash, wallet = books
    await api.transfer(ledger["id"], cash["id"], wallet["id"], 1000)
    await api.transfer(ledger["id"], wallet["id"], cash["id"], 400, status="pending")
    b = await api.balances(wallet["id"])
    assert b["posted_balance"]["amount"] == 1000
    assert b["pending_balance"]["amount"] == 600
    assert b["available_balance"] == {"credits": 1000, "debits": 400, "amount": 600, "currency": "USD",
                                      "currency_exponent": 2,
                                      "credits_string": "1000", "debits_string": "400", "amount_string": "600"}


async def test_archived_pending_transaction_drops_out_of_balances(api, books):
    ledger, cash, rev = books
    txn = (await api.transfer(ledger["id"], cash["id"], rev["id"], 300, status="pending")).json()
    r = await api.patch(f"/api/ledger_transactions/{txn['id']}", {"status": "archived"})
    assert r.status_code == 200 and r.json()["status"] == "archived"
    b = await api.balances(rev["id"])
    assert b["pending_balance"]["amount"] == 0 and b["posted_balance"]["amount"] == 0
    entries = (await api.get("/api/ledger_entries", params={"ledger_transaction_id": txn["id"]})).json()
    assert {e["status"] for e in entries} == {"archived"}


@pytest.mark.parametrize("first, then", [("posted", "archived"), ("posted", "pending"), ("archived", "posted"),
                                         ("archived", "pending")])
async def test_posted_and_archived_are_final(api, books, first, then):
    ledger, cash, rev = books
    txn = (await api.transfer(ledger["id"], cash["id"], rev["id"], 50, status="pending")).json()
    assert (await api.patch(f"/api/ledger_transactions/{txn['id']}", {"status": first})).status_code == 200
    before = await api.balances(rev["id"])
    r = await api.patch(f"/api/ledger_transactions/{txn['id']}", {"status": then})
    assert r.status_code == 422 and r.json()["code"] == "invalid_status_transition"
    assert await api.balances(rev["id"]) == before


@pytest.mark.parametrize("then", ["posted", "pending"])
async def test_an_archived_transaction_whose_external_id_was_taken_again_is_still_final(api, books, then):
    """Archiving frees a transaction's external_id for another one: moving the archived one on is refused for what
    it is (422 invalid_status_transition), not as a clash over the id it no longer holds (409 external_id_taken)."""
    ledger, cash, rev = books
    txn = (await api.transfer(ledger["id"], cash["id"], rev["id"], 50, status="pending", external_id="x-1")).json()
    assert (await api.patch(f"/api/ledger_transactions/{txn['id']}", {"status": "archived"})).status_code == 200
    assert (await api.transfer(ledger["id"], cash["id"], rev["id"], 50, external_id="x-1")).status_code == 201
    r = await api.patch(f"/api/ledger_transactions/{txn['id']}", {"status": then})
    assert r.status_code == 422 and r.json()["code"] == "invalid_status_transition", r.text
    assert (await api.get(f"/api/ledger_transactions/{txn['id']}")).json()["status"] == "archived"


async def test_metadata_and_description_stay_editable(api, books):
    ledger, cash, rev = books
    txn = (await api.transfer(ledger["id"], cash["id"], rev["id"], 50, metadata={"a": "1", "b": "2"})).json()
    r = await api.patch(f"/api/ledger_transactions/{txn['id']}", {"metadata": {"b": "", "c": "3"},
                                                                  "description": "edited"})
    assert r.status_code == 200
    assert r.json()["metadata"] == {"a": "1", "c": "3"} and r.json()["description"] == "edited"
    found = (await api.get("/api/ledger_transactions", params={"metadata[c]": "3"})).json()
    assert [t["id"] for t in found] == [txn["id"]]


async def test_reversal_flips_every_entry_and_links_both_ways(api, books):
    ledger, cash, rev = books
    txn = (await api.transfer(ledger["id"], cash["id"], rev["id"], 800)).json()
    r = await api.post(f"/api/ledger_transactions/{txn['id']}/reversal", {"metadata": {"reason": "refund"}})
    assert r.status_code == 201, r.text
    reversal = r.json()
    assert reversal["status"] == "posted"
    assert reversal["reverses_ledger_transaction_id"] == txn["id"]
    assert sorted((e["ledger_account_id"], e["direction"], e["amount"]) for e in reversal["ledger_entries"]) == \
        sorted((cash["id"], "credit", 800) if e["ledger_account_id"] == cash["id"] else (rev["id"], "debit", 800)
               for e in txn["ledger_entries"])
    original = (await api.get(f"/api/ledger_transactions/{txn['id']}")).json()
    assert original["reversed_by_ledger_transaction_id"] == reversal["id"]
    assert (await api.balances(cash["id"]))["posted_balance"]["amount"] == 0
    r = await api.post(f"/api/ledger_transactions/{txn['id']}/reversal", {})
    assert r.status_code == 422 and r.json()["code"] == "already_reversed"


async def test_a_pending_reversal_archived_leaves_its_original_reversible_again(api, books):
    """An archived reversal reversed nothing: the original is no longer marked reversed, and may be reversed anew.
    A pending reversal partially posted did reverse it (partly): the original stays reversed."""
    ledger, cash, rev = books
    txn = (await api.transfer(ledger["id"], cash["id"], rev["id"], 800)).json()
    pending = (await api.post(f"/api/ledger_transactions/{txn['id']}/reversal", {"status": "pending"})).json()
    assert (await api.get(f"/api/ledger_transactions/{txn['id']}")).json()["reversed_by_ledger_transaction_id"] == \
        pending["id"]
    r = await api.patch(f"/api/ledger_transactions/{pending['id']}", {"status": "archived"})
    assert r.status_code == 200, r.text
    original = (await api.get(f"/api/ledger_transactions/{txn['id']}")).json()
    assert original["reversed_by_ledger_transaction_id"] is None
    assert original["updated_at"] >= txn["updated_at"]
    r = await api.post(f"/api/ledger_transactions/{txn['id']}/reversal", {"status": "pending"})
    assert r.status_code == 201, r.text
    second = r.json()
    assert (await api.get(f"/api/ledger_transactions/{txn['id']}")).json()["reversed_by_ledger_transaction_id"] == \
        second["id"]
    parts = [{"ledger_account_id": e["ledger_account_id"], "direction": e["direction"], "amount": 300}
             for e in second["ledger_entries"]]
    r = await api.post(f"/api/ledger_transactions/{second['id']}/partial_post", {"posted_ledger_entries": parts})
    assert r.status_code == 201, r.text
    assert (await api.get(f"/api/ledger_transactions/{txn['id']}")).json()["reversed_by_ledger_transaction_id"] == \
        second["id"]
    r = await api.post(f"/api/ledger_transactions/{txn['id']}/reversal", {})
    assert r.status_code == 422 and r.json()["code"] == "already_reversed"
    assert (await api.balances(cash["id"]))["posted_balance"]["amount"] == 500


async def test_only_posted_transactions_can_be_reversed(api, books):
    ledger, cash, rev = books
    txn = (await api.transfer(ledger["id"], cash["id"], rev["id"], 80, status="pending")).json()
    r = await api.post(f"/api/ledger_transactions/{txn['id']}/reversal", {})
    assert r.status_code == 422 and r.json()["code"] == "invalid_status_transition"


async def test_versions_record_every_change_in_a_verifiable_chain(api, books):
    ledger, cash, rev = books
    txn = (await api.transfer(ledger["id"], cash["id"], rev["id"], 80, status="pending")).json()
    await api.patch(f"/api/ledger_transactions/{txn['id']}", {"metadata": {"k": "v"}})
    await api.patch(f"/api/ledger_transactions/{txn['id']}", {"status": "posted"})
    versions = (await api.get(f"/api/ledger_transactions/{txn['id']}/versions")).json()
    assert [(v["version"], v["status"], v["metadata"]) for v in versions] == [
        (1, "pending", {}), (2, "pending", {"k": "v"}), (3, "posted", {"k": "v"})]
    assert all(v["ledger_transaction_id"] == txn["id"] and len(v["ledger_entries"]) == 2 for v in versions)
    assert len({v["hash"] for v in versions}) == 3


async def test_entries_and_versions_cannot_be_changed_in_the_database(api, books, admin_conn):
    import asyncpg

    ledger, cash, rev = books
    txn = (await api.transfer(ledger["id"], cash["id"], rev["id"], 80)).json()
    for sql in ("UPDATE ledger_entries SET amount = 1 WHERE transaction_id = $1",
                "DELETE FROM ledger_entries WHERE transaction_id = $1",
                "UPDATE ledger_transaction_versions SET snapshot = '{}' WHERE transaction_id = $1",
                "DELETE FROM ledger_transaction_versions WHERE transaction_id = $1"):
        with pytest.raises(asyncpg.PostgresError, match="insert-only"):
            await admin_conn.execute(sql, __import__("uuid").UUID(txn["id"]))


async def test_external_id_is_unique_per_ledger_among_live_transactions(api, books):
    ledger, cash, rev = books
    first = await api.transfer(ledger["id"], cash["id"], rev["id"], 5, status="pending", external_id="ext-1")
    assert first.status_code == 201
    r = await api.transfer(ledger["id"], cash["id"], rev["id"], 5, external_id="ext-1")
    assert r.status_code == 409 and r.json()["code"] == "external_id_taken"
    await api.patch(f"/api/ledger_transactions/{first.json()['id']}", {"status": "archived"})
    assert (await api.transfer(ledger["id"], cash["id"], rev["id"], 5, external_id="ext-1")).status_code == 201
    found = (await api.get("/api/ledger_transactions", params={"external_id": "ext-1", "status": "posted"})).json()
    assert len(found) == 1


async def test_ledger_read_update_and_list(api):
    ledger = (await api.post("/api/ledgers", {"name": "Ops", "description": "d", "metadata": {"env": "prod"}})).json()
    assert ledger["object"] == "ledger" and ledger["metadata"] == {"env": "prod"}
    r = await api.patch(f"/api/ledgers/{ledger['id']}", {"name": "Ops 2", "description": None})
    assert r.json()["name"] == "Ops 2" and r.json()["description"] is None
    assert (await api.get(f"/api/ledgers/{ledger['id']}")).json()["name"] == "Ops 2"
    await api.ledger("second")
    assert [x["id"] for x in (await api.get("/api/ledgers", params={"metadata[env]": "prod"})).json()] == [ledger["id"]]
    page1 = await api.get("/api/ledgers", params={"per_page": 1})
    assert len(page1.json()) == 1 and page1.headers["x-after-cursor"]
    page2 = await api.get("/api/ledgers", params={"per_page": 1, "after_cursor": page1.headers["x-after-cursor"]})
    assert len(page2.json()) == 1 and "x-after-cursor" not in page2.headers
    assert page1.json()[0]["id"] != page2.json()[0]["id"]


async def test_the_cell_runs_as_a_role_that_cannot_change_entries_or_versions(api, books, cell_database_url):
    import uuid

    import asyncpg

    from cell.settings import load_settings
    from cell.store.db import ACTING_TENANT, create_pool

    ledger, cash, rev = books
    txn = (await api.transfer(ledger["id"], cash["id"], rev["id"], 80)).json()
    role = load_settings(("CELL_TEST_UNUSED_",)).db_role  # what a cell's pool runs as by default
    pool = await create_pool(cell_database_url, min_size=1, max_size=1, role=role)
    acting = ACTING_TENANT.set(api.tenant_id)  # as a request of the tenant (row-level security, 0110)
    try:
        assert await pool.fetchval("SELECT current_user") == "ledger_app"
        for sql in ("UPDATE ledger_entries SET amount = 1 WHERE transaction_id = $1",
                    "DELETE FROM ledger_transaction_versions WHERE transaction_id = $1"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await pool.execute(sql, uuid.UUID(txn["id"]))
        assert await pool.fetchval("SELECT count(*) FROM ledger_entries WHERE transaction_id = $1",
                                   uuid.UUID(txn["id"])) == 2
    finally:
        ACTING_TENANT.reset(acting)
        await pool.close()


async def test_a_patch_that_changes_nothing_writes_nothing(api, books):
    ledger, cash, rev = books
    txn = (await api.transfer(ledger["id"], cash["id"], rev["id"], 80, status="pending", description="d",
                              metadata={"k": "v"})).json()
    path = f"/api/ledger_transactions/{txn['id']}"
    for body in ({}, {"status": "pending"}, {"description": "d"}, {"metadata": {"k": "v"}}, {"metadata": {}},
                 {"metadata": {"absent": ""}}, {"status": "pending", "description": "d", "metadata": {"k": "v"}}):
        r = await api.patch(path, body)
        assert r.status_code == 200, r.text
        got = r.json()
        assert (got["version"], got["updated_at"], got["status"], got["description"], got["metadata"]) == (
            1, txn["updated_at"], "pending", "d", {"k": "v"}), body
    assert len((await api.get(f"{path}/versions")).json()) == 1
    r = await api.patch(path, {"metadata": {"k": "w"}})  # a real change still writes
    assert r.json()["version"] == 2 and r.json()["updated_at"] != txn["updated_at"]

    for kind, obj in (("ledgers", ledger), ("ledger_accounts", cash)):
        path = f"/api/{kind}/{obj['id']}"
        current = (await api.get(path)).json()
        bodies = [{}, {"name": current["name"]}, {"description": current["description"]}, {"metadata": {}},
                  {"metadata": {"absent": ""}}, {"name": current["name"], "metadata": current["metadata"]}]
        if kind == "ledger_accounts":
            bodies.append({"sync_only": current.get("sync_only", False)})
        for body in bodies:
            r = await api.patch(path, body)
            assert r.status_code == 200, r.text
            assert r.json()["updated_at"] == current["updated_at"], (kind, body)
        r = await api.patch(path, {"description": "changed"})
        assert r.status_code == 200 and r.json()["updated_at"] != current["updated_at"]
