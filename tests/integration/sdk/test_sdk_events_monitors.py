"""The official SDK's `events` and `ledger_account_balance_monitors` resources against a real cell."""

from __future__ import annotations

import asyncio
import time

import modern_treasury
import pytest

from tests.integration.sdk.test_sdk_ledgers import _ledger_with_accounts


async def _events(client, count: int, **filters) -> list:
    """The events listed once at least `count` are (the sequencer positions them within ~0.2 s)."""
    deadline = time.monotonic() + 30
    while True:
        listed = [e async for e in client.events.list(per_page=2, **filters)]  # auto-paging, 2 a page
        if len(listed) >= count:
            return listed
        assert time.monotonic() < deadline, f"{len(listed)} of {count} events"
        await asyncio.sleep(0.05)


async def test_events_list_and_retrieve_through_the_sdk(mt):
    client = await mt()
    ledger, cash, wallet = await _ledger_with_accounts(client)
    txn = await client.ledger_transactions.create(status="pending", ledger_entries=[
        {"ledger_account_id": cash.id, "direction": "debit", "amount": 250},
        {"ledger_account_id": wallet.id, "direction": "credit", "amount": 250}])
    await client.ledger_transactions.update(txn.id, status="posted")

    listed = await _events(client, 5)
    assert (listed[0].resource, listed[0].event_name, listed[0].entity_id) == ("ledger", "ledger.created", ledger.id)
    listed = listed[1:]
    assert [(e.event_name, e.entity_id) for e in listed] == [
        ("ledger_account.created", cash.id), ("ledger_account.created", wallet.id),
        ("ledger_transaction.created", txn.id), ("ledger_transaction.posted", txn.id)]
    posted = listed[3]
    assert posted.object == "event" and posted.resource == "ledger_transaction" and posted.live_mode
    assert posted.data["status"] == "posted" and posted.data["id"] == txn.id and posted.data["version"] == 2
    assert posted.event_time == posted.created_at
    again = await client.events.retrieve(posted.id)
    assert again == posted

    only = [e async for e in client.events.list(entity_id=txn.id, event_name="ledger_transaction.created")]
    assert [e.id for e in only] == [listed[2].id]
    by_time = [e async for e in client.events.list(resource="ledger_account", event_time_start=listed[0].event_time,
                                                   event_time_end=listed[1].event_time)]
    assert [e.id for e in by_time] == [listed[0].id, listed[1].id]
    with pytest.raises(modern_treasury.NotFoundError):
        await client.events.retrieve("00000000-0000-0000-0000-000000000000")


async def test_balance_monitors_crud_and_their_events_through_the_sdk(mt):
    client = await mt()
    _, cash, wallet = await _ledger_with_accounts(client)
    monitor = await client.ledger_account_balance_monitors.create(
        ledger_account_id=wallet.id, description="low wallet", metadata={"team": "risk"},
        alert_condition={"field": "available_balance_amount", "operator": "less_than", "value": 100})
    assert monitor.ledger_account_id == wallet.id and monitor.alert_condition.operator == "less_than"
    state = monitor.current_ledger_account_balance_state
    assert state.triggered is True and state.ledger_account_lock_version == 0  # 0 < 100
    assert state.balances.available_balance.amount == 0 and state.balances.available_balance.currency == "USD"

    await client.ledger_transactions.create(status="posted", ledger_entries=[
        {"ledger_account_id": cash.id, "direction": "debit", "amount": 150},
        {"ledger_account_id": wallet.id, "direction": "credit", "amount": 150}])  # 150: resolved
    await client.ledger_transactions.create(status="posted", ledger_entries=[
        {"ledger_account_id": wallet.id, "direction": "debit", "amount": 60},
        {"ledger_account_id": cash.id, "direction": "credit", "amount": 60}])  # 90: triggered

    got = await client.ledger_account_balance_monitors.retrieve(monitor.id)
    assert got.current_ledger_account_balance_state.triggered is True
    assert got.current_ledger_account_balance_state.ledger_account_lock_version == 2
    assert got.current_ledger_account_balance_state.balances.available_balance.amount == 90

    updated = await client.ledger_account_balance_monitors.update(monitor.id, description="very low",
                                                                  metadata={"team": "", "owner": "bo"})
    assert updated.description == "very low" and updated.metadata == {"owner": "bo"}
    assert updated.alert_condition == monitor.alert_condition
    with pytest.raises(modern_treasury.BadRequestError):
        await client.ledger_account_balance_monitors.update(monitor.id, extra_body={"alert_condition": {
            "field": "posted_balance_amount", "operator": "equals", "value": 1}})

    other = await client.ledger_account_balance_monitors.create(
        ledger_account_id=cash.id, alert_condition={"field": "ledger_account_lock_version",
                                                    "operator": "greater_than", "value": 10})
    assert [m.id async for m in client.ledger_account_balance_monitors.list()] == [monitor.id, other.id]
    assert [m.id async for m in client.ledger_account_balance_monitors.list(ledger_account_id=cash.id)] == [other.id]
    assert [m.id async for m in client.ledger_account_balance_monitors.list(metadata={"owner": "bo"})] == [monitor.id]
    assert [m.id async for m in client.ledger_account_balance_monitors.list(id=[other.id])] == [other.id]

    deleted = await client.ledger_account_balance_monitors.delete(other.id)
    assert deleted.id == other.id and deleted.discarded_at is not None
    with pytest.raises(modern_treasury.NotFoundError):
        await client.ledger_account_balance_monitors.retrieve(other.id)
    with pytest.raises(modern_treasury.UnprocessableEntityError):
        await client.ledger_account_balance_monitors.create(
            ledger_account_id="00000000-0000-0000-0000-000000000000",
            alert_condition={"field": "posted_balance_amount", "operator": "equals", "value": 0})

    names = [(e.event_name, e.data["current_ledger_account_balance_state"]["triggered"])
             for e in await _events(client, 4, entity_id=monitor.id)]
    assert names == [("balance_monitor.created", True), ("balance_monitor.resolved", False),
                     ("balance_monitor.triggered", True), ("balance_monitor.updated", True)]
    gone = await _events(client, 2, entity_id=other.id)
    assert [e.event_name for e in gone] == ["balance_monitor.created", "balance_monitor.deleted"]
    assert gone[1].resource == "ledger_account_balance_monitor" and gone[1].data["id"] == other.id
    assert gone[1].data["discarded_at"] is not None


async def test_category_statement_and_settlement_events_through_the_sdk(mt):
    client = await mt()
    ledger, cash, wallet = await _ledger_with_accounts(client)
    payouts = await client.ledger_accounts.create(name="payouts", ledger_id=ledger.id, normal_balance="debit",
                                                  currency="USD")
    category = await client.ledger_account_categories.create(name="assets", ledger_id=ledger.id, currency="USD",
                                                             normal_balance="debit")
    await client.ledger_account_categories.update(category.id, description="everything we hold")
    await client.ledger_account_categories.delete(category.id)
    statement = await client.ledger_account_statements.create(
        ledger_account_id=wallet.id, effective_at_lower_bound="2024-01-01T00:00:00Z",
        effective_at_upper_bound="2024-02-01T00:00:00Z")
    await client.ledger_transactions.create(status="posted", effective_at="2024-01-10T12:00:00Z", ledger_entries=[
        {"ledger_account_id": cash.id, "direction": "debit", "amount": 75},
        {"ledger_account_id": wallet.id, "direction": "credit", "amount": 75}])
    settlement = await client.ledger_account_settlements.create(
        settled_ledger_account_id=wallet.id, contra_ledger_account_id=payouts.id,
        effective_at_upper_bound="2024-02-01T00:00:00Z", status="posted")
    assert settlement.status == "posted" and settlement.amount == 75

    categories = await _events(client, 3, resource="ledger_account_category")
    assert [(e.event_name, e.entity_id) for e in categories] == [
        ("ledger_account_category.created", category.id), ("ledger_account_category.updated", category.id),
        ("ledger_account_category.deleted", category.id)]
    assert categories[1].data["description"] == "everything we hold" and categories[2].data["discarded_at"]
    statements = await _events(client, 1, resource="ledger_account_statement")
    assert [(e.event_name, e.data["id"]) for e in statements] == [("ledger_account_statement.created", statement.id)]
    settlements = await _events(client, 2, entity_id=settlement.id)
    assert [e.event_name for e in settlements] == ["ledger_account_settlement.created",
                                                   "ledger_account_settlement.finish_processing"]
    assert settlements[1].data["status"] == "posted" and settlements[1].data["ledger_transaction_id"]
