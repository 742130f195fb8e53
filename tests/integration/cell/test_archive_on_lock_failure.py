"""`archive_on_balance_lock_failure`: a violated balance lock (or a stale lock_version) creates the transaction
archived, `archived_reason: "balance_lock_failure"`, 201 instead of 422, and nothing of it counts in any balance;
in sync mode and in hybrid mode (where its unlocked entries would have been queued)."""

from __future__ import annotations

from tests.integration.conftest import Api


def _overdraft(ledger_id: str, wallet: str, cash: str, amount: int, **lock) -> dict:
    return {"ledger_id": ledger_id, "status": "posted", "archive_on_balance_lock_failure": True, "ledger_entries": [
        {"ledger_account_id": wallet, "direction": "debit", "amount": amount, **lock},
        {"ledger_account_id": cash, "direction": "credit", "amount": amount}]}


async def _effects(admin_conn, tenant_id: str) -> int:
    return await admin_conn.fetchval("SELECT count(*) FROM balance_effects WHERE tenant_id = $1", tenant_id)


async def _archives_instead_of_refusing(api: Api, admin_conn) -> None:
    ledger = (await api.ledger())["id"]
    wallet = (await api.account(ledger, "credit"))["id"]
    cash = (await api.account(ledger, "debit"))["id"]
    await api.transfer(ledger, cash, wallet, 100)
    before = {a: await api.balances(a) for a in (wallet, cash)}
    effects = await _effects(admin_conn, api.tenant_id)

    r = await api.post("/api/ledger_transactions", _overdraft(ledger, wallet, cash, 500,
                                                              available_balance_amount={"gte": 0}))
    assert r.status_code == 201, r.text
    txn = r.json()
    assert (txn["status"], txn["archived_reason"]) == ("archived", "balance_lock_failure")
    assert txn["posted_at"] is None and txn["archived_at"] is not None
    assert {e["status"] for e in txn["ledger_entries"]} == {"archived"}
    assert {a: await api.balances(a) for a in (wallet, cash)} == before
    assert await _effects(admin_conn, api.tenant_id) == effects  # nothing queued, nothing applied

    again = (await api.get(f"/api/ledger_transactions/{txn['id']}")).json()
    assert (again["status"], again["archived_reason"], again["version"]) == ("archived", "balance_lock_failure", 1)
    versions = (await api.get(f"/api/ledger_transactions/{txn['id']}/versions")).json()
    assert [v["status"] for v in versions] == ["archived"]
    listed = (await api.get("/api/ledger_transactions", params={"status": "archived"})).json()
    assert [t["id"] for t in listed] == [txn["id"]]

    # A stale lock_version archives too; a lock that holds posts as ever.
    stale = await api.post("/api/ledger_transactions", _overdraft(ledger, wallet, cash, 10, lock_version=0))
    assert stale.status_code == 201 and stale.json()["archived_reason"] == "balance_lock_failure", stale.text
    ok = await api.post("/api/ledger_transactions", _overdraft(ledger, wallet, cash, 60,
                                                               available_balance_amount={"gte": 0}))
    assert ok.status_code == 201 and ok.json()["status"] == "posted" and ok.json()["archived_reason"] is None
    assert (await api.balances(wallet))["posted_balance"]["amount"] == 40
    # A transaction archived so is final: it cannot be posted.
    moved = await api.patch(f"/api/ledger_transactions/{txn['id']}", {"status": "posted"})
    assert moved.status_code == 422, moved.text


async def test_a_violated_lock_archives_the_transaction_in_sync_mode(api, admin_conn):
    await _archives_instead_of_refusing(api, admin_conn)


async def test_without_the_flag_a_violated_lock_is_still_422(api):
    ledger = (await api.ledger())["id"]
    wallet = (await api.account(ledger, "credit"))["id"]
    cash = (await api.account(ledger, "debit"))["id"]
    body = _overdraft(ledger, wallet, cash, 5, available_balance_amount={"gte": 0})
    del body["archive_on_balance_lock_failure"]
    r = await api.post("/api/ledger_transactions", body)
    assert r.status_code == 422 and r.json()["code"] == "balance_lock_failed"
    assert (await api.get("/api/ledger_transactions")).json() == []


async def test_a_replayed_key_answers_the_archived_transaction(api):
    ledger = (await api.ledger())["id"]
    wallet = (await api.account(ledger, "credit"))["id"]
    cash = (await api.account(ledger, "debit"))["id"]
    body = _overdraft(ledger, wallet, cash, 5, available_balance_amount={"gte": 0})
    first = await api.post("/api/ledger_transactions", body, headers={"Idempotency-Key": "arch-1"})
    second = await api.post("/api/ledger_transactions", body, headers={"Idempotency-Key": "arch-1"})
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"] and second.json()["archived_reason"] == "balance_lock_failure"


async def test_a_violated_lock_archives_the_transaction_in_hybrid_mode(hybrid_api, admin_conn):
    await _archives_instead_of_refusing(hybrid_api, admin_conn)
