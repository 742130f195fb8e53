"""`status: "archived"` on a create and on a reversal (Modern Treasury's SDK types both): the transaction and its
entries are written archived (`archived_reason` null), version 1, with no balance effect on any account (balance
locks and `lock_version` are not checked: nothing of it counts), `ledger_transaction.created` with status
archived; it is final. An archived reversal reverses nothing: the original is not marked reversed. In sync mode and
in hybrid mode (where its entries would have been queued, set-wise when no account is applied now)."""

from __future__ import annotations

import asyncpg

from control_plane.moves import check_subjects
from tests.integration.conftest import Api
from tests.integration.events.events_helpers import events_until


async def _effects(admin_conn, tenant_id: str) -> int:
    return await admin_conn.fetchval("SELECT count(*) FROM balance_effects WHERE tenant_id = $1", tenant_id)


async def _events(api: Api, entity_id: str, count: int = 1) -> list[tuple[str, str]]:
    """The entity's events once `count` are listed (positioned within ~0.2 s)."""
    seen = await events_until(api, count, entity_id=entity_id)
    return [(e["event_name"], e["data"]["status"]) for e in seen]


def _declined(ledger: str, wallet: str, cash: str, amount: int, **lock) -> dict:
    return {"ledger_id": ledger, "status": "archived", "description": "declined authorization", "ledger_entries": [
        {"ledger_account_id": wallet, "direction": "debit", "amount": amount, **lock},
        {"ledger_account_id": cash, "direction": "credit", "amount": amount}]}


async def _created_archived(api: Api, admin_conn) -> None:
    ledger = (await api.ledger())["id"]
    wallet = (await api.account(ledger, "credit"))["id"]
    cash = (await api.account(ledger, "debit"))["id"]
    assert (await api.transfer(ledger, cash, wallet, 100)).status_code == 201
    before = {a: await api.balances(a) for a in (wallet, cash)}
    effects = await _effects(admin_conn, api.tenant_id)

    bodies = [_declined(ledger, wallet, cash, 500),  # no lock: in hybrid mode nothing is applied now
              _declined(ledger, wallet, cash, 700, available_balance_amount={"gte": 0}, lock_version=0,
                        show_resulting_ledger_account_balances=True)]
    for n, body in enumerate(bodies):
        r = await api.post("/api/ledger_transactions", body, headers={"Idempotency-Key": f"declined-{n}"})
        assert r.status_code == 201, r.text
        txn = r.json()
        assert (txn["status"], txn["archived_reason"], txn["version"]) == ("archived", None, 1)
        assert txn["posted_at"] is None and txn["archived_at"] is not None
        assert {e["status"] for e in txn["ledger_entries"]} == {"archived"}
        replay = await api.post("/api/ledger_transactions", body, headers={"Idempotency-Key": f"declined-{n}"})
        assert replay.status_code == 201 and replay.json() == txn

        again = (await api.get(f"/api/ledger_transactions/{txn['id']}")).json()
        assert (again["status"], again["archived_reason"], again["version"]) == ("archived", None, 1)
        assert again["archived_at"] == txn["archived_at"]
        assert {e["status"] for e in again["ledger_entries"]} == {"archived"}
        versions = (await api.get(f"/api/ledger_transactions/{txn['id']}/versions")).json()
        assert [(v["version"], v["status"]) for v in versions] == [(1, "archived")]
        assert await _events(api, txn["id"]) == [("ledger_transaction.created", "archived")]
        # Archived is final.
        moved = await api.patch(f"/api/ledger_transactions/{txn['id']}", {"status": "posted"})
        assert moved.status_code == 422 and moved.json()["code"] == "invalid_status_transition", moved.text

    assert {a: await api.balances(a) for a in (wallet, cash)} == before
    assert await _effects(admin_conn, api.tenant_id) == effects  # nothing queued, nothing applied
    listed = (await api.get("/api/ledger_transactions", params={"status": "archived"})).json()
    assert len(listed) == 2


async def _reversal_archived(api: Api, admin_conn) -> None:
    ledger = (await api.ledger())["id"]
    wallet = (await api.account(ledger, "credit"))["id"]
    cash = (await api.account(ledger, "debit"))["id"]
    original = (await api.transfer(ledger, cash, wallet, 100)).json()
    before = {a: await api.balances(a) for a in (wallet, cash)}
    effects = await _effects(admin_conn, api.tenant_id)

    r = await api.post(f"/api/ledger_transactions/{original['id']}/reversal", {"status": "archived"})
    assert r.status_code == 201, r.text
    reversal = r.json()
    assert (reversal["status"], reversal["archived_reason"]) == ("archived", None)
    assert reversal["reverses_ledger_transaction_id"] == original["id"]
    assert {e["status"] for e in reversal["ledger_entries"]} == {"archived"}
    assert {a: await api.balances(a) for a in (wallet, cash)} == before
    assert await _effects(admin_conn, api.tenant_id) == effects
    # It reversed nothing: the original is not marked reversed, has no new version nor a `.reversed` event.
    again = (await api.get(f"/api/ledger_transactions/{original['id']}")).json()
    assert (again["reversed_by_ledger_transaction_id"], again["version"]) == (None, 1)
    assert await _events(api, reversal["id"]) == [("ledger_transaction.created", "archived")]
    # Listed in stream order: a `.reversed` written with the reversal would be listed by now.
    assert [name for name, _ in await _events(api, original["id"])] == ["ledger_transaction.created"]

    # The original is reversible still.
    real = await api.post(f"/api/ledger_transactions/{original['id']}/reversal", {})
    assert real.status_code == 201 and real.json()["status"] == "posted", real.text
    assert (await api.balances(wallet))["posted_balance"]["amount"] == 0


async def test_a_transaction_created_archived_counts_nowhere_in_sync_mode(api, admin_conn):
    await _created_archived(api, admin_conn)


async def test_a_reversal_created_archived_reverses_nothing_in_sync_mode(api, admin_conn):
    await _reversal_archived(api, admin_conn)


async def test_a_transaction_created_archived_counts_nowhere_in_hybrid_mode(hybrid_api, admin_conn):
    await _created_archived(hybrid_api, admin_conn)


async def test_a_reversal_created_archived_reverses_nothing_in_hybrid_mode(hybrid_api, admin_conn):
    await _reversal_archived(hybrid_api, admin_conn)


async def test_a_moves_delta_check_counts_no_effect_for_a_transaction_created_archived(api, cell_database_url):
    """A tenant move's delta check of touched transactions (control_plane.moves.check_subjects: their entries'
    effects add up to what their status counts for) finds nothing wrong with one created archived; here the cell is
    both the source and the target of the check."""
    ledger = (await api.ledger())["id"]
    wallet = (await api.account(ledger, "credit"))["id"]
    cash = (await api.account(ledger, "debit"))["id"]
    original = (await api.transfer(ledger, cash, wallet, 100)).json()
    made = [(await api.post("/api/ledger_transactions", _declined(ledger, wallet, cash, 5))).json(),
            (await api.post(f"/api/ledger_transactions/{original['id']}/reversal", {"status": "archived"})).json()]
    assert [t["status"] for t in made] == ["archived", "archived"]
    src, dst = await asyncpg.connect(cell_database_url), await asyncpg.connect(cell_database_url)
    try:
        problems, failed = await check_subjects(src, dst, api.tenant_id,
                                                {"transactions": [original["id"], *(t["id"] for t in made)]})
    finally:
        await src.close()
        await dst.close()
    assert problems == [], problems


async def _archived_at_the_end_of_the_range(api: Api) -> None:
    """A balance at the end of the signed 64-bit range: a transaction created archived there (a record, e.g. a declined
    authorization) is written, not refused as balance_overflow: it counts nowhere, so it takes no balance past it."""
    largest = 2**63 - 1
    ledger = (await api.ledger())["id"]
    wallet = (await api.account(ledger, "credit"))["id"]
    cash = (await api.account(ledger, "debit"))["id"]
    original = await api.transfer(ledger, cash, wallet, largest)
    assert original.status_code == 201, original.text
    before = {a: await api.balances(a) for a in (wallet, cash)}
    # What a posting counting there must still be refused.
    over = await api.transfer(ledger, cash, wallet, 1, status="pending")
    assert over.status_code == 422 and over.json()["code"] == "balance_overflow", over.text

    for amount in (largest, 1):
        record = await api.transfer(ledger, cash, wallet, amount, status="archived")
        assert record.status_code == 201 and record.json()["status"] == "archived", record.text
    assert {a: await api.balances(a) for a in (wallet, cash)} == before


async def test_a_transaction_created_archived_at_the_end_of_the_range_is_written_in_sync_mode(api):
    await _archived_at_the_end_of_the_range(api)


async def test_a_transaction_created_archived_at_the_end_of_the_range_is_written_in_hybrid_mode(hybrid_api):
    await _archived_at_the_end_of_the_range(hybrid_api)
