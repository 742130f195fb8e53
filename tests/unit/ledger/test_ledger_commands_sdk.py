"""The SDK's request fields decoded at the edge: amount_string, effective_date, entries' effective_at."""

from __future__ import annotations

from datetime import datetime, timezone

import msgspec
import pytest

from cell.ledger.commands import TransactionCreate
from cell.ledger.errors import InvalidRequest

A = "00000000-0000-0000-0000-00000000000a"
B = "00000000-0000-0000-0000-00000000000b"


def decode(**body) -> TransactionCreate:
    body.setdefault("ledger_entries", [{"ledger_account_id": A, "direction": "debit", "amount_string": "12"},
                                       {"ledger_account_id": B, "direction": "credit", "amount": 12}])
    return msgspec.json.decode(msgspec.json.encode(body), type=TransactionCreate, strict=True)


def test_amount_string_becomes_the_amount_and_no_ledger_id_is_needed():
    cmd = decode()
    assert [e.amount for e in cmd.ledger_entries] == [12, 12] and cmd.ledger_id is None


def test_effective_date_is_midnight_utc_and_must_agree_with_effective_at():
    assert decode(effective_date="2024-05-01").effective_at == datetime(2024, 5, 1, tzinfo=timezone.utc)
    assert decode(effective_date="2024-05-01", effective_at="2024-05-01T23:59:59Z").effective_at.hour == 23
    with pytest.raises(InvalidRequest) as caught:
        decode(effective_date="2024-05-02", effective_at="2024-05-01T23:59:59Z")
    assert caught.value.code == "effective_date_mismatch"


def test_entries_effective_at_stands_for_the_transactions():
    at = "2024-05-01T10:00:00+00:00"
    entries = [{"ledger_account_id": A, "direction": "debit", "amount": 1, "effective_at": at},
               {"ledger_account_id": B, "direction": "credit", "amount": 1}]
    assert decode(ledger_entries=entries).effective_at == datetime.fromisoformat(at)
    with pytest.raises(InvalidRequest):
        decode(ledger_entries=entries, effective_at="2024-05-01T10:00:01Z")


def test_an_amount_is_never_null():
    with pytest.raises(msgspec.ValidationError):
        decode(ledger_entries=[{"ledger_account_id": A, "direction": "debit", "amount": None}])
