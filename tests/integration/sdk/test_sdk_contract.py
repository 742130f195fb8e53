"""What the SDK's own types and docstrings promise, met: the full-precision balance strings its LedgerBalance requires,
X-Per-Page on every page, a reversal effective when its original was by default, and `client.ping()`."""

from __future__ import annotations

from datetime import datetime, timezone

from modern_treasury.types import LedgerAccount, LedgerAccountCategory

from tests.integration.sdk.test_sdk_ledgers import _ledger_with_accounts as _accounts


def _legs(cash, wallet, amount: int, **wallet_extra) -> list[dict]:
    return [{"ledger_account_id": cash.id, "direction": "debit", "amount": amount},
            {"ledger_account_id": wallet.id, "direction": "credit", "amount": amount, **wallet_extra}]


async def test_every_balance_carries_the_full_precision_strings_the_sdk_requires(mt):
    client = await mt()
    ledger, cash, wallet = await _accounts(client)
    txn = await client.ledger_transactions.create(status="posted", ledger_entries=_legs(
        cash, wallet, 2500, show_resulting_ledger_account_balances=True))
    posted = (await client.ledger_accounts.retrieve(wallet.id)).balances.posted_balance
    assert (posted.amount_string, posted.credits_string, posted.debits_string) == ("2500", "2500", "0")
    resulting = next(e for e in txn.ledger_entries if e.ledger_account_id == wallet.id)
    assert resulting.resulting_ledger_account_balances.posted_balance.amount_string == "2500"
    category = await client.ledger_account_categories.create(name="c", ledger_id=ledger.id, normal_balance="debit",
                                                             currency="USD")
    await client.ledger_account_categories.add_ledger_account(cash.id, id=category.id)
    # Validated as the SDK's models say (the SDK itself builds them without validating: a field missing is None).
    raw = await client.ledger_account_categories.with_raw_response.retrieve(category.id)
    assert LedgerAccountCategory.model_validate(raw.http_response.json()).balances.pending_balance.amount_string == \
        "2500"
    raw = await client.ledger_accounts.with_raw_response.retrieve(cash.id)
    assert LedgerAccount.model_validate(raw.http_response.json()).balances.available_balance.debits_string == "2500"


async def test_a_page_says_its_size(mt):
    client = await mt()
    for i in range(3):
        await client.ledgers.create(name=f"l{i}")
    page = await client.ledgers.list(per_page=2)
    assert page.after_cursor and page.per_page == 2
    assert (await client.ledgers.list()).per_page == 25  # the default


async def test_a_reversal_is_effective_when_its_original_was_unless_told(mt):
    client = await mt()
    _, cash, wallet = await _accounts(client)
    original = await client.ledger_transactions.create(
        status="posted", effective_at=datetime(2024, 5, 1, 12, tzinfo=timezone.utc), ledger_entries=_legs(
            cash, wallet, 100))
    assert (await client.ledger_transactions.create_reversal(original.id)).effective_at == original.effective_at
    later = datetime(2024, 6, 1, tzinfo=timezone.utc)
    other = await client.ledger_transactions.create(status="posted", ledger_entries=_legs(cash, wallet, 5))
    assert (await client.ledger_transactions.create_reversal(other.id, effective_at=later)).effective_at == later


async def test_ping_checks_the_credentials(mt):
    client = await mt()
    assert (await client.ping()).ping == "pong"
    import modern_treasury
    stranger = client.with_options(api_key="lk_wrong")
    try:
        await stranger.ping()
        raised = None
    except modern_treasury.AuthenticationError as exc:
        raised = exc
    assert raised is not None and raised.status_code == 401


async def test_a_transactions_external_id_and_description_are_cleared_with_null(mt):
    client = await mt()
    _, cash, wallet = await _accounts(client)
    txn = await client.ledger_transactions.create(status="pending", external_id="ext-1", description="hold",
                                                  ledger_entries=_legs(cash, wallet, 5))
    cleared = await client.ledger_transactions.update(txn.id, external_id=None, description=None)
    again = await client.ledger_transactions.retrieve(txn.id)
    assert (cleared.external_id, cleared.description, cleared.version) == (None, None, 2)
    assert (again.external_id, again.description) == (None, None)
    # The external id is free again for another transaction of the ledger.
    other = await client.ledger_transactions.create(status="posted", external_id="ext-1",
                                                    ledger_entries=_legs(cash, wallet, 1))
    assert other.external_id == "ext-1"


async def test_a_versions_entries_are_entries_as_the_sdk_types_them(mt):
    """Each version's entries as the transaction held them then: their status the version's, with the fields the
    SDK's version entry requires (the snapshot the audit chain hashes keeps only ids, accounts, directions, amounts)."""
    from modern_treasury.types.ledger_transactions import LedgerTransactionVersion

    client = await mt()
    _, cash, wallet = await _accounts(client)
    pending = await client.ledger_transactions.create(ledger_entries=_legs(cash, wallet, 50))
    await client.ledger_transactions.update(pending.id, status="posted")
    versions = [v async for v in client.ledger_transactions.versions.list(ledger_transaction_id=pending.id)]
    assert [(v.version, [e.status for e in v.ledger_entries]) for v in versions] == [
        (1, ["pending", "pending"]), (2, ["posted", "posted"])]
    entry = versions[1].ledger_entries[0]
    assert (entry.amount_string, entry.ledger_transaction_id, entry.ledger_account_currency,
            entry.ledger_account_currency_exponent, entry.effective_at) == ("50", pending.id, "USD", 2,
                                                                            pending.effective_at)
    raw = await client.ledger_transactions.versions.with_raw_response.list(ledger_transaction_id=pending.id)
    for shown in raw.http_response.json():
        LedgerTransactionVersion.model_validate(shown)  # every field the SDK's model requires is there


async def test_a_version_says_when_it_was_posted_why_archived_and_what_it_links(mt):
    """The version fields the SDK reads beside the snapshot: `posted_at` on a posted version, `archived_reason` on an
    archived one, the partial post's link on each, the reversal on the current version only (it adds no version)."""
    client = await mt()
    _, cash, wallet = await _accounts(client)
    pending = await client.ledger_transactions.create(ledger_entries=_legs(cash, wallet, 50))
    posted = await client.ledger_transactions.update(pending.id, status="posted")
    reversal = await client.ledger_transactions.create_reversal(pending.id)
    versions = [v async for v in client.ledger_transactions.versions.list(ledger_transaction_id=pending.id)]
    assert [(v.version, v.posted_at, v.reversed_by_ledger_transaction_id) for v in versions] == [
        (1, None, None), (2, posted.posted_at, reversal.id)]
    everywhere = [v async for v in client.ledger_transactions.versions.list()]
    assert [(v.posted_at, v.reversed_by_ledger_transaction_id) for v in everywhere
            if v.ledger_transaction_id == pending.id] == [(None, None), (posted.posted_at, reversal.id)]

    held = await client.ledger_transactions.create(ledger_entries=_legs(cash, wallet, 100))
    part = await client.ledger_transactions.create_partial_post(held.id, posted_ledger_entries=_legs(cash, wallet, 60))
    [shown] = [v async for v in client.ledger_transactions.versions.list(ledger_transaction_id=part.id)]
    assert (shown.partially_posts_ledger_transaction_id, shown.posted_at) == (held.id, part.posted_at)

    locked = await client.ledger_transactions.create(status="posted", ledger_entries=[
        {"ledger_account_id": wallet.id, "direction": "debit", "amount": 10**6,
         "available_balance_amount": {"gte": 0}},
        {"ledger_account_id": cash.id, "direction": "credit", "amount": 10**6}],
        extra_body={"archive_on_balance_lock_failure": True})
    [archived] = [v async for v in client.ledger_transactions.versions.list(ledger_transaction_id=locked.id)]
    assert (archived.status, archived.archived_reason, archived.posted_at) == ("archived", "balance_lock_failure",
                                                                               None)
