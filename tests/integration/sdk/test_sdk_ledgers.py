"""Modern Treasury's official Python SDK (`modern-treasury`, pinned in requirements.lock) drives a real cell through
the router, unchanged (the `mt` fixture, conftest.py): the calls a customer's code makes, its error classes and its
auto-paging lists."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone

import modern_treasury
import pytest
from modern_treasury import AsyncModernTreasury


async def _ledger_with_accounts(client: AsyncModernTreasury, currency: str = "USD"):
    ledger = await client.ledgers.create(name="sdk", description="through the SDK", metadata={"env": "test"})
    cash = await client.ledger_accounts.create(name="cash", ledger_id=ledger.id, normal_balance="debit",
                                               currency=currency)
    wallet = await client.ledger_accounts.create(name="wallet", ledger_id=ledger.id, normal_balance="credit",
                                                 currency=currency, metadata={"owner": "alice"})
    return ledger, cash, wallet


async def test_a_transaction_is_created_without_a_ledger_id_as_the_sdk_sends_it(mt):
    client = await mt()
    ledger, cash, wallet = await _ledger_with_accounts(client)
    txn = await client.ledger_transactions.create(
        description="top-up", status="posted", effective_date=date(2024, 5, 1), external_id="top-up-1",
        ledgerable_type="payment_order", ledgerable_id=str(uuid.uuid4()), metadata={"order": "42"},
        ledger_entries=[
            {"ledger_account_id": cash.id, "direction": "debit", "amount": 1000, "metadata": {"leg": "in"}},
            {"ledger_account_id": wallet.id, "direction": "credit", "amount_string": "1000",
             "show_resulting_ledger_account_balances": True}])
    assert txn.ledger_id == ledger.id and txn.status == "posted" and txn.metadata == {"order": "42"}
    assert txn.effective_date == date(2024, 5, 1)
    assert txn.effective_at == datetime(2024, 5, 1, tzinfo=timezone.utc)
    assert txn.ledgerable_type == "payment_order" and txn.ledgerable_id
    legs = {e.ledger_account_id: e for e in txn.ledger_entries}
    assert legs[cash.id].metadata == {"leg": "in"} and legs[wallet.id].metadata == {}
    assert legs[wallet.id].amount == 1000 and legs[wallet.id].amount_string == "1000"
    assert legs[wallet.id].resulting_ledger_account_balances.posted_balance.amount == 1000

    again = await client.ledger_transactions.retrieve(txn.id)
    assert again.ledgerable_id == txn.ledgerable_id and again.effective_date == date(2024, 5, 1)
    assert {e.id: e.metadata for e in again.ledger_entries} == {e.id: e.metadata for e in txn.ledger_entries}
    entry = await client.ledger_entries.retrieve(legs[cash.id].id)
    assert entry.metadata == {"leg": "in"} and entry.ledger_transaction_id == txn.id
    account = await client.ledger_accounts.retrieve(wallet.id)
    assert account.balances.posted_balance.amount == 1000


async def test_entries_in_two_ledgers_are_unprocessable(mt):
    client = await mt()
    _, cash, _ = await _ledger_with_accounts(client)
    _, _, other_wallet = await _ledger_with_accounts(client)
    with pytest.raises(modern_treasury.UnprocessableEntityError) as caught:
        await client.ledger_transactions.create(ledger_entries=[
            {"ledger_account_id": cash.id, "direction": "debit", "amount": 5},
            {"ledger_account_id": other_wallet.id, "direction": "credit", "amount": 5}])
    assert caught.value.status_code == 422 and caught.value.body["code"] == "entries_in_multiple_ledgers"


async def test_a_violated_balance_lock_is_an_unprocessable_entity_error(mt):
    client = await mt()
    _, cash, wallet = await _ledger_with_accounts(client)
    with pytest.raises(modern_treasury.UnprocessableEntityError) as caught:
        await client.ledger_transactions.create(status="posted", ledger_entries=[
            {"ledger_account_id": wallet.id, "direction": "debit", "amount": 5,
             "available_balance_amount": {"gte": 0}},
            {"ledger_account_id": cash.id, "direction": "credit", "amount": 5}])
    assert caught.value.body["code"] == "balance_lock_failed"


async def test_archive_on_balance_lock_failure_creates_it_archived(mt):
    """The SDK (1.80) has no parameter for it: a customer sends it with extra_body."""
    client = await mt()
    _, cash, wallet = await _ledger_with_accounts(client)
    txn = await client.ledger_transactions.create(status="posted", ledger_entries=[
        {"ledger_account_id": wallet.id, "direction": "debit", "amount": 5, "available_balance_amount": {"gte": 0}},
        {"ledger_account_id": cash.id, "direction": "credit", "amount": 5}],
        extra_body={"archive_on_balance_lock_failure": True})
    assert (txn.status, txn.archived_reason) == ("archived", "balance_lock_failure")
    assert (await client.ledger_transactions.retrieve(txn.id)).archived_reason == "balance_lock_failure"
    for account in (cash, wallet):
        balances = (await client.ledger_accounts.retrieve(account.id)).balances
        assert balances.posted_balance.amount == balances.pending_balance.amount == 0
    archived = [t.id async for t in client.ledger_transactions.list(status="archived")]
    assert archived == [txn.id]


async def test_a_transaction_and_a_reversal_created_archived_count_nowhere(mt):
    """`status="archived"`, typed by the SDK on create and create_reversal: written archived (archived_reason None),
    no balance effect; an archived reversal reverses nothing (the original stays reversible)."""
    client = await mt()
    _, cash, wallet = await _ledger_with_accounts(client)
    original = await client.ledger_transactions.create(status="posted", ledger_entries=[
        {"ledger_account_id": cash.id, "direction": "debit", "amount": 40},
        {"ledger_account_id": wallet.id, "direction": "credit", "amount": 40}])
    declined = await client.ledger_transactions.create(status="archived", description="declined", ledger_entries=[
        {"ledger_account_id": wallet.id, "direction": "debit", "amount": 500, "available_balance_amount": {"gte": 0}},
        {"ledger_account_id": cash.id, "direction": "credit", "amount": 500}])
    assert (declined.status, declined.archived_reason, declined.posted_at) == ("archived", None, None)
    assert {e.status for e in declined.ledger_entries} == {"archived"}
    again = await client.ledger_transactions.retrieve(declined.id)
    assert (again.status, again.version) == ("archived", 1) and again.archived_at is not None
    with pytest.raises(modern_treasury.UnprocessableEntityError) as caught:
        await client.ledger_transactions.update(declined.id, status="posted")
    assert caught.value.body["code"] == "invalid_status_transition"

    record = await client.ledger_transactions.create_reversal(original.id, status="archived")
    assert (record.status, record.reverses_ledger_transaction_id) == ("archived", original.id)
    assert (await client.ledger_transactions.retrieve(original.id)).reversed_by_ledger_transaction_id is None
    for account in (cash, wallet):
        balances = (await client.ledger_accounts.retrieve(account.id)).balances
        assert balances.posted_balance.amount == balances.pending_balance.amount == 40
    versions = [v async for v in client.ledger_transactions.versions.list(ledger_transaction_id=declined.id)]
    assert [(v.version, v.status) for v in versions] == [(1, "archived")]
    reversal = await client.ledger_transactions.create_reversal(original.id)
    assert reversal.status == "posted"
    assert (await client.ledger_transactions.retrieve(original.id)).reversed_by_ledger_transaction_id == reversal.id


async def test_an_entrys_metadata_is_updated_through_the_sdk(mt):
    client = await mt()
    _, cash, wallet = await _ledger_with_accounts(client)
    txn = await client.ledger_transactions.create(status="posted", ledger_entries=[
        {"ledger_account_id": cash.id, "direction": "debit", "amount": 3, "metadata": {"leg": "in"}},
        {"ledger_account_id": wallet.id, "direction": "credit", "amount": 3}])
    entry = next(e for e in txn.ledger_entries if e.ledger_account_id == cash.id)
    updated = await client.ledger_entries.update(entry.id, metadata={"reconciled": "yes"})
    assert updated.metadata == {"leg": "in", "reconciled": "yes"} and updated.amount == 3
    assert (await client.ledger_entries.retrieve(entry.id)).metadata == updated.metadata


async def test_another_tenants_objects_are_not_found(mt):
    alice, mallory = await mt(), await mt()
    ledger, cash, wallet = await _ledger_with_accounts(alice)
    txn = await alice.ledger_transactions.create(ledger_entries=[
        {"ledger_account_id": cash.id, "direction": "debit", "amount": 7},
        {"ledger_account_id": wallet.id, "direction": "credit", "amount": 7}])
    for call in (mallory.ledgers.retrieve(ledger.id), mallory.ledger_accounts.retrieve(cash.id),
                 mallory.ledger_transactions.retrieve(txn.id),
                 mallory.ledger_entries.retrieve(txn.ledger_entries[0].id)):
        with pytest.raises(modern_treasury.NotFoundError):
            await call
    with pytest.raises(modern_treasury.UnprocessableEntityError):  # her accounts do not exist for him
        await mallory.ledger_transactions.create(ledger_entries=[
            {"ledger_account_id": cash.id, "direction": "debit", "amount": 7},
            {"ledger_account_id": wallet.id, "direction": "credit", "amount": 7}])


async def test_updates_go_through_the_sdk(mt):
    client = await mt()
    ledger, cash, wallet = await _ledger_with_accounts(client)
    assert (await client.ledgers.update(ledger.id, name="renamed")).name == "renamed"
    updated = await client.ledger_accounts.update(wallet.id, description="the wallet", metadata={"tier": "gold"})
    assert updated.description == "the wallet" and updated.metadata == {"owner": "alice", "tier": "gold"}
    txn = await client.ledger_transactions.create(ledger_entries=[
        {"ledger_account_id": cash.id, "direction": "debit", "amount": 3},
        {"ledger_account_id": wallet.id, "direction": "credit", "amount": 3}])
    assert txn.status == "pending"
    posted = await client.ledger_transactions.update(txn.id, status="posted", metadata={"k": "v"})
    assert posted.status == "posted" and posted.posted_at is not None and posted.metadata == {"k": "v"}
    assert (await client.ledger_accounts.retrieve(wallet.id)).balances.posted_balance.amount == 3


async def test_lists_auto_page_through_x_after_cursor(mt):
    client = await mt()
    ledger, cash, wallet = await _ledger_with_accounts(client)
    created = []
    for i in range(5):
        txn = await client.ledger_transactions.create(status="posted", metadata={"batch": "b1"}, ledger_entries=[
            {"ledger_account_id": cash.id, "direction": "debit", "amount": i + 1},
            {"ledger_account_id": wallet.id, "direction": "credit", "amount": i + 1}])
        created.append(txn.id)
    first = await client.ledger_transactions.list(ledger_id=ledger.id, per_page=2)
    assert len(first.items) == 2 and first.has_next_page()
    seen = [t.id async for t in client.ledger_transactions.list(ledger_id=ledger.id, per_page=2)]
    assert seen == created
    filtered = [t.id async for t in client.ledger_transactions.list(metadata={"batch": "b1"}, status="posted",
                                                                    per_page=3)]
    assert filtered == created
    entries = [e.amount async for e in client.ledger_entries.list(ledger_account_id=wallet.id, per_page=2)]
    assert entries == [1, 2, 3, 4, 5]
    newest_first = [e.amount async for e in client.ledger_entries.list(
        ledger_account_id=wallet.id, per_page=2, order_by={"created_at": "desc"})]
    assert newest_first == [5, 4, 3, 2, 1]
    accounts = [a.id async for a in client.ledger_accounts.list(ledger_id=ledger.id, per_page=1)]
    assert accounts == [cash.id, wallet.id]
    ledgers = [x.id async for x in client.ledgers.list(per_page=1)]
    assert ledgers == [ledger.id]


async def test_transaction_list_filters_the_sdk_sends(mt):
    client = await mt()
    ledger, cash, wallet = await _ledger_with_accounts(client)

    async def txn(day: int, **extra):
        return await client.ledger_transactions.create(
            status="posted", effective_at=datetime(2024, 3, day, 12, tzinfo=timezone.utc), **extra,
            ledger_entries=[{"ledger_account_id": cash.id, "direction": "debit", "amount": day},
                            {"ledger_account_id": wallet.id, "direction": "credit", "amount": day}])

    late, early, middle = await txn(20), await txn(1), await txn(10, ledgerable_type="payment_order",
                                                                 ledgerable_id="po-1")
    reversal = await client.ledger_transactions.create_reversal(early.id, description="undo")
    assert reversal.reverses_ledger_transaction_id == early.id
    assert reversal.effective_at == early.effective_at  # the SDK's documented default: the original's

    async def ids(**params):
        return [t.id async for t in client.ledger_transactions.list(ledger_id=ledger.id, per_page=1, **params)]

    by_effective = [i for i in await ids(order_by={"effective_at": "asc"}) if i != reversal.id]  # (early's time)
    assert by_effective == [early.id, middle.id, late.id]
    assert [i for i in await ids(order_by={"effective_at": "desc"}) if i != reversal.id] == [late.id, middle.id,
                                                                                           early.id]
    assert await ids(ledgerable_type="payment_order", ledgerable_id="po-1") == [middle.id]
    assert await ids(reverses_ledger_transaction_id=early.id) == [reversal.id]
    assert await ids(effective_date={"eq": "2024-03-10"}) == [middle.id]
    assert await ids(effective_date={"gte": "2024-03-10"}, order_by={"created_at": "desc"}) == [middle.id, late.id]
    # The SDK types this filter's values as datetimes too (it sends str(datetime)): the date as written is the day.
    assert await ids(effective_date={"eq": datetime(2024, 3, 10, tzinfo=timezone.utc)}) == [middle.id]
    assert await ids(effective_date={"lt": datetime(2024, 3, 10, 23, 30, tzinfo=timezone(timedelta(hours=-5)))}) == [
        early.id, reversal.id]
    assert await ids(effective_at={"lt": "2024-03-10T00:00:00Z"}) == [early.id, reversal.id]
    assert set(await ids(posted_at={"gte": early.posted_at.isoformat()})) == {early.id, middle.id, reversal.id}
    assert set(await ids(updated_at={"gte": reversal.updated_at.isoformat()})) == {early.id, reversal.id}


async def test_status_and_id_lists_and_entry_filters_the_sdk_sends(mt):
    client = await mt()
    _, cash, wallet = await _ledger_with_accounts(client)

    async def transfer(status: str, day: int, amount: int):
        return await client.ledger_transactions.create(
            status=status, effective_at=datetime(2024, 4, day, 12, tzinfo=timezone.utc), ledger_entries=[
                {"ledger_account_id": cash.id, "direction": "debit", "amount": amount},
                {"ledger_account_id": wallet.id, "direction": "credit", "amount": amount}])

    pending, posted, later = await transfer("pending", 1, 1), await transfer("posted", 2, 2), await transfer("posted", 3, 3)
    both = [t.id async for t in client.ledger_transactions.list(status=["pending", "posted"])]
    assert both == [pending.id, posted.id, later.id]
    assert [t.id async for t in client.ledger_transactions.list(status=["pending"])] == [pending.id]
    assert [t.id async for t in client.ledger_transactions.list(id=[later.id, pending.id])] == [pending.id, later.id]

    entries = [e async for e in client.ledger_entries.list(ledger_account_id=cash.id)]
    assert [e.amount async for e in client.ledger_entries.list(id=[entries[1].id, entries[2].id])] == [2, 3]
    assert [e.amount async for e in client.ledger_entries.list(
        ledger_account_id=cash.id, effective_date={"gte": date(2024, 4, 2), "lt": date(2024, 4, 3)})] == [2]
    assert [e.amount async for e in client.ledger_entries.list(
        ledger_account_id=cash.id, effective_at={"gt": datetime(2024, 4, 2, 12, tzinfo=timezone.utc)})] == [3]
    versions = sorted(e.ledger_account_lock_version for e in entries)
    assert [e.ledger_account_lock_version async for e in client.ledger_entries.list(
        ledger_account_id=cash.id, ledger_account_lock_version={"gte": versions[1]})] == versions[1:]
    assert [e.amount async for e in client.ledger_entries.list(
        ledger_account_id=cash.id, amount={"gte": 2}, show_deleted=True)] == [2, 3]
    await client.ledger_entries.update(entries[0].id, metadata={"seen": "1"})
    assert [e.id async for e in client.ledger_entries.list(metadata={"seen": "1"})] == [entries[0].id]
    touched = (await client.ledger_entries.retrieve(entries[0].id)).updated_at
    assert [e.id async for e in client.ledger_entries.list(
        ledger_account_id=cash.id, updated_at={"gte": touched})] == [entries[0].id]


async def test_versions_list_with_its_filters(mt):
    client = await mt()
    _, cash, wallet = await _ledger_with_accounts(client)
    legs = [{"ledger_account_id": cash.id, "direction": "debit", "amount": 4},
            {"ledger_account_id": wallet.id, "direction": "credit", "amount": 4}]
    first = await client.ledger_transactions.create(ledger_entries=legs, effective_date=date(2024, 1, 2))
    other = await client.ledger_transactions.create(ledger_entries=legs)
    await client.ledger_transactions.update(first.id, metadata={"step": "1"})
    await client.ledger_transactions.update(first.id, status="posted")

    versions = [v async for v in client.ledger_transactions.versions.list(ledger_transaction_id=first.id,
                                                                          per_page=1)]
    assert [(v.version, v.status, v.metadata) for v in versions] == [
        (1, "pending", {}), (2, "pending", {"step": "1"}), (3, "posted", {"step": "1"})]
    assert {v.ledger_transaction_id for v in versions} == {first.id}
    assert versions[0].effective_date == date(2024, 1, 2)
    assert [v.version async for v in client.ledger_transactions.versions.list(
        ledger_transaction_id=first.id, version={"gte": 2})] == [2, 3]
    everything = [(v.ledger_transaction_id, v.version) async for v in client.ledger_transactions.versions.list()]
    assert everything == [(first.id, 1), (other.id, 1), (first.id, 2), (first.id, 3)]
    since = [(v.ledger_transaction_id, v.version) async for v in client.ledger_transactions.versions.list(
        created_at={"gt": versions[1].created_at.isoformat()})]
    assert since == [(first.id, 3)]
    with pytest.raises(modern_treasury.BadRequestError):
        await client.ledger_transactions.versions.list(version={"gte": 0})


async def test_a_partial_post_posts_part_and_archives_the_pending_transaction(mt):
    client = await mt()
    _, cash, wallet = await _ledger_with_accounts(client)
    pending = await client.ledger_transactions.create(metadata={"hold": "h1"}, ledger_entries=[
        {"ledger_account_id": cash.id, "direction": "debit", "amount": 100},
        {"ledger_account_id": wallet.id, "direction": "credit", "amount": 100}])
    assert (await client.ledger_accounts.retrieve(wallet.id)).balances.pending_balance.amount == 100
    with pytest.raises(modern_treasury.UnprocessableEntityError) as caught:  # more than was held
        await client.ledger_transactions.create_partial_post(pending.id, posted_ledger_entries=[
            {"ledger_account_id": cash.id, "direction": "debit", "amount": 101},
            {"ledger_account_id": wallet.id, "direction": "credit", "amount": 101}])
    assert caught.value.body["code"] == "partial_post_entries_mismatch"

    posted = await client.ledger_transactions.create_partial_post(pending.id, description="captured", posted_ledger_entries=[
        {"ledger_account_id": cash.id, "direction": "debit", "amount": 60},
        {"ledger_account_id": wallet.id, "direction": "credit", "amount_string": "60",
         "show_resulting_ledger_account_balances": True}])
    assert posted.status == "posted" and posted.partially_posts_ledger_transaction_id == pending.id
    assert posted.description == "captured" and posted.metadata == {"hold": "h1"}
    assert posted.effective_at == pending.effective_at
    wallet_leg = next(e for e in posted.ledger_entries if e.ledger_account_id == wallet.id)
    assert wallet_leg.resulting_ledger_account_balances.pending_balance.amount == 60
    archived = await client.ledger_transactions.retrieve(pending.id)
    assert archived.status == "archived" and archived.archived_at is not None
    balances = (await client.ledger_accounts.retrieve(wallet.id)).balances
    assert (balances.pending_balance.amount, balances.posted_balance.amount) == (60, 60)
    assert [t.id async for t in client.ledger_transactions.list(
        partially_posts_ledger_transaction_id=pending.id)] == [posted.id]
    with pytest.raises(modern_treasury.UnprocessableEntityError) as caught:  # no longer pending
        await client.ledger_transactions.create_partial_post(pending.id, posted_ledger_entries=[
            {"ledger_account_id": cash.id, "direction": "debit", "amount": 1},
            {"ledger_account_id": wallet.id, "direction": "credit", "amount": 1}])
    assert caught.value.body["code"] == "invalid_status_transition"
    with pytest.raises(modern_treasury.UnprocessableEntityError) as caught:  # what no longer pending says first
        await client.ledger_transactions.create_partial_post(pending.id, posted_ledger_entries=[
            {"ledger_account_id": cash.id, "direction": "debit", "amount": 500},
            {"ledger_account_id": wallet.id, "direction": "credit", "amount": 500}])
    assert caught.value.body["code"] == "invalid_status_transition"


async def test_a_retried_partial_post_answers_the_same_transaction(mt):
    client = await mt()
    _, cash, wallet = await _ledger_with_accounts(client)
    pending = await client.ledger_transactions.create(ledger_entries=[
        {"ledger_account_id": cash.id, "direction": "debit", "amount": 10},
        {"ledger_account_id": wallet.id, "direction": "credit", "amount": 10}])
    legs = [{"ledger_account_id": cash.id, "direction": "debit", "amount": 10},
            {"ledger_account_id": wallet.id, "direction": "credit", "amount": 10}]
    first = await client.ledger_transactions.create_partial_post(pending.id, posted_ledger_entries=legs,
                                                                 idempotency_key="capture-1")
    again = await client.ledger_transactions.create_partial_post(pending.id, posted_ledger_entries=legs,
                                                                 idempotency_key="capture-1")
    assert again.id == first.id
    assert (await client.ledger_accounts.retrieve(wallet.id)).balances.posted_balance.amount == 10


async def test_a_pending_transactions_entries_and_time_are_updated_through_the_sdk(mt):
    """`ledger_transactions.update(ledger_entries=..., effective_at=...)` as a customer's code calls it: the new
    entries are the transaction's, the old ones deleted (`ledger_entries.list(show_deleted=True)` shows them, with
    their discarded_at); a posted transaction's entries stay as they are."""
    client = await mt()
    _, cash, wallet = await _ledger_with_accounts(client)
    hold = await client.ledger_transactions.create(ledger_entries=[
        {"ledger_account_id": cash.id, "direction": "debit", "amount": 100},
        {"ledger_account_id": wallet.id, "direction": "credit", "amount": 100}])
    when = datetime(2026, 6, 1, 9, 30, tzinfo=timezone.utc)
    raised = await client.ledger_transactions.update(hold.id, effective_at=when, ledger_entries=[
        {"ledger_account_id": cash.id, "direction": "debit", "amount": 130},
        {"ledger_account_id": wallet.id, "direction": "credit", "amount": 130, "metadata": {"leg": "wallet"}}])
    assert raised.status == "pending" and raised.effective_at == when and raised.effective_date == date(2026, 6, 1)
    assert sorted(e.amount for e in raised.ledger_entries) == [130, 130]
    assert {e.effective_at for e in raised.ledger_entries} == {when}
    assert (await client.ledger_accounts.retrieve(wallet.id)).balances.pending_balance.amount == 130
    live = [e async for e in client.ledger_entries.list(ledger_transaction_id=hold.id)]
    assert sorted(e.amount for e in live) == [130, 130]
    every = [e async for e in client.ledger_entries.list(ledger_transaction_id=hold.id, show_deleted=True)]
    deleted = [e for e in every if e.discarded_at is not None]
    assert sorted(e.amount for e in deleted) == [100, 100] and {e.status for e in deleted} == {"archived"}
    await client.ledger_transactions.update(hold.id, status="posted")
    with pytest.raises(modern_treasury.UnprocessableEntityError) as caught:
        await client.ledger_transactions.update(hold.id, ledger_entries=[
            {"ledger_account_id": cash.id, "direction": "debit", "amount": 1},
            {"ledger_account_id": wallet.id, "direction": "credit", "amount": 1}])
    assert caught.value.body["code"] == "invalid_status_transition"
    balances = (await client.ledger_accounts.retrieve(wallet.id)).balances
    assert (balances.pending_balance.amount, balances.posted_balance.amount) == (130, 130)
