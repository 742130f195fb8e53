"""The commands the API takes (its request bodies), decoded strictly at the edge: no floats or strings for
amounts, bounded everything."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timezone
from typing import Annotated, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from cell.ledger.currencies import EXPONENTS
from cell.ledger.errors import InvalidRequest, PostingRejected
from cell.ledger.models import (
    AMOUNT_MAX,
    TIMESTAMP_END,
    TIMESTAMP_MIN,
    AlertField,
    AlertOperator,
    Direction,
    NormalBalance,
    Status,
    timestamp_in_range,
)
from cell.ledger.webhooks import EVENT_NAMES, EVENT_NAMES_MAX

# Absolute caps baked into the schema; the tighter, tunable limits live in CellSettings (*_max).
ENTRIES_SCHEMA_MAX = 10_000  # what the decoder takes at all; more than entries_per_transaction_max is a 422
# The defaults of the tunable limits (CellSettings; an operator may lower them), as the OpenAPI document says them.
ENTRIES_PER_TRANSACTION_MAX = 500
PER_PAGE_MAX = 100
METADATA_KEYS_MAX = 64

# PostgreSQL text cannot hold NUL, and a lone surrogate is not UTF-8: both are refused here, at the edge.
STORABLE = r"^[^\x00\ud800-\udfff]*$"
Name = Annotated[str, Meta(min_length=1, max_length=255, pattern=STORABLE)]
Text = Annotated[str, Meta(max_length=1024, pattern=STORABLE)]
ExternalId = Annotated[str, Meta(min_length=1, max_length=255, pattern=STORABLE)]
Currency = Annotated[str, Meta(pattern=r"^[A-Z][A-Z0-9]{2,9}$")]
Exponent = Annotated[int, Meta(ge=0, le=18)]
Amount = Annotated[int, Meta(ge=1, le=AMOUNT_MAX)]
# The SDK's full-precision amount: digits only (the range is checked after decoding, as for `amount`).
AmountString = Annotated[str, Meta(min_length=1, max_length=40, pattern=r"^[0-9]+$")]
LedgerableType = Literal["expected_payment", "incoming_payment_detail", "payment_order", "return", "reversal"]
LEDGERABLE_TYPES = LedgerableType.__args__
# What a ledger account may stand for (Modern Treasury's ledgerable_type of an account).
AccountLedgerableType = Literal["counterparty", "external_account", "internal_account", "virtual_account"]
Bound = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
Version = Annotated[int, Meta(ge=0, le=AMOUNT_MAX)]
Timestamp = Annotated[datetime, Meta(tz=True)]
CATEGORIES_PER_REQUEST_MAX = 32
CategoryIds = Annotated[list[uuid.UUID], Meta(max_length=CATEGORIES_PER_REQUEST_MAX)]
MetadataKey = Annotated[str, Meta(min_length=1, max_length=128, pattern=STORABLE)]
Metadata = Annotated[dict[MetadataKey, Text], Meta(max_length=METADATA_KEYS_MAX)]


class Strict(Struct, forbid_unknown_fields=True, kw_only=True):
    pass


def check_timestamp(name: str, value: datetime | None) -> None:
    """A time outside the documented range is refused here, before it can reach the database or a UTC
    conversion."""
    if value is not None and not timestamp_in_range(value):
        raise InvalidRequest(f"{name} must be at or after {TIMESTAMP_MIN.isoformat()} and before "
                             f"{TIMESTAMP_END.isoformat()}", "timestamp_out_of_range")


class LedgerCreate(Strict):
    name: Name
    description: Text | None = None
    metadata: Metadata = {}


class LedgerUpdate(Strict):
    name: Name | UnsetType = UNSET
    description: Text | None | UnsetType = UNSET
    metadata: Metadata | UnsetType = UNSET


def currency_exponent(currency: str, given: int | None) -> int:
    """The exponent given, or the one the ledger knows for the currency; neither is a 400."""
    exponent = given if given is not None else EXPONENTS.get(currency)
    if exponent is None:
        raise InvalidRequest(f"currency_exponent is required for currency {currency}", "currency_exponent_required")
    return exponent


class AccountCreate(Strict):
    name: Name
    ledger_id: uuid.UUID
    normal_balance: NormalBalance
    currency: Currency
    currency_exponent: Exponent | None = None
    description: Text | None = None
    external_id: ExternalId | None = None
    ledgerable_type: AccountLedgerableType | None = None
    ledgerable_id: ExternalId | None = None
    metadata: Metadata = {}
    sync_only: bool = False
    # The categories the new account joins (Modern Treasury's field name).
    ledger_account_category_ids: CategoryIds = []

    def __post_init__(self) -> None:
        if (self.ledgerable_type is None) != (self.ledgerable_id is None):
            raise InvalidRequest("ledgerable_type and ledgerable_id go together", "invalid_request")


class AccountUpdate(Strict):
    name: Name | UnsetType = UNSET
    description: Text | None | UnsetType = UNSET
    external_id: ExternalId | None | UnsetType = UNSET
    metadata: Metadata | UnsetType = UNSET
    sync_only: bool | UnsetType = UNSET


class AlertCondition(Strict):
    """A balance monitor's condition: `field` compared with `value` by `operator` (fixed once created)."""

    field: AlertField
    operator: AlertOperator
    value: Bound


class MonitorCreate(Strict):
    ledger_account_id: uuid.UUID
    alert_condition: AlertCondition
    description: Text | None = None
    metadata: Metadata = {}


class MonitorUpdate(Strict):
    description: Text | None | UnsetType = UNSET
    metadata: Metadata | UnsetType = UNSET


class CategoryCreate(Strict):
    """A new ledger account category; `ledger_account_category_ids` are the categories it is nested in."""

    name: Name
    ledger_id: uuid.UUID
    normal_balance: NormalBalance
    currency: Currency
    currency_exponent: Exponent | None = None
    description: Text | None = None
    external_id: ExternalId | None = None
    metadata: Metadata = {}
    ledger_account_category_ids: CategoryIds = []


class CategoryUpdate(Strict):
    name: Name | UnsetType = UNSET
    description: Text | None | UnsetType = UNSET
    external_id: ExternalId | None | UnsetType = UNSET
    metadata: Metadata | UnsetType = UNSET


class BalanceLock(Strict):
    gt: Bound | None = None
    gte: Bound | None = None
    lt: Bound | None = None
    lte: Bound | None = None
    eq: Bound | None = None

    def as_dict(self) -> dict[str, int]:
        return {op: v for op in ("gt", "gte", "lt", "lte", "eq") if (v := getattr(self, op)) is not None}


class EntryCreate(Strict):
    """One entry of a new transaction. `amount` or `amount_string` (the SDK's full-precision form; both: equal);
    after decoding `amount` always holds the value. An entry's `effective_at` is its transaction's: one given
    here must agree with the transaction's (entries of one transaction are effective at one instant)."""

    ledger_account_id: uuid.UUID
    direction: Direction
    amount: Amount | UnsetType = UNSET  # absent, never null
    amount_string: AmountString | UnsetType = UNSET
    effective_at: Timestamp | None = None
    metadata: Metadata = {}
    pending_balance_amount: BalanceLock | None = None
    posted_balance_amount: BalanceLock | None = None
    available_balance_amount: BalanceLock | None = None
    lock_version: Version | None = None
    show_resulting_ledger_account_balances: bool | None = False

    def __post_init__(self) -> None:
        check_timestamp("ledger_entries[].effective_at", self.effective_at)
        if self.amount_string is not UNSET:
            value = int(self.amount_string)
            if not 1 <= value <= AMOUNT_MAX:
                raise InvalidRequest(f"ledger_entries[].amount_string must be between 1 and {AMOUNT_MAX}",
                                     "invalid_amount")
            if self.amount is not UNSET and self.amount != value:
                raise InvalidRequest("ledger_entries[]: amount and amount_string differ", "amount_mismatch")
            self.amount = value
        if self.amount is UNSET:
            raise InvalidRequest("ledger_entries[] needs amount or amount_string", "amount_required")
        if self.show_resulting_ledger_account_balances is None:
            self.show_resulting_ledger_account_balances = False


def midnight_utc(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=timezone.utc)


def agreed_effective_at(effective_at, entries: list[EntryCreate]):
    """A transaction's effective time given its entries' own (entries of one transaction are effective at one
    instant): theirs when it gives none (`effective_at` None or UNSET, returned as is when they give none either);
    one of theirs that differs from it is refused."""
    for e in entries:
        if e.effective_at is not None:
            break
    else:  # none gives one (the usual request)
        return effective_at
    given = {e.effective_at for e in entries if e.effective_at is not None}
    if (effective_at is None or effective_at is UNSET) and len(given) == 1:
        return given.pop()
    if any(at != effective_at for at in given):
        raise InvalidRequest("every ledger_entries[].effective_at must be the transaction's effective_at",
                             "entry_effective_at_mismatch")
    return effective_at


class TransactionCreate(Strict):
    """A new ledger transaction. Without `ledger_id` the ledger is the entries' accounts' (Modern Treasury's SDK
    never sends one). `effective_date` (midnight UTC) may stand for `effective_at`; both given must agree; so
    must the entries' own `effective_at`, which also stand for it when the transaction gives none. `archived`: a
    record (a declined authorization) written archived, with no balance effect (routines/post.sql)."""

    ledger_entries: Annotated[list[EntryCreate], Meta(min_length=1, max_length=ENTRIES_SCHEMA_MAX)]
    ledger_id: uuid.UUID | None = None
    description: Text | None = None
    status: Status = "pending"
    effective_at: Timestamp | None = None
    effective_date: date | None = None
    external_id: ExternalId | None = None
    ledgerable_type: LedgerableType | None = None
    ledgerable_id: ExternalId | None = None
    metadata: Metadata = {}
    archive_on_balance_lock_failure: bool = False

    def __post_init__(self) -> None:
        check_timestamp("effective_at", self.effective_at)
        if self.effective_date is not None:
            day = midnight_utc(self.effective_date)
            check_timestamp("effective_date", day)
            if self.effective_at is None:
                self.effective_at = day
            elif self.effective_at.astimezone(timezone.utc).date() != self.effective_date:
                raise InvalidRequest("effective_date must be the (UTC) date of effective_at",
                                     "effective_date_mismatch")
        self.effective_at = agreed_effective_at(self.effective_at, self.ledger_entries)
        if (self.ledgerable_type is None) != (self.ledgerable_id is None):
            raise InvalidRequest("ledgerable_type and ledgerable_id go together", "invalid_request")


class TransactionUpdate(Strict):
    """A PATCH of a transaction. `ledger_entries` and `effective_at` change a pending transaction only: its entries
    are replaced (the old ones discarded), the same ones again at the new time when only `effective_at` is given;
    the entries' own `effective_at` must agree with it, and stand for it when it is not given."""

    status: Literal["pending", "posted", "archived"] | UnsetType = UNSET
    description: Text | None | UnsetType = UNSET
    metadata: Metadata | UnsetType = UNSET
    external_id: ExternalId | None | UnsetType = UNSET  # null: cleared
    ledgerable_type: LedgerableType | UnsetType = UNSET
    ledgerable_id: ExternalId | UnsetType = UNSET
    effective_at: Timestamp | UnsetType = UNSET
    ledger_entries: Annotated[list[EntryCreate], Meta(min_length=1, max_length=ENTRIES_SCHEMA_MAX)] | UnsetType = UNSET

    def __post_init__(self) -> None:
        if self.effective_at is not UNSET:
            check_timestamp("effective_at", self.effective_at)
        if self.ledger_entries is not UNSET:
            self.effective_at = agreed_effective_at(self.effective_at, self.ledger_entries)
        if (self.ledgerable_type is UNSET) != (self.ledgerable_id is UNSET):
            raise InvalidRequest("ledgerable_type and ledgerable_id go together", "invalid_request")


class EntryUpdate(Strict):
    """An entry's metadata is all a PATCH may change: its amount, direction and account are immutable."""

    metadata: Metadata | UnsetType = UNSET


class ReversalCreate(Strict):
    """`archived`: a record of a reversal that did not happen (it reverses nothing: routines/post.sql)."""

    description: Text | None = None
    status: Status = "posted"
    effective_at: Timestamp | None = None
    external_id: ExternalId | None = None
    ledgerable_type: LedgerableType | None = None
    ledgerable_id: ExternalId | None = None
    metadata: Metadata = {}

    def __post_init__(self) -> None:
        check_timestamp("effective_at", self.effective_at)
        if (self.ledgerable_type is None) != (self.ledgerable_id is None):
            raise InvalidRequest("ledgerable_type and ledgerable_id go together", "invalid_request")


class PartialPostCreate(Strict):
    """POST /api/ledger_transactions/{id}/partial_post: a posted transaction of these entries (one per entry of the
    pending transaction, same account and direction, an amount no larger) replaces the pending one, archived."""

    posted_ledger_entries: Annotated[list[EntryCreate], Meta(min_length=1, max_length=ENTRIES_SCHEMA_MAX)]
    description: Text | None = None
    effective_at: Timestamp | None = None
    metadata: Metadata = {}

    def __post_init__(self) -> None:
        check_timestamp("effective_at", self.effective_at)
        if any(e.effective_at is not None and e.effective_at != self.effective_at for e in self.posted_ledger_entries):
            raise InvalidRequest("every posted_ledger_entries[].effective_at must be the transaction's effective_at",
                                 "entry_effective_at_mismatch")


class StatementCreate(Strict):
    """POST /api/ledger_account_statements: the account's balances at both ends of [lower, upper)."""

    ledger_account_id: uuid.UUID
    effective_at_lower_bound: Timestamp
    effective_at_upper_bound: Timestamp
    description: Text | None = None
    metadata: Metadata = {}

    def __post_init__(self) -> None:
        check_timestamp("effective_at_lower_bound", self.effective_at_lower_bound)
        check_timestamp("effective_at_upper_bound", self.effective_at_upper_bound)
        if self.effective_at_lower_bound > self.effective_at_upper_bound:
            raise InvalidRequest("effective_at_lower_bound is after effective_at_upper_bound", "invalid_range")


SETTLEMENT_ENTRY_IDS_MAX = 500  # Modern Treasury's bound on ledger_entry_ids per request


class SettlementCreate(Strict):
    """POST /api/ledger_account_settlements. `pending` (the default) or `posted`: the settlement gathers the settled
    account's posted entries effective before effective_at_upper_bound (default: its created_at) that no settlement
    holds, and posts its transaction; `drafting`: entries are attached by hand first."""

    settled_ledger_account_id: uuid.UUID
    contra_ledger_account_id: uuid.UUID
    allow_either_direction: bool | None = False
    description: Text | None = None
    effective_at_upper_bound: Timestamp | None = None
    metadata: Metadata = {}
    skip_settlement_ledger_transaction: bool | None = None
    status: Literal["pending", "posted", "drafting"] | None = "pending"

    def __post_init__(self) -> None:
        check_timestamp("effective_at_upper_bound", self.effective_at_upper_bound)
        if self.skip_settlement_ledger_transaction:
            raise InvalidRequest("skip_settlement_ledger_transaction (migrating settlements) is not supported",
                                 "unsupported_parameter")
        if self.settled_ledger_account_id == self.contra_ledger_account_id:
            raise InvalidRequest("the settled and the contra ledger account must differ", "same_ledger_account")
        if self.status is None:
            self.status = "pending"
        if self.allow_either_direction is None:
            self.allow_either_direction = False


class SettlementUpdate(Strict):
    """PATCH /api/ledger_account_settlements/{id}: finish a draft (pending, posted), post or archive a pending one."""

    status: Literal["pending", "posted", "archived"] | UnsetType = UNSET
    description: Text | None | UnsetType = UNSET
    metadata: Metadata | UnsetType = UNSET
    skip_settlement_ledger_transaction: bool | None = None

    def __post_init__(self) -> None:
        if self.skip_settlement_ledger_transaction:
            raise InvalidRequest("skip_settlement_ledger_transaction (migrating settlements) is not supported",
                                 "unsupported_parameter")


class SettlementEntries(Strict):
    """PATCH / DELETE /api/ledger_account_settlements/{id}/ledger_entries: entries to attach to or detach from a
    drafting settlement."""

    ledger_entry_ids: Annotated[list[uuid.UUID], Meta(min_length=1, max_length=SETTLEMENT_ENTRY_IDS_MAX)]


# ---- webhook endpoints ---------------------------------------------------------------------------------------

EventName = Literal[EVENT_NAMES]  # a name the cell writes (a misspelt one would never be heard of)
WebhookUrl = Annotated[str, Meta(min_length=1, max_length=2048, pattern=STORABLE)]


class WebhookEndpointCreate(Strict):
    """A tenant's webhook endpoint: its URL (https, a public address) and the event names it wants (none: all)."""

    url: WebhookUrl
    event_names: Annotated[list[EventName], Meta(max_length=EVENT_NAMES_MAX)] = []
    description: Text | None = None
    metadata: Metadata = {}


class WebhookEndpointUpdate(Strict):
    url: WebhookUrl | UnsetType = UNSET
    event_names: Annotated[list[EventName], Meta(max_length=EVENT_NAMES_MAX)] | UnsetType = UNSET
    description: Text | None | UnsetType = UNSET
    metadata: Metadata | UnsetType = UNSET
    active: bool | UnsetType = UNSET


# ---- bulk requests -------------------------------------------------------------------------------------------

BULK_RESOURCES_MAX = 1000  # resources per bulk request (CellSettings.bulk_resources_max may lower it)
BULK_FORBIDDEN_ENTRY_FIELDS = ("pending_balance_amount", "posted_balance_amount", "available_balance_amount",
                               "lock_version", "show_resulting_ledger_account_balances")
# Arrays and objects nested in one resource (kept as it came until processed, and stored so): a valid one nests 4
# deep (a transaction, its entries, an entry, a balance lock); far deeper, storing or re-reading it would exhaust the
# interpreter's recursion before a result could say it is invalid.
BULK_RESOURCE_DEPTH_MAX = 32


def nests_deeper(value, most: int) -> bool:
    """Whether arrays and objects nest more than `most` deep in `value` (the value itself one deep), walked without
    recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        if depth > most:
            return True
        stack.extend((x, depth + 1) for x in item)
    return False


class BulkRequestCreate(Strict):
    """Modern Treasury's bulk request, of ledger transactions or accounts. Each resource is the body of one create
    (POST) or update (PATCH, with its `id`) and is checked when it is processed: an invalid one gets a bulk_error
    result, the others go on."""

    action_type: Literal["create", "update"]
    resource_type: Literal["ledger_transaction", "ledger_account"]
    resources: Annotated[list[dict], Meta(min_length=1, max_length=BULK_RESOURCES_MAX)]
    metadata: Metadata = {}

    def __post_init__(self) -> None:
        for i, resource in enumerate(self.resources):
            if nests_deeper(resource, BULK_RESOURCE_DEPTH_MAX):
                raise InvalidRequest(f"resources[{i}] nests arrays or objects more than {BULK_RESOURCE_DEPTH_MAX} "
                                     "deep", "invalid_request")
        # As in Modern Treasury, bulk transactions may not use balance locks, lock_version or resulting balances
        # (they are applied in batches, never checked one by one): the whole request is refused.
        if self.resource_type != "ledger_transaction":
            return
        for i, resource in enumerate(self.resources):
            entries = resource.get("ledger_entries")
            for j, entry in enumerate(entries if isinstance(entries, list) else []):
                if not isinstance(entry, dict):
                    continue
                # `is`, not `in`: 0 == False, and a lock_version of 0 (an account never touched) is a lock
                used = [f for f in BULK_FORBIDDEN_ENTRY_FIELDS
                        if not (entry.get(f) is None or entry.get(f) is False or entry.get(f) == {})]
                if used:
                    raise PostingRejected(f"resources[{i}].ledger_entries[{j}] uses {', '.join(used)}: bulk "
                                           "transactions may not use balance locks, lock_version or resulting "
                                           "balances", "bulk_balance_locks_not_allowed")
