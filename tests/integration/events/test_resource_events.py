"""Events of ledgers, categories, statements, settlements and balance monitor deletes: each change made through the API
writes its event in its own transaction, `data` the object as the API answered; a refused change, or a PATCH that
changes nothing, writes none."""

from __future__ import annotations

import uuid

from tests.integration.events.events_helpers import events_until

PUBLIC = "https://93.184.216.34/hooks"


async def _ok(response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()


async def _all_events(api, admin_conn, count: int) -> list[dict]:
    """Exactly `count` events: listed (positioned) and no other row of the tenant's, positioned or not."""
    seen = await events_until(api, count)
    assert await admin_conn.fetchval("SELECT count(*) FROM events WHERE tenant_id = $1", api.tenant_id) == count
    return seen


def _names(seen: list[dict]) -> list[tuple[str, str, str]]:
    return [(e["resource"], e["event_name"], e["entity_id"]) for e in seen]


async def test_ledgers_and_categories_are_created_updated_and_deleted_each_with_its_event(api, admin_conn):
    ledger = await api.ledger()
    renamed = await _ok(await api.patch(f"/api/ledgers/{ledger['id']}", {"name": "books", "metadata": {"k": "v"}}))
    await _ok(await api.patch(f"/api/ledgers/{ledger['id']}", {"name": "books"}))  # no change: no event
    await _ok(await api.patch(f"/api/ledgers/{uuid.uuid4()}", {"name": "x"}), 404)

    body = {"name": "assets", "ledger_id": ledger["id"], "currency": "USD", "normal_balance": "debit"}
    parent = await _ok(await api.post("/api/ledger_account_categories", body), 201)
    child = await _ok(await api.post("/api/ledger_account_categories",
                                     {**body, "name": "cash", "ledger_account_category_ids": [parent["id"]]}), 201)
    await _ok(await api.post("/api/ledger_account_categories", {**body, "ledger_id": str(uuid.uuid4())}), 422)
    await _ok(await api.post("/api/ledger_account_categories",
                             {**body, "ledger_account_category_ids": [str(uuid.uuid4())]}), 422)
    await _ok(await api.post("/api/ledger_account_categories", {**body, "currency": "EUR",
                                                                "ledger_account_category_ids": [parent["id"]]}), 422)
    updated = await _ok(await api.patch(f"/api/ledger_account_categories/{child['id']}",
                                        {"description": "on hand", "metadata": {"team": "ops"}}))
    await _ok(await api.patch(f"/api/ledger_account_categories/{child['id']}", {"description": "on hand"}))
    await _ok(await api.patch(f"/api/ledger_account_categories/{uuid.uuid4()}", {"name": "x"}), 404)
    deleted = await _ok(await api.request("DELETE", f"/api/ledger_account_categories/{child['id']}"))
    await _ok(await api.request("DELETE", f"/api/ledger_account_categories/{child['id']}"), 404)

    seen = await _all_events(api, admin_conn, 6)
    assert _names(seen) == [
        ("ledger", "ledger.created", ledger["id"]), ("ledger", "ledger.updated", ledger["id"]),
        ("ledger_account_category", "ledger_account_category.created", parent["id"]),
        ("ledger_account_category", "ledger_account_category.created", child["id"]),
        ("ledger_account_category", "ledger_account_category.updated", child["id"]),
        ("ledger_account_category", "ledger_account_category.deleted", child["id"])]
    assert [e["data"] for e in seen] == [ledger, renamed, parent, child, updated, deleted]
    assert deleted["discarded_at"] is not None and updated["metadata"] == {"team": "ops"}


async def test_a_statement_is_created_with_its_event_and_a_refused_one_writes_none(api, admin_conn):
    ledger = await api.ledger()
    wallet = await api.account(ledger["id"], "credit")
    body = {"ledger_account_id": wallet["id"], "effective_at_lower_bound": "2024-01-01T00:00:00Z",
            "effective_at_upper_bound": "2024-02-01T00:00:00Z", "description": "January"}
    statement = await _ok(await api.post("/api/ledger_account_statements", body), 201)
    await _ok(await api.post("/api/ledger_account_statements", {**body, "ledger_account_id": str(uuid.uuid4())}), 422)
    again = await _ok(await api.post("/api/ledger_account_statements", body, headers={"Idempotency-Key": "s1"}), 201)
    replayed = await _ok(await api.post("/api/ledger_account_statements", body, headers={"Idempotency-Key": "s1"}),
                         201)
    assert replayed == again  # a replay is no change: no event

    seen = await _all_events(api, admin_conn, 4)
    assert _names(seen)[2:] == [("ledger_account_statement", "ledger_account_statement.created", statement["id"]),
                                ("ledger_account_statement", "ledger_account_statement.created", again["id"])]
    assert seen[2]["data"] == statement and seen[3]["data"] == again


async def test_settlements_emit_created_then_modern_treasurys_finish_processing_and_finish_archiving(api, admin_conn):
    ledger = await api.ledger()
    wallet = await api.account(ledger["id"], "credit")
    cash = await api.account(ledger["id"], "debit")
    payouts = await api.account(ledger["id"], "debit")
    await _ok(await api.transfer(ledger["id"], cash["id"], wallet["id"], 300,
                                        effective_at="2024-01-10T12:00:00Z"), 201)
    base = {"settled_ledger_account_id": wallet["id"], "contra_ledger_account_id": payouts["id"],
            "effective_at_upper_bound": "2024-02-01T00:00:00Z"}
    before = len(await events_until(api, 5))  # the ledger, three accounts, the payment

    settled = await _ok(await api.post("/api/ledger_account_settlements", base), 201)  # pending, gathers the 300
    assert settled["status"] == "pending" and settled["amount"] == 300
    nowhere = {**base, "settled_ledger_account_id": str(uuid.uuid4())}
    await _ok(await api.post("/api/ledger_account_settlements", nowhere), 422)
    posted = await _ok(await api.patch(f"/api/ledger_account_settlements/{settled['id']}", {"status": "posted"}))
    await _ok(await api.patch(f"/api/ledger_account_settlements/{settled['id']}", {"status": "pending"}), 422)
    await _ok(await api.patch(f"/api/ledger_account_settlements/{settled['id']}", {"status": "posted"}))  # no change

    more = await _ok(await api.transfer(ledger["id"], cash["id"], wallet["id"], 40,
                                        effective_at="2024-01-11T12:00:00Z"), 201)
    leg = next(e["id"] for e in more["ledger_entries"] if e["ledger_account_id"] == wallet["id"])
    draft = await _ok(await api.post("/api/ledger_account_settlements", {**base, "status": "drafting"}), 201)
    attached = await _ok(await api.patch(f"/api/ledger_account_settlements/{draft['id']}/ledger_entries",
                                         {"ledger_entry_ids": [leg]}))
    assert attached["amount"] == 40
    await _ok(await api.patch(f"/api/ledger_account_settlements/{draft['id']}/ledger_entries",
                              {"ledger_entry_ids": [str(uuid.uuid4())]}), 422)
    noted = await _ok(await api.patch(f"/api/ledger_account_settlements/{draft['id']}", {"metadata": {"k": "v"}}))
    archived = await _ok(await api.patch(f"/api/ledger_account_settlements/{draft['id']}", {"status": "archived"}))
    await _ok(await api.patch(f"/api/ledger_account_settlements/{draft['id']}/ledger_entries",
                              {"ledger_entry_ids": [leg]}), 422)  # archived: entries change only while drafting

    seen = (await _all_events(api, admin_conn, before + 10))[before:]
    mine = [e for e in seen if e["resource"] == "ledger_account_settlement"]
    assert [(e["event_name"], e["entity_id"]) for e in mine] == [
        ("ledger_account_settlement.created", settled["id"]),
        ("ledger_account_settlement.finish_processing", settled["id"]),
        ("ledger_account_settlement.updated", settled["id"]),
        ("ledger_account_settlement.created", draft["id"]),
        ("ledger_account_settlement.updated", draft["id"]),
        ("ledger_account_settlement.updated", draft["id"]),
        ("ledger_account_settlement.finish_archiving", draft["id"])]
    assert [e["data"] for e in mine] == [settled, settled, posted, draft, attached, noted, archived]
    # the settlement's transaction has its own events, in the same database transactions
    assert [(e["event_name"], e["entity_id"]) for e in seen if e["resource"] == "ledger_transaction"] == [
        ("ledger_transaction.created", settled["ledger_transaction_id"]),
        ("ledger_transaction.posted", settled["ledger_transaction_id"]),
        ("ledger_transaction.created", more["id"])]


async def test_a_deleted_balance_monitor_has_its_event_and_a_second_delete_writes_none(api, admin_conn):
    ledger = await api.ledger()
    wallet = await api.account(ledger["id"], "credit")
    monitor = await _ok(await api.post("/api/ledger_account_balance_monitors", {
        "ledger_account_id": wallet["id"],
        "alert_condition": {"field": "posted_balance_amount", "operator": "less_than", "value": 0}}), 201)
    deleted = await _ok(await api.request("DELETE", f"/api/ledger_account_balance_monitors/{monitor['id']}"))
    await _ok(await api.request("DELETE", f"/api/ledger_account_balance_monitors/{monitor['id']}"), 404)

    seen = await _all_events(api, admin_conn, 4)
    assert _names(seen)[2:] == [
        ("ledger_account_balance_monitor", "balance_monitor.created", monitor["id"]),
        ("ledger_account_balance_monitor", "balance_monitor.deleted", monitor["id"])]
    assert seen[3]["data"] == deleted and deleted["discarded_at"] is not None


async def test_a_webhook_endpoint_may_ask_for_each_new_event_name(api):
    names = ["ledger.created", "ledger.updated", "ledger_account_category.created", "ledger_account_category.updated",
             "ledger_account_category.deleted", "ledger_account_statement.created",
             "ledger_account_settlement.created", "ledger_account_settlement.updated",
             "ledger_account_settlement.finish_processing", "ledger_account_settlement.finish_archiving",
             "balance_monitor.deleted"]
    made = await _ok(await api.post("/api/webhook_endpoints", {"url": PUBLIC, "event_names": names}), 201)
    assert made["event_names"] == sorted(names)


async def test_a_transaction_archived_or_reversed_has_its_event_and_a_refused_change_writes_none(api, admin_conn):
    ledger = await api.ledger()
    cash = await api.account(ledger["id"], "debit")
    wallet = await api.account(ledger["id"], "credit")
    pending = await _ok(await api.transfer(ledger["id"], cash["id"], wallet["id"], 10, status="pending"), 201)
    archived = await _ok(await api.patch(f"/api/ledger_transactions/{pending['id']}", {"status": "archived"}))
    refused = await api.patch(f"/api/ledger_transactions/{pending['id']}", {"status": "posted"})
    assert refused.status_code == 422, refused.text
    refused = await api.post(f"/api/ledger_transactions/{pending['id']}/reversal", {})
    assert refused.status_code == 422, refused.text  # an archived transaction is not reversed
    posted = await _ok(await api.transfer(ledger["id"], cash["id"], wallet["id"], 20), 201)
    reversal = await _ok(await api.post(f"/api/ledger_transactions/{posted['id']}/reversal", {}), 201)
    refused = await api.post(f"/api/ledger_transactions/{posted['id']}/reversal", {})
    assert refused.status_code == 422, refused.text  # reversed once only
    reversed_now = await _ok(await api.get(f"/api/ledger_transactions/{posted['id']}"))

    seen = await _all_events(api, admin_conn, 8)
    assert [(e["event_name"], e["entity_id"], e["data"]) for e in seen[3:]] == [
        ("ledger_transaction.created", pending["id"], pending),
        ("ledger_transaction.archived", pending["id"], archived),
        ("ledger_transaction.created", posted["id"], posted),
        ("ledger_transaction.created", reversal["id"], reversal),
        ("ledger_transaction.reversed", posted["id"], reversed_now)]
