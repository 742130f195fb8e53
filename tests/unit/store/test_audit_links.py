"""What an audit link hashes: the row's content and the link before it, never a transaction id or a time."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

from cell.store.audit import GENESIS, account_content, link_hash, version_content

T = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def entry(amount: int) -> dict:
    return {"id": uuid.uuid4(), "tenant_id": "t", "ledger_account_id": uuid.uuid4(), "direction": "debit",
            "amount": amount, "effective_at": T, "created_at": T, "metadata": '{"b": 1, "a": 2}'}


def version(snapshot: str = '{"status": "posted", "amount": 5}') -> dict:
    return {"tenant_id": "t", "transaction_id": uuid.UUID(int=1), "version": 1, "snapshot": snapshot,
            "prev_hash": None, "hash": b"h", "created_at": T}


def test_a_version_s_content_covers_its_entries_in_any_order_and_every_field():
    entries = [entry(5), entry(7)]
    content = version_content(version(), entries)
    assert content == version_content(version(), list(reversed(entries)))
    assert content == version_content(version('{"amount": 5, "status": "posted"}'), entries)  # JSON key order
    assert content != version_content(version(), [entries[0]])
    assert content != version_content(version(), [entries[0], {**entries[1], "amount": 8}])
    assert content != version_content(version('{"status": "archived", "amount": 5}'), entries)


def test_an_account_s_content_changes_with_what_it_says():
    account = {"tenant_id": "t", "id": uuid.UUID(int=2), "ledger_id": uuid.UUID(int=3), "name": "cash",
               "description": None, "normal_balance": "debit", "currency": "USD", "currency_exponent": 2,
               "metadata": "{}", "sync_only": False, "external_id": None, "ledgerable_type": None,
               "ledgerable_id": None, "discarded_at": None, "created_at": T, "updated_at": T}
    content = account_content(account)
    assert content != account_content({**account, "normal_balance": "credit"})
    assert content != account_content({**account, "external_id": "acct-1"})
    assert content != account_content({**account, "ledgerable_type": "counterparty", "ledgerable_id": "c-1"})
    assert content != account_content({**account, "discarded_at": T})
    assert account_content({**account, "external_id": "acct-1", "discarded_at": T}) != account_content(
        {**account, "external_id": "acct-1"})
    # Without the fields 0203 and 0204 added, the content an account was sealed with before them (its hash then): a cell's
    # accounts sealed before the upgrade still verify.
    assert hashlib.sha256(content).hexdigest() == "58cb116ebc80959e64cff8871b4f07162df56139a8149df2b6b4d47abdee3f8e"


def test_a_link_chains_to_the_one_before_it():
    first = link_hash(GENESIS, "t", 1, "version", uuid.UUID(int=1), 1, b"c" * 32)
    second = link_hash(first, "t", 2, "account", uuid.UUID(int=2), None, b"d" * 32)
    assert second != link_hash(GENESIS, "t", 2, "account", uuid.UUID(int=2), None, b"d" * 32)
    assert first != link_hash(GENESIS, "t", 1, "version", uuid.UUID(int=1), 1, b"e" * 32)
    assert first != link_hash(GENESIS, "u", 1, "version", uuid.UUID(int=1), 1, b"c" * 32)
