"""Ledger account categories through Modern Treasury's official Python SDK, unchanged: every category call, the
account and list parameters that name categories, its error classes and its auto-paging list."""

from __future__ import annotations

from datetime import date, datetime, timezone

import modern_treasury
import pytest


async def _books(client):
    ledger = await client.ledgers.create(name="sdk categories")
    cash = await client.ledger_accounts.create(name="cash", ledger_id=ledger.id, normal_balance="debit",
                                               currency="USD")
    return ledger, cash


async def _pay(client, cash, to, amount: int, **extra):
    return await client.ledger_transactions.create(status="posted", ledger_entries=[
        {"ledger_account_id": cash.id, "direction": "debit", "amount": amount},
        {"ledger_account_id": to.id, "direction": "credit", "amount": amount}], **extra)


async def test_every_category_call_of_the_sdk(mt):
    client = await mt()
    ledger, cash = await _books(client)
    wallets = await client.ledger_account_categories.create(
        name="wallets", ledger_id=ledger.id, normal_balance="credit", currency="USD", description="all wallets",
        external_id="wallets-1", metadata={"kind": "wallets"})
    assert (wallets.object, wallets.name, wallets.ledger_id, wallets.normal_balance, wallets.discarded_at) == \
        ("ledger_account_category", "wallets", ledger.id, "credit", None)
    assert wallets.balances.posted_balance.amount == 0 and wallets.balances.posted_balance.currency == "USD"
    retail = await client.ledger_account_categories.create(
        name="retail", ledger_id=ledger.id, normal_balance="credit", currency="USD", currency_exponent=2,
        ledger_account_category_ids=[wallets.id])
    alice = await client.ledger_accounts.create(name="alice", ledger_id=ledger.id, normal_balance="credit",
                                                currency="USD", ledger_account_category_ids=[retail.id])
    bob = await client.ledger_accounts.create(name="bob", ledger_id=ledger.id, normal_balance="credit",
                                              currency="USD")
    await client.ledger_account_categories.add_ledger_account(bob.id, id=wallets.id)
    t1 = await _pay(client, cash, alice, 700, effective_at=datetime(2024, 3, 1, tzinfo=timezone.utc))
    await _pay(client, cash, bob, 300, effective_at=datetime(2024, 3, 2, tzinfo=timezone.utc))

    top = await client.ledger_account_categories.retrieve(wallets.id)
    assert (top.balances.posted_balance.amount, top.balances.pending_balance.credits) == (1000, 1000)
    as_of = await client.ledger_account_categories.retrieve(
        wallets.id, balances={"effective_at": datetime(2024, 3, 1, 12, tzinfo=timezone.utc)})
    assert as_of.balances.posted_balance.amount == 700
    by_date = await client.ledger_account_categories.retrieve(wallets.id, balances={"as_of_date": date(2024, 3, 2)})
    assert by_date.balances.posted_balance.amount == 1000

    # The lists that take a category.
    accounts = [a.id async for a in client.ledger_accounts.list(ledger_account_category_id=wallets.id)]
    assert sorted(accounts) == sorted([alice.id, bob.id])
    txns = [t.id async for t in client.ledger_transactions.list(ledger_account_category_id=retail.id)]
    assert txns == [t1.id]
    entries = [e.ledger_account_id async for e in client.ledger_entries.list(ledger_account_category_id=wallets.id)]
    assert sorted(entries) == sorted([alice.id, bob.id])
    nested = [c.id async for c in client.ledger_account_categories.list(parent_ledger_account_category_id=wallets.id)]
    assert nested == [retail.id]
    holding = [c.id async for c in client.ledger_account_categories.list(ledger_account_id=alice.id)]
    assert sorted(holding) == sorted([wallets.id, retail.id])
    named = [c.id async for c in client.ledger_account_categories.list(
        name="wallets", currency="USD", ledger_id=ledger.id, external_id="wallets-1", metadata={"kind": "wallets"},
        id=[wallets.id, retail.id], balances={"effective_at": datetime(2024, 3, 1, 12, tzinfo=timezone.utc)})]
    assert named == [wallets.id]

    # Taking things out again.
    await client.ledger_account_categories.remove_nested_category(retail.id, id=wallets.id)
    assert (await client.ledger_account_categories.retrieve(wallets.id)).balances.posted_balance.amount == 300
    await client.ledger_account_categories.add_nested_category(retail.id, id=wallets.id)
    await client.ledger_account_categories.remove_ledger_account(bob.id, id=wallets.id)
    assert (await client.ledger_account_categories.retrieve(wallets.id)).balances.posted_balance.amount == 700

    updated = await client.ledger_account_categories.update(wallets.id, name="all wallets", description=None,
                                                            metadata={"kind": "", "tier": "1"})
    assert (updated.name, updated.description, updated.metadata) == ("all wallets", None, {"tier": "1"})
    deleted = await client.ledger_account_categories.delete(retail.id)
    assert deleted.id == retail.id and deleted.discarded_at is not None
    assert (await client.ledger_account_categories.retrieve(wallets.id)).balances.posted_balance.amount == 0
    with pytest.raises(modern_treasury.NotFoundError):
        await client.ledger_account_categories.retrieve(retail.id)


async def test_the_sdk_sees_a_cycle_and_a_currency_mismatch_as_unprocessable(mt):
    client = await mt()
    ledger, cash = await _books(client)
    outer = await client.ledger_account_categories.create(name="outer", ledger_id=ledger.id,
                                                          normal_balance="debit", currency="USD")
    inner = await client.ledger_account_categories.create(name="inner", ledger_id=ledger.id,
                                                          normal_balance="debit", currency="USD",
                                                          ledger_account_category_ids=[outer.id])
    with pytest.raises(modern_treasury.UnprocessableEntityError) as caught:
        await client.ledger_account_categories.add_nested_category(outer.id, id=inner.id)
    assert caught.value.body["code"] == "category_cycle"
    euros = await client.ledger_accounts.create(name="eur", ledger_id=ledger.id, normal_balance="debit",
                                                currency="EUR")
    with pytest.raises(modern_treasury.UnprocessableEntityError) as caught:
        await client.ledger_account_categories.add_ledger_account(euros.id, id=outer.id)
    assert caught.value.body["code"] == "category_currency_mismatch"
    await client.ledger_account_categories.add_ledger_account(cash.id, id=inner.id)
    assert [c.id async for c in client.ledger_account_categories.list(ledger_account_id=cash.id)] == \
        [outer.id, inner.id]


async def test_another_tenants_category_is_not_found_through_the_sdk(mt):
    alice, mallory = await mt(), await mt()
    ledger, cash = await _books(alice)
    category = await alice.ledger_account_categories.create(name="c", ledger_id=ledger.id, normal_balance="debit",
                                                            currency="USD")
    for call in (lambda: mallory.ledger_account_categories.retrieve(category.id),
                 lambda: mallory.ledger_account_categories.update(category.id, name="x"),
                 lambda: mallory.ledger_account_categories.delete(category.id),
                 lambda: mallory.ledger_account_categories.add_ledger_account(cash.id, id=category.id)):
        with pytest.raises(modern_treasury.NotFoundError):
            await call()
    assert [c.id async for c in mallory.ledger_account_categories.list()] == []


async def test_the_sdk_pages_through_categories(mt):
    client = await mt()
    ledger, _ = await _books(client)
    made = [(await client.ledger_account_categories.create(name=f"c{i}", ledger_id=ledger.id,
                                                            normal_balance="credit", currency="USD")).id
            for i in range(5)]
    first = await client.ledger_account_categories.list(per_page=2)
    assert len(first.items) == 2 and first.has_next_page()
    assert [c.id async for c in client.ledger_account_categories.list(per_page=2)] == made
