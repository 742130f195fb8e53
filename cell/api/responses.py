"""The shapes the API answers with, for the OpenAPI document (Modern Treasury's field names).

The handlers render plain dicts (cell/service/render.py) and encode them once; these types only describe
them. tests/integration/cell/test_response_shapes.py decodes real answers into these types with unknown
fields forbidden, so a field added to or dropped from a rendering without its description here fails there.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Literal

from msgspec import Struct

from cell.api.schemas import Timestamp  # an RFC 3339 date-time with its offset

Direction = Literal["debit", "credit"]
TxnStatus = Literal["pending", "posted", "archived"]


class Shape(Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class Balance(Shape):
    credits: int
    debits: int
    amount: int
    currency: str
    currency_exponent: int


class Balances(Shape):
    pending_balance: Balance
    posted_balance: Balance
    available_balance: Balance


class Ledger(Shape):
    id: uuid.UUID
    object: Literal["ledger"]
    live_mode: bool
    name: str
    description: str | None
    metadata: dict[str, str]
    created_at: Timestamp
    updated_at: Timestamp


class LedgerAccount(Shape):
    id: uuid.UUID
    object: Literal["ledger_account"]
    live_mode: bool
    name: str
    description: str | None
    ledger_id: uuid.UUID
    normal_balance: Direction
    currency: str
    currency_exponent: int
    metadata: dict[str, str]
    sync_only: bool
    lock_version: int
    balances: Balances
    created_at: Timestamp
    updated_at: Timestamp


class LedgerEntry(Shape):
    id: uuid.UUID
    object: Literal["ledger_entry"]
    live_mode: bool
    amount: int
    direction: Direction
    status: TxnStatus
    ledger_account_id: uuid.UUID
    # null until an async entry is applied to its account's balance
    ledger_account_lock_version: int | None
    ledger_account_currency: str
    ledger_account_currency_exponent: int
    ledger_transaction_id: uuid.UUID
    effective_at: Timestamp
    # present when asked for (show_resulting_ledger_account_balances, show_balances) and applied
    resulting_ledger_account_balances: Balances | None
    created_at: Timestamp
    updated_at: Timestamp


class LedgerTransaction(Shape):
    id: uuid.UUID
    object: Literal["ledger_transaction"]
    live_mode: bool
    ledger_id: uuid.UUID
    description: str | None
    status: TxnStatus
    effective_at: Timestamp
    effective_date: date
    external_id: str | None
    metadata: dict[str, str]
    ledger_entries: list[LedgerEntry]
    posted_at: Timestamp | None
    archived_at: Timestamp | None
    reverses_ledger_transaction_id: uuid.UUID | None
    reversed_by_ledger_transaction_id: uuid.UUID | None
    version: int
    created_at: Timestamp
    updated_at: Timestamp


class VersionEntry(Shape):
    id: uuid.UUID
    ledger_account_id: uuid.UUID
    direction: Direction
    amount: int


class LedgerTransactionVersion(Shape):
    """The transaction as it was at `version`; `hash` chains each version to the one before (SHA-256)."""

    id: uuid.UUID
    object: Literal["ledger_transaction_version"]
    ledger_transaction_id: uuid.UUID
    version: int
    hash: str
    ledger_id: uuid.UUID
    description: str | None
    status: TxnStatus
    effective_at: Timestamp
    external_id: str | None
    metadata: dict[str, str]
    reverses_ledger_transaction_id: uuid.UUID | None
    ledger_entries: list[VersionEntry]
    created_at: Timestamp


class Problem(Struct, kw_only=True):
    """RFC 9457 problem+json; `code` is stable and names the rejection (see the README's table)."""

    type: str
    title: str
    status: int
    code: str
    detail: str
