"""Ledger account statements and settlements through Modern Treasury's official SDK, through the router, unchanged:
the calls a customer's code makes (ledger_account_statements, ledger_account_settlements and its account_entries),
the list filters it sends, its error classes and its auto-paging lists."""

from __future__ import annotations

from datetime import datetime, timezone

import modern_treasury
import pytest
from modern_treasury import AsyncModernTreasury


def _at(month: int, day: int) -> datetime:
    return datetime(2024, month, day, 12, tzinfo=timezone.utc)


async def _books(client: AsyncModernTreasury):
    ledger = await client.ledgers.create(name="books")
    wallet = await client.ledger_accounts.create(name="wallet", ledger_id=ledger.id, normal_balance="credit",
                                                 currency="USD")
    cash = await client.ledger_accounts.create(name="cash", ledger_id=ledger.id, normal_balance="debit",
                                               currency="USD")
    payouts = await client.ledger_accounts.create(name="payouts", ledger_id=ledger.id, normal_balance="debit",
                                                  currency="USD")
    return ledger, wallet, cash, payouts


async def _pay(client: AsyncModernTreasury, cash, wallet, amount: int, at: datetime, status: str = "posted"):
    return await client.ledger_transactions.create(status=status, effective_at=at, ledger_entries=[
        {"ledger_account_id": cash.id, "direction": "debit", "amount": amount},
        {"ledger_account_id": wallet.id, "direction": "credit", "amount": amount}])


def _leg(txn, account) -> str:
    return next(e.id for e in txn.ledger_entries if e.ledger_account_id == account.id)


async def test_a_statement_through_the_sdk(mt):
    client = await mt()
    ledger, wallet, cash, _ = await _books(client)
    await _pay(client, cash, wallet, 100, _at(1, 5))
    inside = [await _pay(client, cash, wallet, 50, _at(1, 15), status="pending"),
              await _pay(client, cash, wallet, 20, _at(1, 20))]
    await _pay(client, cash, wallet, 30, _at(2, 1))

    statement = await client.ledger_account_statements.create(
        ledger_account_id=wallet.id, effective_at_lower_bound=_at(1, 10), effective_at_upper_bound=_at(2, 1),
        description="January", metadata={"period": "2024-01"}, idempotency_key="january")
    assert statement.ledger_id == ledger.id and statement.ledger_account_normal_balance == "credit"
    assert statement.ledger_account_lock_version == 4
    assert statement.starting_balance.posted_balance.amount == 100
    assert (statement.ending_balance.pending_balance.amount, statement.ending_balance.posted_balance.amount) == (170, 120)
    assert statement.ending_balance.available_balance.currency == "USD"
    retried = await client.ledger_account_statements.create(
        ledger_account_id=wallet.id, effective_at_lower_bound=_at(1, 10), effective_at_upper_bound=_at(2, 1),
        description="January", metadata={"period": "2024-01"}, idempotency_key="january")
    assert retried.id == statement.id

    await _pay(client, cash, wallet, 7, _at(1, 25))  # backdated into the period, after the statement
    again = await client.ledger_account_statements.retrieve(statement.id)
    assert again.ending_balance.pending_balance.amount == 170 and again.effective_at_upper_bound == _at(2, 1)
    listed = [e.id async for e in client.ledger_entries.list(ledger_account_statement_id=statement.id, per_page=1)]
    assert sorted(listed) == sorted(_leg(t, wallet) for t in inside)
    versions = [(v.ledger_transaction_id, v.version) async for v in client.ledger_transactions.versions.list(
        ledger_account_statement_id=statement.id)]
    assert sorted(versions) == sorted((t.id, 1) for t in inside)

    with pytest.raises(modern_treasury.UnprocessableEntityError):
        await client.ledger_account_statements.create(
            ledger_account_id=ledger.id, effective_at_lower_bound=_at(1, 1), effective_at_upper_bound=_at(2, 1))
    with pytest.raises(modern_treasury.BadRequestError):
        await client.ledger_account_statements.create(
            ledger_account_id=wallet.id, effective_at_lower_bound=_at(2, 1), effective_at_upper_bound=_at(1, 1))


async def test_a_settlement_through_the_sdk(mt):
    client = await mt()
    _, wallet, cash, payouts = await _books(client)
    settled = [await _pay(client, cash, wallet, amount, _at(1, day)) for day, amount in ((2, 10), (3, 20), (4, 30))]
    settlement = await client.ledger_account_settlements.create(
        settled_ledger_account_id=wallet.id, contra_ledger_account_id=payouts.id,
        effective_at_upper_bound=_at(2, 1), description="January payout", metadata={"run": "1"})
    assert (settlement.status, settlement.amount, settlement.settlement_entry_direction) == ("pending", 60, "debit")
    assert settlement.currency == "USD" and settlement.ledger_transaction_id is not None
    txn = await client.ledger_transactions.retrieve(settlement.ledger_transaction_id)
    assert txn.status == "pending" and {e.ledger_account_id for e in txn.ledger_entries} == {wallet.id, payouts.id}
    assert sorted([e.id async for e in client.ledger_entries.list(ledger_account_settlement_id=settlement.id,
                                                                  per_page=2)]) == sorted(_leg(t, wallet) for t in settled)
    assert sorted([t.id async for t in client.ledger_transactions.list(
        ledger_account_settlement_id=settlement.id)]) == sorted(t.id for t in settled)
    # A settlement's former name in Modern Treasury's API was a ledger account payout: the SDK's
    # ledger_account_payout_id is the same filter; given both, they must name one settlement.
    assert sorted([e.id async for e in client.ledger_entries.list(ledger_account_payout_id=settlement.id)]) == sorted(
        _leg(t, wallet) for t in settled)
    assert sorted([e.id async for e in client.ledger_entries.list(
        ledger_account_payout_id=settlement.id, ledger_account_settlement_id=settlement.id)]) == sorted(
        _leg(t, wallet) for t in settled)
    with pytest.raises(modern_treasury.BadRequestError) as refused:
        await client.ledger_entries.list(ledger_account_payout_id=settlement.id,
                                         ledger_account_settlement_id=settlement.ledger_transaction_id)
    assert refused.value.body["code"] == "invalid_parameter"

    posted = await client.ledger_account_settlements.update(settlement.id, status="posted", metadata={"paid": "yes"})
    assert posted.status == "posted" and posted.metadata == {"run": "1", "paid": "yes"}
    assert (await client.ledger_accounts.retrieve(wallet.id)).balances.posted_balance.amount == 0
    with pytest.raises(modern_treasury.UnprocessableEntityError) as caught:
        await client.ledger_account_settlements.update(settlement.id, status="archived")
    assert caught.value.body["code"] == "invalid_status_transition"
    retrieved = await client.ledger_account_settlements.retrieve(settlement.id)
    assert retrieved.status == "posted" and retrieved.updated_at == posted.updated_at


async def test_a_drafting_settlement_through_the_sdks_account_entries(mt):
    client = await mt()
    _, wallet, cash, payouts = await _books(client)
    a, b = await _pay(client, cash, wallet, 10, _at(1, 2)), await _pay(client, cash, wallet, 5, _at(1, 3))
    draft = await client.ledger_account_settlements.create(
        settled_ledger_account_id=wallet.id, contra_ledger_account_id=payouts.id, status="drafting")
    assert draft.status == "drafting" and draft.amount is None
    assert await client.ledger_account_settlements.account_entries.update(
        draft.id, ledger_entry_ids=[_leg(a, wallet), _leg(b, wallet)]) is None
    await client.ledger_account_settlements.account_entries.delete(draft.id, ledger_entry_ids=[_leg(b, wallet)])
    assert (await client.ledger_account_settlements.retrieve(draft.id)).amount == 10

    other = await client.ledger_account_settlements.create(
        settled_ledger_account_id=wallet.id, contra_ledger_account_id=payouts.id, status="drafting")
    with pytest.raises(modern_treasury.UnprocessableEntityError) as caught:
        await client.ledger_account_settlements.account_entries.update(other.id, ledger_entry_ids=[_leg(a, wallet)])
    assert caught.value.body["code"] == "ledger_entry_already_settled"

    done = await client.ledger_account_settlements.update(draft.id, status="posted")
    assert (done.status, done.amount) == ("posted", 10)
    drafts = [s.id async for s in client.ledger_account_settlements.list(settled_ledger_account_id=wallet.id,
                                                                         per_page=1)]
    assert drafts == [draft.id, other.id]
    assert [s.id async for s in client.ledger_account_settlements.list(
        ledger_transaction_id=done.ledger_transaction_id)] == [draft.id]
    assert [s.id async for s in client.ledger_account_settlements.list(metadata={"none": "x"})] == []


async def test_another_tenants_statements_and_settlements_are_not_found(mt):
    alice, mallory = await mt(), await mt()
    _, wallet, cash, payouts = await _books(alice)
    await _pay(alice, cash, wallet, 10, _at(1, 2))
    statement = await alice.ledger_account_statements.create(
        ledger_account_id=wallet.id, effective_at_lower_bound=_at(1, 1), effective_at_upper_bound=_at(2, 1))
    settlement = await alice.ledger_account_settlements.create(settled_ledger_account_id=wallet.id,
                                                               contra_ledger_account_id=payouts.id)
    for call in (mallory.ledger_account_statements.retrieve(statement.id),
                 mallory.ledger_account_settlements.retrieve(settlement.id),
                 mallory.ledger_account_settlements.update(settlement.id, status="posted"),
                 mallory.ledger_account_settlements.account_entries.update(settlement.id,
                                                                           ledger_entry_ids=[statement.id])):
        with pytest.raises(modern_treasury.NotFoundError):
            await call
    assert [s async for s in mallory.ledger_account_settlements.list()] == []
    assert (await alice.ledger_account_settlements.retrieve(settlement.id)).status == "pending"


async def test_the_transaction_list_amount_filter_the_sdk_sends(mt):
    """A transaction's amount is what it moves: the sum of its debit entries (equal to its credits')."""
    client = await mt()
    ledger, wallet, cash, payouts = await _books(client)
    small, large = await _pay(client, cash, wallet, 5, _at(1, 2)), await _pay(client, cash, wallet, 50, _at(1, 3))
    split = await client.ledger_transactions.create(status="posted", ledger_entries=[
        {"ledger_account_id": cash.id, "direction": "debit", "amount": 30},
        {"ledger_account_id": payouts.id, "direction": "debit", "amount": 20},
        {"ledger_account_id": wallet.id, "direction": "credit", "amount": 50}])

    async def ids(**amount) -> list[str]:
        return [t.id async for t in client.ledger_transactions.list(ledger_id=ledger.id, amount=amount, per_page=1)]

    assert await ids(gte=50) == [large.id, split.id]
    assert await ids(eq=50) == [large.id, split.id]
    assert await ids(lt=50) == [small.id]
    assert await ids(gt=5, lte=50) == [large.id, split.id]
    with pytest.raises(modern_treasury.BadRequestError):
        await client.ledger_transactions.list(amount={"gte": -1})
