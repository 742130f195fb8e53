"""Ledger accounts as Modern Treasury's SDK writes and lists them: external and ledgerable ids, every list filter the
SDK's `ledger_accounts.list` sends (ids, names, normal balance, times, balance amounts (not_eq too), balances as of a
date or over a range), a ledger's list by id and update time, and entries of two statuses."""

from __future__ import annotations

from datetime import date, datetime, timezone

import modern_treasury
import pytest


async def _account(client, ledger, name: str, normal_balance: str, **fields):
    return await client.ledger_accounts.create(name=name, ledger_id=ledger.id, normal_balance=normal_balance,
                                               currency="USD", **fields)


async def _cash_and_wallet(client, ledger):
    return await _account(client, ledger, "cash", "debit"), await _account(client, ledger, "wallet", "credit")


async def _not_found_any_more(resource, resource_id: str, **update) -> None:
    """A deleted resource: retrieved, updated or deleted again, 404."""
    for call in (resource.retrieve, lambda i: resource.update(i, **update), resource.delete):
        with pytest.raises(modern_treasury.NotFoundError):
            await call(resource_id)


def _at(day: int, hour: int = 12) -> datetime:
    return datetime(2024, 5, day, hour, tzinfo=timezone.utc)


async def test_an_account_carries_its_external_and_ledgerable_ids(mt):
    client = await mt()
    ledger = await client.ledgers.create(name="ids")
    other = await client.ledgers.create(name="other")
    account = await _account(client, ledger, "alice", "credit", external_id="user-17",
                             ledgerable_type="counterparty", ledgerable_id="cp-17")
    assert (account.external_id, account.ledgerable_type, account.ledgerable_id) == ("user-17", "counterparty",
                                                                                     "cp-17")
    assert account.discarded_at is None
    again = await client.ledger_accounts.retrieve(account.id)
    assert (again.external_id, again.ledgerable_type, again.ledgerable_id) == ("user-17", "counterparty", "cp-17")

    with pytest.raises(modern_treasury.ConflictError) as caught:  # unique in its ledger
        await _account(client, ledger, "bob", "credit", external_id="user-17")
    assert caught.value.body["code"] == "external_id_taken"
    elsewhere = await _account(client, other, "alice", "credit", external_id="user-17")
    with pytest.raises(modern_treasury.BadRequestError):  # one without the other
        await _account(client, ledger, "carol", "credit", ledgerable_type="counterparty")

    found = [a.id async for a in client.ledger_accounts.list(external_id="user-17")]
    assert sorted(found) == sorted([account.id, elsewhere.id])
    assert [a.id async for a in client.ledger_accounts.list(external_id="user-17", ledger_id=other.id)] == [
        elsewhere.id]

    renamed = await client.ledger_accounts.update(account.id, external_id="user-18")
    assert renamed.external_id == "user-18" and renamed.ledgerable_id == "cp-17"
    assert [a.id async for a in client.ledger_accounts.list(external_id="user-18")] == [account.id]
    assert [a.id async for a in client.ledger_accounts.list(external_id="user-17")] == [elsewhere.id]
    # The freed external id is taken again in its ledger.
    await _account(client, ledger, "dan", "debit", external_id="user-17")


async def test_the_account_list_takes_every_filter_the_sdk_sends(mt):
    client = await mt()
    ledger = await client.ledgers.create(name="lists")
    cash = await _account(client, ledger, "cash", "debit")
    alice = await _account(client, ledger, "alice", "credit")
    bob = await _account(client, ledger, "bob", "credit")

    async def ids(**params) -> list[str]:
        return [a.id async for a in client.ledger_accounts.list(ledger_id=ledger.id, **params)]

    assert await ids(id=[bob.id, cash.id]) == [cash.id, bob.id]
    assert await ids(name=["alice", "bob"]) == [alice.id, bob.id]
    assert await ids(normal_balance="credit") == [alice.id, bob.id]
    assert await ids(normal_balance="debit", id=[cash.id, alice.id]) == [cash.id]
    assert await ids(created_at={"gte": alice.created_at}) == [alice.id, bob.id]
    assert await ids(created_at={"lt": alice.created_at}) == [cash.id]

    updated = await client.ledger_accounts.update(cash.id, description="the till")
    assert updated.updated_at > bob.created_at
    assert await ids(updated_at={"gt": bob.created_at}) == [cash.id]
    assert await ids(updated_at={"lte": bob.created_at}) == [alice.id, bob.id]

    # By balance, with every operator the SDK names, not_eq too.
    await client.ledger_transactions.create(status="posted", ledger_entries=[
        {"ledger_account_id": cash.id, "direction": "debit", "amount": 500},
        {"ledger_account_id": alice.id, "direction": "credit", "amount": 500}])
    assert await ids(available_balance_amount={"not_eq": 0}) == [cash.id, alice.id]
    assert await ids(posted_balance_amount={"eq": 0}) == [bob.id]
    assert await ids(pending_balance_amount={"gte": 500, "not_eq": 500}) == []
    assert await ids(posted_balance_amount={"gt": 0, "lt": 501}) == [cash.id, alice.id]
    assert await ids(available_balance_amount={"lte": 0}, normal_balance="credit") == [bob.id]


async def test_balances_as_of_a_date_or_over_a_range_for_an_account_and_a_list(mt):
    client = await mt()
    ledger = await client.ledgers.create(name="balances")
    cash, wallet = await _cash_and_wallet(client, ledger)
    for effective_at, amount in ((_at(1), 100), (_at(2, 0), 20), (_at(2), 3)):  # the second at midnight exactly
        await client.ledger_transactions.create(status="posted", effective_at=effective_at, ledger_entries=[
            {"ledger_account_id": cash.id, "direction": "debit", "amount": amount},
            {"ledger_account_id": wallet.id, "direction": "credit", "amount": amount}])

    async def posted(**balances) -> int:
        return (await client.ledger_accounts.retrieve(wallet.id, balances=balances)).balances.posted_balance.amount

    assert await posted(as_of_date=date(2024, 5, 1)) == 100  # the end of May 1st: not the entry at midnight
    assert await posted(effective_at=_at(2, 0)) == 120  # an effective time counts entries at exactly it
    assert await posted(as_of_date=date(2024, 5, 2)) == 123
    assert await posted(effective_at_lower_bound=_at(2, 0), effective_at_upper_bound=_at(3, 0)) == 23
    since = {"effective_at_lower_bound": _at(2, 0)}
    ranged = (await client.ledger_accounts.retrieve(wallet.id, balances=since)).balances
    assert (ranged.effective_at_lower_bound, ranged.effective_at_upper_bound) == (_at(2, 0), None)
    assert ranged.posted_balance.amount == 23
    current = (await client.ledger_accounts.retrieve(wallet.id)).balances
    assert (current.effective_at_lower_bound, current.effective_at_upper_bound) == (None, None)

    async def listed(**balances) -> dict[str, int]:
        return {a.id: a.balances.posted_balance.amount
                async for a in client.ledger_accounts.list(ledger_id=ledger.id, balances=balances)}

    assert await listed(as_of_date=date(2024, 5, 1)) == {cash.id: 100, wallet.id: 100}
    assert await listed(effective_at=_at(2, 0)) == {cash.id: 120, wallet.id: 120}
    assert await listed(effective_at_lower_bound=_at(1, 13), effective_at_upper_bound=_at(2)) == {
        cash.id: 20, wallet.id: 20}
    assert {(a.balances.effective_at_lower_bound, a.balances.effective_at_upper_bound) async for a in
            client.ledger_accounts.list(ledger_id=ledger.id, balances={"effective_at_upper_bound": _at(2)})} == {
        (None, _at(2))}
    assert await listed() == {cash.id: 123, wallet.id: 123}
    with pytest.raises(modern_treasury.BadRequestError) as caught:
        await listed(as_of_date=date(2024, 5, 1), effective_at=_at(2))
    assert caught.value.body["code"] == "conflicting_parameters"


async def test_ledgers_by_id_and_update_time_and_entries_of_two_statuses(mt):
    client = await mt()
    first = await client.ledgers.create(name="first")
    second = await client.ledgers.create(name="second")
    third = await client.ledgers.create(name="third")
    assert [x.id async for x in client.ledgers.list(id=[third.id, first.id])] == [first.id, third.id]
    updated = await client.ledgers.update(second.id, description="renamed")
    assert [x.id async for x in client.ledgers.list(updated_at={"gt": third.created_at})] == [second.id]
    assert updated.updated_at > third.created_at

    cash, wallet = await _cash_and_wallet(client, first)
    txns = {}
    for status in ("pending", "posted", "pending"):
        txn = await client.ledger_transactions.create(status=status, ledger_entries=[
            {"ledger_account_id": cash.id, "direction": "debit", "amount": 7},
            {"ledger_account_id": wallet.id, "direction": "credit", "amount": 7}])
        txns.setdefault(status, []).append(txn.id)
    archived = await client.ledger_transactions.update(txns["pending"].pop(), status="archived")

    async def statuses(status) -> list[str]:
        return [e.ledger_transaction_id async for e in client.ledger_entries.list(ledger_account_id=cash.id,
                                                                                  status=status)]

    assert await statuses(["posted", "archived"]) == [txns["posted"][0], archived.id]
    assert await statuses(["pending", "archived"]) == [txns["pending"][0], archived.id]
    assert await statuses(["pending"]) == txns["pending"]
    assert len(await statuses(["pending", "posted", "archived"])) == 3


async def test_a_transaction_s_external_and_ledgerable_ids_are_updated_as_a_new_version(mt):
    client = await mt()
    ledger = await client.ledgers.create(name="updates")
    cash, wallet = await _cash_and_wallet(client, ledger)
    legs = [{"ledger_account_id": cash.id, "direction": "debit", "amount": 9},
            {"ledger_account_id": wallet.id, "direction": "credit", "amount": 9}]
    first = await client.ledger_transactions.create(status="pending", external_id="order-1", ledger_entries=legs)
    second = await client.ledger_transactions.create(status="posted", ledger_entries=legs)

    updated = await client.ledger_transactions.update(first.id, external_id="order-2", ledgerable_type="payment_order",
                                                      ledgerable_id="po-2", description="moved")
    assert (updated.external_id, updated.ledgerable_type, updated.ledgerable_id, updated.description) == (
        "order-2", "payment_order", "po-2", "moved")
    assert updated.status == "pending"
    versions = [v async for v in client.ledger_transactions.versions.list(ledger_transaction_id=first.id)]
    assert [(v.version, v.external_id, v.ledgerable_id) for v in versions] == [(1, "order-1", None),
                                                                              (2, "order-2", "po-2")]
    assert [t.id async for t in client.ledger_transactions.list(external_id="order-2")] == [first.id]
    assert [t.id async for t in client.ledger_transactions.list(external_id="order-1")] == []

    with pytest.raises(modern_treasury.ConflictError) as caught:  # unique among the ledger's live transactions
        await client.ledger_transactions.update(second.id, external_id="order-2")
    assert caught.value.body["code"] == "external_id_taken"
    with pytest.raises(modern_treasury.BadRequestError):  # one without the other
        await client.ledger_transactions.update(second.id, ledgerable_id="po-3")
    same = await client.ledger_transactions.update(first.id, external_id="order-2")  # nothing changes: no version
    assert same.updated_at == updated.updated_at
    assert len([v async for v in client.ledger_transactions.versions.list(ledger_transaction_id=first.id)]) == 2


async def test_an_account_without_entries_is_deleted_and_then_not_found(mt):
    client = await mt()
    ledger = await client.ledgers.create(name="deletes")
    cash, wallet = await _cash_and_wallet(client, ledger)
    spare = await _account(client, ledger, "spare", "debit", external_id="spare-1")
    await client.ledger_transactions.create(status="pending", ledger_entries=[
        {"ledger_account_id": cash.id, "direction": "debit", "amount": 5},
        {"ledger_account_id": wallet.id, "direction": "credit", "amount": 5}])

    with pytest.raises(modern_treasury.UnprocessableEntityError) as caught:  # a history is never deleted
        await client.ledger_accounts.delete(cash.id)
    assert caught.value.body["code"] == "ledger_account_has_entries"
    assert (await client.ledger_accounts.retrieve(cash.id)).balances.pending_balance.amount == 5

    deleted = await client.ledger_accounts.delete(spare.id)
    assert deleted.id == spare.id and deleted.discarded_at is not None and deleted.external_id == "spare-1"
    await _not_found_any_more(client.ledger_accounts, spare.id, description="back")
    assert [a.id async for a in client.ledger_accounts.list(ledger_id=ledger.id)] == [cash.id, wallet.id]
    assert [a.id async for a in client.ledger_accounts.list(external_id="spare-1")] == []
    with pytest.raises(modern_treasury.UnprocessableEntityError) as caught:  # the cell still remembers it
        await client.ledger_transactions.create(status="posted", ledger_entries=[
            {"ledger_account_id": spare.id, "direction": "debit", "amount": 5},
            {"ledger_account_id": wallet.id, "direction": "credit", "amount": 5}])
    assert caught.value.body["code"] == "ledger_account_not_found"
    with pytest.raises(modern_treasury.UnprocessableEntityError) as caught:
        await client.ledger_account_balance_monitors.create(ledger_account_id=spare.id, alert_condition={
            "field": "posted_balance_amount", "operator": "less_than", "value": 0})
    assert caught.value.body["code"] == "ledger_account_not_found"
    assert (await client.ledger_accounts.retrieve(wallet.id)).balances.pending_balance.amount == 5
    again = await _account(client, ledger, "spare again", "debit", external_id="spare-1")  # its external_id is free
    assert again.id != spare.id
    assert [a.id async for a in client.ledger_accounts.list(external_id="spare-1")] == [again.id]
    with pytest.raises(modern_treasury.ConflictError) as caught:  # and taken by the new account
        await _account(client, ledger, "spare thrice", "debit", external_id="spare-1")
    assert caught.value.body["code"] == "external_id_taken"


async def test_a_ledger_without_accounts_or_categories_is_deleted_and_then_not_found(mt):
    client = await mt()
    ledger = await client.ledgers.create(name="short-lived")
    account = await _account(client, ledger, "only", "debit")
    category = await client.ledger_account_categories.create(name="all", ledger_id=ledger.id, currency="USD",
                                                             normal_balance="debit")
    for held in (account, category):
        with pytest.raises(modern_treasury.UnprocessableEntityError) as caught:
            await client.ledgers.delete(ledger.id)
        assert caught.value.body["code"] == "ledger_not_empty"
        await (client.ledger_accounts if held is account else client.ledger_account_categories).delete(held.id)
    assert ledger.discarded_at is None
    deleted = await client.ledgers.delete(ledger.id)
    assert deleted.id == ledger.id and deleted.discarded_at is not None
    await _not_found_any_more(client.ledgers, ledger.id, name="again")
    assert ledger.id not in [x.id async for x in client.ledgers.list()]
    with pytest.raises(modern_treasury.UnprocessableEntityError) as caught:
        await _account(client, ledger, "late", "debit")
    assert caught.value.body["code"] == "ledger_not_found"
    with pytest.raises(modern_treasury.UnprocessableEntityError) as caught:
        await client.ledger_account_categories.create(name="late", ledger_id=ledger.id, currency="USD",
                                                      normal_balance="debit")
    assert caught.value.body["code"] == "ledger_not_found"
