"""The API's answers (Modern Treasury's field names) as typed values, and how each is built from the store's rows.

The services return these; the API encodes them once. They are also the OpenAPI document's response types:
tests/integration/cell/test_response_shapes.py decodes real answers into them with unknown fields forbidden.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timezone
from typing import Any, Literal

import msgspec
from msgspec import Struct

from cell.ledger.commands import Timestamp  # an RFC 3339 date-time with its offset
from cell.ledger.models import (
    Account,
    AlertField,
    AlertOperator,
    Direction,
    EntryRequest,
    NormalBalance,
    TransactionState,
)
from cell.ledger.models import Status as TxnStatus


class Shape(Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class Balance(Shape):
    credits: int
    debits: int
    amount: int
    # The same in full precision, as strings (the SDK's LedgerBalance requires them: a client past 2^53 reads these)
    credits_string: str
    debits_string: str
    amount_string: str
    currency: str
    currency_exponent: int


class Balances(Shape):
    pending_balance: Balance
    posted_balance: Balance
    available_balance: Balance


class AccountBalances(Balances):
    """An account's balances; read over a range of effective time, its bounds (null otherwise)."""

    effective_at_lower_bound: Timestamp | None = None
    effective_at_upper_bound: Timestamp | None = None


class Ping(Shape):
    ping: str


class Ledger(Shape):
    id: uuid.UUID
    object: Literal["ledger"]
    live_mode: bool
    name: str
    description: str | None
    metadata: dict[str, str]
    discarded_at: Timestamp | None  # set in a delete's answer only: a discarded ledger is not found (0205)
    created_at: Timestamp
    updated_at: Timestamp


class LedgerAccount(Shape):
    id: uuid.UUID
    object: Literal["ledger_account"]
    live_mode: bool
    name: str
    description: str | None
    ledger_id: uuid.UUID
    normal_balance: NormalBalance
    currency: str
    currency_exponent: int
    metadata: dict[str, str]
    sync_only: bool
    external_id: str | None
    ledgerable_type: str | None
    ledgerable_id: str | None
    lock_version: int
    balances: AccountBalances
    discarded_at: Timestamp | None  # set in a delete's answer only: a discarded account is not found (0204)
    created_at: Timestamp
    updated_at: Timestamp


class LedgerAccountCategory(Shape):
    """A category; its balances are the sums over every account it reaches, under its own normal balance."""

    id: uuid.UUID
    object: Literal["ledger_account_category"]
    live_mode: bool
    name: str
    description: str | None
    external_id: str | None
    ledger_id: uuid.UUID
    normal_balance: NormalBalance
    metadata: dict[str, str]
    balances: Balances
    discarded_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp


class LedgerEntry(Shape):
    id: uuid.UUID
    object: Literal["ledger_entry"]
    live_mode: bool
    amount: int
    amount_string: str  # `amount` in full precision (the SDK's field for amounts past 2^53)
    direction: Direction
    status: TxnStatus
    ledger_account_id: uuid.UUID
    # null until an async entry is applied to its account's balance
    ledger_account_lock_version: int | None
    ledger_account_currency: str
    ledger_account_currency_exponent: int
    ledger_transaction_id: uuid.UUID
    effective_at: Timestamp
    metadata: dict[str, str]
    discarded_at: Timestamp | None
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
    archived_reason: str | None
    ledgerable_type: str | None
    ledgerable_id: str | None
    partially_posts_ledger_transaction_id: uuid.UUID | None
    reverses_ledger_transaction_id: uuid.UUID | None
    reversed_by_ledger_transaction_id: uuid.UUID | None
    version: int
    created_at: Timestamp
    updated_at: Timestamp


class LedgerTransactionVersion(Shape):
    """The transaction as it was at `version`; `hash` chains each version to the one before (SHA-256)."""

    id: uuid.UUID
    object: Literal["ledger_transaction_version"]
    live_mode: bool
    ledger_transaction_id: uuid.UUID
    version: int
    hash: str
    ledger_id: uuid.UUID
    description: str | None
    status: TxnStatus
    effective_at: Timestamp
    effective_date: date
    external_id: str | None
    metadata: dict[str, str]
    reverses_ledger_transaction_id: uuid.UUID | None
    # Each entry as the transaction held it at this version, as the SDK's version entries are: its status the
    # version's, no lock version or resulting balances (those are the entry's now, GET /api/ledger_entries)
    ledger_entries: list[LedgerEntry]
    created_at: Timestamp
    # absent from the snapshots of versions written before these fields existed
    ledgerable_type: str | None = None
    ledgerable_id: str | None = None
    # not in the snapshot (not hashed): the transaction's, as they held at this version
    posted_at: Timestamp | None = None  # when it was posted, on a posted version
    archived_reason: str | None = None  # why it was archived, on an archived version
    partially_posts_ledger_transaction_id: uuid.UUID | None = None
    reversed_by_ledger_transaction_id: uuid.UUID | None = None  # on the current version: reversals add none


class AlertCondition(Shape):
    field: AlertField
    operator: AlertOperator
    value: int


class BalanceState(Shape):
    balances: Balances
    ledger_account_lock_version: int
    triggered: bool


class LedgerAccountBalanceMonitor(Shape):
    id: uuid.UUID
    object: Literal["ledger_account_balance_monitor"]
    live_mode: bool
    ledger_account_id: uuid.UUID
    description: str | None
    alert_condition: AlertCondition
    current_ledger_account_balance_state: BalanceState
    metadata: dict[str, str]
    discarded_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp


class LedgerAccountStatement(Shape):
    """An account's balances at both ends of [effective_at_lower_bound, effective_at_upper_bound), as of
    ledger_account_lock_version: immutable."""

    id: uuid.UUID
    object: Literal["ledger_account_statement"]
    live_mode: bool
    ledger_id: uuid.UUID
    ledger_account_id: uuid.UUID
    ledger_account_lock_version: int
    ledger_account_normal_balance: NormalBalance
    description: str | None
    metadata: dict[str, str]
    effective_at_lower_bound: Timestamp
    effective_at_upper_bound: Timestamp
    starting_balance: Balances
    ending_balance: Balances
    created_at: Timestamp
    updated_at: Timestamp


class Event(Shape):
    """One change of a ledger object, `data` the object as this API renders it (at the change)."""

    id: uuid.UUID
    object: Literal["event"]
    live_mode: bool
    resource: str
    event_name: str
    entity_id: uuid.UUID
    data: dict[str, Any]  # a LedgerTransaction, LedgerAccount or LedgerAccountBalanceMonitor, by `resource`
    event_time: Timestamp
    created_at: Timestamp
    updated_at: Timestamp


class LedgerAccountSettlement(Shape):
    """A settlement of the settled account's entries against the contra account, by one ledger transaction."""

    id: uuid.UUID
    object: Literal["ledger_account_settlement"]
    live_mode: bool
    ledger_id: uuid.UUID
    settled_ledger_account_id: uuid.UUID
    contra_ledger_account_id: uuid.UUID
    status: Literal["drafting", "pending", "posted", "archived"]
    amount: int | None
    currency: str
    currency_exponent: int
    settlement_entry_direction: Direction | None
    effective_at_upper_bound: Timestamp
    ledger_transaction_id: uuid.UUID | None
    allow_either_direction: bool
    description: str | None
    metadata: dict[str, str]
    created_at: Timestamp
    updated_at: Timestamp


def utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(timezone.utc)


def balances(row, currency: str, exponent: int, kind: type[Balances] = Balances, **bounds) -> Balances:
    """Running sums and the amounts `ledger_balances` computed from them (columns of one row), as a `kind` of
    Balances with its own fields (`bounds`)."""
    return kind(pending_balance=_balance(row, "pending_", currency, exponent),
                posted_balance=_balance(row, "posted_", currency, exponent),
                available_balance=_balance(row, "available_", currency, exponent), **bounds)


def _balance(row, which: str, currency: str, exponent: int) -> Balance:
    credits, debits, amount = row[which + "credits"], row[which + "debits"], row[which + "amount"]
    return Balance(credits=credits, debits=debits, amount=amount, credits_string=str(credits),
                   debits_string=str(debits), amount_string=str(amount), currency=currency,
                   currency_exponent=exponent)


def ledger(row) -> Ledger:
    return Ledger(id=row["id"], object="ledger", live_mode=True, name=row["name"], description=row["description"],
                  metadata=row["metadata"], discarded_at=None, created_at=utc(row["created_at"]),
                  updated_at=utc(row["updated_at"]))


def account(row, sums=None, lock_version: int | None = None, lower: datetime | None = None,
            upper: datetime | None = None) -> LedgerAccount:
    """An account row; `sums` (a row of running sums and amounts) and `lock_version` when the balances asked for
    are not the current ones, `lower` and `upper` when they are over that range of effective time."""
    return LedgerAccount(
        id=row["id"], object="ledger_account", live_mode=True, name=row["name"], description=row["description"],
        ledger_id=row["ledger_id"], normal_balance=row["normal_balance"], currency=row["currency"],
        currency_exponent=row["currency_exponent"], metadata=row["metadata"], sync_only=row["sync_only"],
        external_id=row["external_id"], ledgerable_type=row["ledgerable_type"], ledgerable_id=row["ledgerable_id"],
        lock_version=row["lock_version"] if lock_version is None else lock_version,
        balances=balances(row if sums is None else sums, row["currency"], row["currency_exponent"],
                          AccountBalances, effective_at_lower_bound=_utc_or_none(lower),
                          effective_at_upper_bound=_utc_or_none(upper)),
        discarded_at=None, created_at=utc(row["created_at"]), updated_at=utc(row["updated_at"]))


def category(row) -> LedgerAccountCategory:
    """A category row with its running sums and amounts (store.categories)."""
    return LedgerAccountCategory(
        id=row["id"], object="ledger_account_category", live_mode=True, name=row["name"],
        description=row["description"], external_id=row["external_id"], ledger_id=row["ledger_id"],
        normal_balance=row["normal_balance"], metadata=row["metadata"],
        balances=balances(row, row["currency"], row["currency_exponent"]),
        discarded_at=_utc_or_none(row["discarded_at"]), created_at=utc(row["created_at"]),
        updated_at=utc(row["updated_at"]))


def entry(row, show_balances: bool) -> LedgerEntry:
    resulting = None
    if show_balances and row["lock_version"] is not None:
        resulting = balances(row, row["currency"], row["currency_exponent"])
    return LedgerEntry(
        id=row["id"], object="ledger_entry", live_mode=True, amount=row["amount"], amount_string=str(row["amount"]),
        direction=row["direction"], metadata=row["metadata"], discarded_at=_utc_or_none(row.get("discarded_at")),
        status=row["status"], ledger_account_id=row["ledger_account_id"],
        ledger_account_lock_version=row["lock_version"], ledger_account_currency=row["currency"],
        ledger_account_currency_exponent=row["currency_exponent"], ledger_transaction_id=row["transaction_id"],
        effective_at=utc(row["effective_at"]), resulting_ledger_account_balances=resulting,
        created_at=utc(row["created_at"]), updated_at=utc(row.get("updated_at") or row["created_at"]))


def transaction(row, entries: list[LedgerEntry]) -> LedgerTransaction:
    effective_at = utc(row["effective_at"])
    return LedgerTransaction(
        id=row["id"], object="ledger_transaction", live_mode=True, ledger_id=row["ledger_id"],
        description=row["description"], status=row["status"], effective_at=effective_at,
        effective_date=effective_at.date(), external_id=row["external_id"], metadata=row["metadata"],
        ledger_entries=entries, posted_at=_utc_or_none(row["posted_at"]),
        archived_at=_utc_or_none(row["archived_at"]), archived_reason=row["archived_reason"],
        ledgerable_type=row["ledgerable_type"], ledgerable_id=row["ledgerable_id"],
        partially_posts_ledger_transaction_id=row["partially_posts_id"],
        reverses_ledger_transaction_id=row["reverses_id"],
        reversed_by_ledger_transaction_id=row["reversed_by_id"], version=row["version"],
        created_at=utc(row["created_at"]), updated_at=utc(row["updated_at"]))


def unwritten_transaction(state: TransactionState, entries: list[EntryRequest], accounts: dict[str, Account],
                          partially_posts_id: uuid.UUID | None, at: datetime) -> LedgerTransaction:
    """A transaction about to be written, from its state, the entries asked for (in the order of its entries) and
    their accounts: as `transaction` and `entry` render its rows once written at `at`, built without the rows (what
    the database decides, views.stamp_post's to stamp)."""
    effective_at = utc(state.effective_at)
    status, transaction_id = state.status, state.id
    rendered = []
    for new, e in zip(state.ledger_entries, entries):
        account = accounts[e.ledger_account_id]
        rendered.append(LedgerEntry(
            id=new.id, object="ledger_entry", live_mode=True, amount=e.amount, amount_string=str(e.amount),
            direction=e.direction, metadata=e.metadata, discarded_at=None, status=status,
            ledger_account_id=new.ledger_account_id, ledger_account_lock_version=None,
            ledger_account_currency=account.currency, ledger_account_currency_exponent=account.currency_exponent,
            ledger_transaction_id=transaction_id, effective_at=effective_at, resulting_ledger_account_balances=None,
            created_at=at, updated_at=at))
    return LedgerTransaction(
        id=transaction_id, object="ledger_transaction", live_mode=True, ledger_id=state.ledger_id,
        description=state.description, status=status, effective_at=effective_at, effective_date=effective_at.date(),
        external_id=state.external_id, metadata=state.metadata, ledger_entries=rendered, posted_at=None,
        archived_at=None, archived_reason=None, ledgerable_type=state.ledgerable_type,
        ledgerable_id=state.ledgerable_id, partially_posts_ledger_transaction_id=partially_posts_id,
        reverses_ledger_transaction_id=state.reverses_ledger_transaction_id, reversed_by_ledger_transaction_id=None,
        version=1, created_at=at, updated_at=at)


def statement(row) -> LedgerAccountStatement:
    """A statement row with its starting_* and ending_* sums and amounts."""

    def at(prefix: str) -> Balances:
        sums = {key[len(prefix):]: row[key] for key in row.keys() if key.startswith(prefix)}
        return balances(sums, row["currency"], row["currency_exponent"])

    created = utc(row["created_at"])
    return LedgerAccountStatement(
        id=row["id"], object="ledger_account_statement", live_mode=True, ledger_id=row["ledger_id"],
        ledger_account_id=row["ledger_account_id"], ledger_account_lock_version=row["ledger_account_lock_version"],
        ledger_account_normal_balance=row["normal_balance"], description=row["description"],
        metadata=row["metadata"], effective_at_lower_bound=utc(row["effective_at_lower_bound"]),
        effective_at_upper_bound=utc(row["effective_at_upper_bound"]), starting_balance=at("starting_"),
        ending_balance=at("ending_"), created_at=created, updated_at=created)


def settlement(row) -> LedgerAccountSettlement:
    return LedgerAccountSettlement(
        id=row["id"], object="ledger_account_settlement", live_mode=True, ledger_id=row["ledger_id"],
        settled_ledger_account_id=row["settled_ledger_account_id"],
        contra_ledger_account_id=row["contra_ledger_account_id"], status=row["status"], amount=row["amount"],
        currency=row["currency"], currency_exponent=row["currency_exponent"],
        settlement_entry_direction=row["settlement_entry_direction"],
        effective_at_upper_bound=utc(row["effective_at_upper_bound"]),
        ledger_transaction_id=row["ledger_transaction_id"], allow_either_direction=row["allow_either_direction"],
        description=row["description"], metadata=row["metadata"], created_at=utc(row["created_at"]),
        updated_at=utc(row["updated_at"]))


def version(row) -> LedgerTransactionVersion:
    """A stored version: its snapshot (TransactionState's JSON) and where it stands in the audit chain; its entries
    rendered with what `ledger_version_entries` read of them (`row["entries"]`, by id)."""
    snapshot = row["snapshot"]
    effective_at = datetime.fromisoformat(snapshot["effective_at"])
    entries = []
    for e in snapshot["ledger_entries"]:
        facts = row["entries"][e["id"]]
        entries.append(entry({
            "id": uuid.UUID(e["id"]), "amount": e["amount"], "direction": e["direction"], "metadata": facts["metadata"],
            "status": snapshot["status"], "ledger_account_id": uuid.UUID(e["ledger_account_id"]), "lock_version": None,
            "currency": facts["currency"], "currency_exponent": facts["currency_exponent"],
            "transaction_id": row["transaction_id"], "effective_at": effective_at,
            "created_at": datetime.fromisoformat(facts["created_at"])}, False))
    shown = msgspec.convert({**snapshot, "ledger_entries": [],
                             "id": str(uuid.uuid5(row["transaction_id"], str(row["version"]))),
                             "object": "ledger_transaction_version", "live_mode": True,
                             "effective_date": utc(effective_at).date(),
                             "ledger_transaction_id": str(row["transaction_id"]), "version": row["version"],
                             "hash": row["hash"].hex(), "created_at": utc(row["created_at"])},
                            LedgerTransactionVersion)
    status, current = snapshot["status"], row["version"] == row["current_version"]
    return msgspec.structs.replace(
        shown, ledger_entries=entries, partially_posts_ledger_transaction_id=row["partially_posts_id"],
        posted_at=_utc_or_none(row["posted_at"]) if status == "posted" else None,
        archived_reason=row["archived_reason"] if status == "archived" else None,
        reversed_by_ledger_transaction_id=row["reversed_by_id"] if current else None)


def balance_monitor(row, state) -> LedgerAccountBalanceMonitor:
    """A monitor row; `state`: the account's running sums and amounts (the columns `balances` reads), currency,
    currency_exponent, lock_version, and the monitor's `triggered` there."""
    return LedgerAccountBalanceMonitor(
        id=row["id"], object="ledger_account_balance_monitor", live_mode=True,
        ledger_account_id=row["ledger_account_id"], description=row["description"],
        alert_condition=AlertCondition(field=row["alert_field"], operator=row["alert_operator"],
                                       value=row["alert_value"]),
        current_ledger_account_balance_state=BalanceState(
            balances=balances(state, state["currency"], state["currency_exponent"]),
            ledger_account_lock_version=state["lock_version"], triggered=state["triggered"]),
        metadata=row["metadata"], discarded_at=_utc_or_none(row["discarded_at"]),
        created_at=utc(row["created_at"]), updated_at=utc(row["updated_at"]))


def stamp_post(view: LedgerTransaction, at: datetime, applied: dict[str, dict], archived_reason: str | None,
               show: frozenset = frozenset()) -> LedgerTransaction:
    """A transaction rendered before its posting (`view`), as `ledger_post` wrote it: created at `at` (the commit
    time), its entries applied now with their lock versions (`applied`: results by entry id, resulting balances
    shown for the entry ids in `show`), archived instead when a balance lock failed (`archived_reason`)."""
    at = utc(at)
    status = "archived" if archived_reason else view.status
    entries = _written(view.ledger_entries, at, status, applied, show)
    return msgspec.structs.replace(
        view, status=status, ledger_entries=entries, created_at=at, updated_at=at,
        posted_at=at if status == "posted" else None, archived_at=at if status == "archived" else None,
        archived_reason=archived_reason)


def _written(entries: list[LedgerEntry], at: datetime, status: str, applied: dict[str, dict],
             show: frozenset = frozenset()) -> list[LedgerEntry]:
    """Entries rendered before their routine wrote them, as written at `at` (`applied`: stamp_post's)."""
    written = []
    for e in entries:
        r = applied.get(str(e.id)) if applied else None  # an async posting applies nothing now: no id to format
        written.append(msgspec.structs.replace(
            e, status=status, created_at=at, updated_at=at,
            ledger_account_lock_version=r["lock_version"] if r else None,
            resulting_ledger_account_balances=(balances(r, e.ledger_account_currency,
                                                        e.ledger_account_currency_exponent)
                                               if r and e.id in show else None)))
    return written


def stamp_replace(view: LedgerTransaction, at: datetime, applied: dict[str, dict]) -> LedgerTransaction:
    """A pending transaction rendered before its entries were replaced (`view`, with the new entries) as
    `ledger_replace_entries` wrote it at `at`: updated then, its entries written then (`applied`: stamp_post's)."""
    at = utc(at)
    return msgspec.structs.replace(view, updated_at=at, ledger_entries=_written(view.ledger_entries, at, view.status,
                                                                                applied))


def stamp_update(view: LedgerTransaction, at: datetime) -> LedgerTransaction:
    """A transaction rendered before a change (`view`, with the change) as the change wrote it at `at`: updated then,
    and posted or archived then if that is what the change did."""
    at = utc(at)
    return msgspec.structs.replace(
        view, updated_at=at,
        posted_at=view.posted_at or (at if view.status == "posted" else None),
        archived_at=view.archived_at or (at if view.status == "archived" else None))


class WebhookEndpoint(Shape):
    """A tenant's webhook endpoint. `webhook_key` (the X-Signature HMAC key) only in the answers that make it
    (create, rotate_key): it is shown once."""

    id: uuid.UUID
    object: Literal["webhook_endpoint"]
    live_mode: bool
    url: str
    event_names: list[str]
    description: str | None
    metadata: dict[str, str]
    active: bool
    created_at: Timestamp
    updated_at: Timestamp
    webhook_key: str | None = None


class WebhookDelivery(Shape):
    """One event's delivery to one endpoint; `id` is the X-Webhook-ID of its every attempt."""

    id: uuid.UUID
    object: Literal["webhook_delivery"]
    endpoint_id: uuid.UUID
    url: str
    event_id: uuid.UUID
    event_name: str
    entity_id: uuid.UUID
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    next_attempt_at: Timestamp | None
    last_attempt_at: Timestamp | None
    last_status_code: int | None
    last_error: str | None
    created_at: Timestamp
    updated_at: Timestamp


def webhook_endpoint(row, key: str | None = None) -> WebhookEndpoint:
    return WebhookEndpoint(id=row["id"], object="webhook_endpoint", live_mode=True, url=row["url"],
                           event_names=list(row["event_names"]), description=row["description"],
                           metadata=row["metadata"], active=row["active"], created_at=utc(row["created_at"]),
                           updated_at=utc(row["updated_at"]), webhook_key=key)


def webhook_delivery(row) -> WebhookDelivery:
    return WebhookDelivery(
        id=row["id"], object="webhook_delivery", endpoint_id=row["endpoint_id"], url=row["url"],
        event_id=row["event_id"], event_name=row["event_name"], entity_id=row["entity_id"], status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=utc(row["next_attempt_at"]) if row["status"] == "pending" and not row["held"] else None,
        last_attempt_at=_utc_or_none(row["last_attempt_at"]), last_status_code=row["last_status_code"],
        last_error=row["last_error"], created_at=utc(row["created_at"]), updated_at=utc(row["updated_at"]))


class BulkRequest(Shape):
    id: uuid.UUID
    object: Literal["bulk_request"]
    live_mode: bool
    action_type: Literal["create", "update"]
    resource_type: Literal["ledger_transaction", "ledger_account"]
    status: Literal["pending", "processing", "completed"]
    metadata: dict[str, str]
    total_resource_count: int
    success_result_count: int
    failed_result_count: int
    created_at: Timestamp
    updated_at: Timestamp


class BulkRequestError(Shape):
    code: str | None
    message: str | None
    parameter: str | None


class BulkError(Shape):
    """A resource's failure: the errors its request would have had alone."""

    id: uuid.UUID
    object: Literal["bulk_error"]
    live_mode: bool
    request_errors: list[BulkRequestError]
    created_at: Timestamp
    updated_at: Timestamp


class BulkResult(Shape):
    """One resource's outcome: `entity` is the ledger transaction or account made or changed (as GET renders it),
    or a bulk_error."""

    id: uuid.UUID
    object: Literal["bulk_result"]
    live_mode: bool
    request_id: uuid.UUID
    request_type: Literal["bulk_request"]
    request_params: dict | None
    entity_type: Literal["ledger_transaction", "ledger_account", "bulk_error"]
    entity_id: uuid.UUID
    entity: dict
    status: Literal["successful", "failed"]
    created_at: Timestamp
    updated_at: Timestamp


def bulk_request(row) -> BulkRequest:
    """A request's row; an open one's counts so far are `successes` / `failures` when the read counted them."""
    done = row["status"] == "completed" or row.get("successes") is None
    return BulkRequest(id=row["id"], object="bulk_request", live_mode=True, action_type=row["action_type"],
                       resource_type=row["resource_type"], status=row["status"], metadata=row["metadata"],
                       total_resource_count=row["total_resource_count"],
                       success_result_count=row["success_result_count"] if done else row["successes"],
                       failed_result_count=row["failed_result_count"] if done else row["failures"],
                       created_at=utc(row["created_at"]),
                       updated_at=utc(row["updated_at"]))


def bulk_result(row) -> BulkResult:
    return BulkResult(id=row["id"], object="bulk_result", live_mode=True, request_id=row["request_id"],
                      request_type="bulk_request", request_params=row["request_params"],
                      entity_type=row["entity_type"], entity_id=row["entity_id"], entity=row["entity"],
                      status=row["status"], created_at=utc(row["created_at"]), updated_at=utc(row["updated_at"]))
