"""Domain values of the ledger: accounts as the posting sees them, entry requests, a posting about to be written,
a transaction as it stands (what a version records), rejections."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Literal

import msgspec

Direction = Literal["credit", "debit"]
NormalBalance = Literal["credit", "debit"]
Status = Literal["pending", "posted", "archived"]
Operator = Literal["gt", "gte", "lt", "lte", "eq"]
BalanceName = Literal["pending_balance_amount", "posted_balance_amount", "available_balance_amount"]
# A balance monitor's condition (fixed once created): `field` compared with its value by `operator`.
AlertField = Literal["available_balance_amount", "pending_balance_amount", "posted_balance_amount",
                     "ledger_account_lock_version"]
AlertOperator = Literal["less_than", "less_than_or_equals", "equals", "greater_than_or_equals", "greater_than"]

AMOUNT_MAX = 2**63 - 1  # amounts are signed 64-bit integers of minor units; balances never overflow (numeric)

# Every time the API accepts (effective_at in bodies and filters) lies in [TIMESTAMP_MIN, TIMESTAMP_END): far from
# the ends of Python's datetime (years 1 and 9999), whose UTC conversion overflows, and from PostgreSQL's.
TIMESTAMP_MIN = datetime(1900, 1, 1, tzinfo=timezone.utc)
TIMESTAMP_END = datetime(9000, 1, 1, tzinfo=timezone.utc)


def timestamp_in_range(value: datetime) -> bool:
    """Compared as instants (no UTC conversion, which could overflow); `value` must carry a time zone."""
    return TIMESTAMP_MIN <= value < TIMESTAMP_END


class Account(msgspec.Struct, frozen=True):
    """The immutable facts about an account that posting validation needs."""

    id: str
    ledger_id: str
    currency: str
    currency_exponent: int
    normal_balance: NormalBalance


class Condition(msgspec.Struct, frozen=True):
    """A balance lock of one entry: `available_balance_amount: {gte: 0}` and friends, and `lock_version`."""

    balances: dict[str, dict[str, int]] = {}
    lock_version: int | None = None

    def is_empty(self) -> bool:
        return not self.balances and self.lock_version is None


class EntryRequest(msgspec.Struct, frozen=True):
    ledger_account_id: str
    direction: Direction
    amount: int
    condition: Condition = Condition()
    show_resulting_balances: bool = False
    metadata: dict[str, str] = {}


class Rejection(msgspec.Struct, frozen=True):
    """An expected refusal, as a value with a stable code (never an exception thrown from the domain)."""

    code: str
    detail: str


class IdemKey(msgspec.Struct, frozen=True):
    """An Idempotency-Key and the hash of the request it came with."""

    key: str
    request_hash: bytes


class VersionEntry(msgspec.Struct, frozen=True):
    id: uuid.UUID
    ledger_account_id: uuid.UUID
    direction: Direction
    amount: int


class TransactionState(msgspec.Struct, frozen=True, kw_only=True):
    """A ledger transaction as one of its versions records it (and the audit chain hashes it): no volatile
    fields. Its JSON is the version's snapshot; `effective_at` is in UTC."""

    id: uuid.UUID
    ledger_id: uuid.UUID
    description: str | None
    status: Status
    effective_at: datetime
    external_id: str | None
    metadata: dict[str, str]
    reverses_ledger_transaction_id: uuid.UUID | None
    ledger_entries: list[VersionEntry]
    ledgerable_type: str | None = None
    ledgerable_id: str | None = None


class PartialPost(msgspec.Struct, frozen=True, kw_only=True):
    """The pending transaction a posting partially posts: archived, as version expected_version + 1, in the
    posting's own database transaction."""

    id: uuid.UUID
    expected_version: int
    snapshot: TransactionState  # the pending transaction as archived
    apply_all: bool


class Posting(msgspec.Struct, frozen=True, kw_only=True):
    """A validated ledger transaction about to be written, its ids chosen: what `ledger_post` takes."""

    tenant_id: str
    state: TransactionState
    entries: list[EntryRequest]  # in the order of state.ledger_entries
    apply_accounts: list[str]  # applied in the posting itself (sorted: the lock order)
    idempotency: IdemKey | None = None
    partially_posts: PartialPost | None = None
    archive_on_lock_failure: bool = False  # a violated balance lock: written archived, not refused
