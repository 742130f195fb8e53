"""/api/ledger_entries: read one, list by account / transaction / lock version, ordered."""

from __future__ import annotations

import uuid

from litestar import Request, Response, get, patch
from litestar.params import FromPath

from cell.api import http
from cell.api.openapi import METADATA, ORDER_BY, STATUS, TIME, UUID, array_query, documented, operators, query
from cell.api.params import AMOUNT_VERSION_MAX, Query, date_filters, int_filters, order_of, time_filters
from cell.ledger.commands import EntryUpdate
from cell.ledger.errors import InvalidRequest
from cell.service import entries
from cell.service.common import parse_uuid
from cell.service.views import LedgerEntry

SHOW_BALANCES = query("show_balances", {"type": "boolean"}, "Add each entry's resulting account balances.")


def _statuses(q: Query) -> dict:
    """`status=` or `status[]=` repeated: one status (`status`, which the reads' own paths serve), two (`statuses`),
    or none or all three (no filter)."""
    given = sorted(set(q.take_choices("status", set(STATUS["enum"]))))
    if len(given) == 1:
        return {"status": given[0]}
    return {"statuses": given} if len(given) == 2 else {}


@get("/api/ledger_entries/{entry_id:str}", operation_class=documented(response=LedgerEntry, parameters=[SHOW_BALANCES]))
async def get_entry(request: Request, entry_id: FromPath[str]) -> Response:
    q = http.query(request)
    show = q.take_bool("show_balances")
    q.done()
    return http.json(await entries.get_entry(http.context(request), http.tenant(request),
                                             parse_uuid(entry_id, "ledger entry"), show))


@patch("/api/ledger_entries/{entry_id:str}", operation_class=documented(EntryUpdate, LedgerEntry))
async def update_entry(request: Request, entry_id: FromPath[str]) -> Response:
    _, req = await http.body_of(request, EntryUpdate)
    return http.json(await entries.update_entry(http.context(request), http.tenant(request),
                                                parse_uuid(entry_id, "ledger entry"), req))


@get("/api/ledger_entries", operation_class=documented(response=LedgerEntry, many=True, parameters=[
    query("ledger_account_id", UUID, "Entries of this account."),
    query("ledger_account_category_id", UUID, "Entries on the accounts of this category."),
    query("ledger_transaction_id", UUID, "Entries of this transaction."),
    query("ledger_account_statement_id", UUID, "Exactly the entries of this ledger account statement."),
    query("ledger_account_settlement_id", UUID, "The entries this ledger account settlement settles."),
    query("ledger_account_payout_id", UUID, "ledger_account_settlement_id's former name (Modern Treasury's ledger "
          "account payouts became its settlements): the same filter."),
    query("as_of_lock_version", {"type": "integer", "minimum": 0},
          "With ledger_account_id: entries up to this lock version."),
    query("direction", {"type": "string", "enum": ["credit", "debit"]}, "By direction."),
    query("status", STATUS, "By their transaction's status."),
    array_query("status", STATUS, "Any of these statuses of their transaction."),
    array_query("id", UUID, "Only these entries."),
    *(query(name, operators(TIME), f"{name}[gte]=... and the like.", nested=True)
      for name in ("effective_at", "updated_at")),
    query("effective_date", operators({"type": "string", "format": "date"}),
          "effective_date[gte]=2024-01-01 and the like (UTC dates).", nested=True),
    query("ledger_account_lock_version", operators({"type": "integer", "minimum": 0, "maximum": AMOUNT_VERSION_MAX}),
          "ledger_account_lock_version[lte]=n and the like: entries by their account's lock version after them "
          "(entries not applied yet have none and match no bound).", nested=True),
    query("amount", operators({"type": "integer", "minimum": 0, "maximum": AMOUNT_VERSION_MAX}),
          "amount[gte]=n and the like.", nested=True),
    METADATA,
    query("show_deleted", {"type": "boolean"},
          "Also the entries discarded when a pending transaction's entries were replaced (archived, with "
          "discarded_at)."),
    ORDER_BY,
    SHOW_BALANCES]))
async def list_entries(request: Request) -> Response:
    q = http.query(request)
    per_page, cursor = http.paging(request, q)
    account_id = q.take_uuid("ledger_account_id")
    as_of = q.take_int("as_of_lock_version", 0, AMOUNT_VERSION_MAX)
    if as_of is not None and account_id is None:
        raise InvalidRequest("as_of_lock_version needs ledger_account_id", "invalid_parameter")
    order_by, descending = order_of(q)
    filters = {
        "ledger_account_id": account_id,
        "category_id": q.take_uuid("ledger_account_category_id"),
        "ledger_transaction_id": q.take_uuid("ledger_transaction_id"),
        "as_of_lock_version": as_of,
        "direction": q.take_choice("direction", {"credit", "debit"}),
        **_statuses(q),
        "ids": q.take_uuids("id"),
        "effective_at": time_filters(q, "effective_at") + date_filters(q, "effective_date"),
        "updated_at": time_filters(q, "updated_at"),
        "lock_version": int_filters(q, "ledger_account_lock_version", 0, AMOUNT_VERSION_MAX),
        "amount": int_filters(q, "amount", 0, AMOUNT_VERSION_MAX),
        "metadata": q.take_bracketed("metadata"),
        "statement_id": q.take_uuid("ledger_account_statement_id"),
        "settlement_id": _settlement_id(q),
    }
    filters["show_deleted"] = bool(q.take_bool("show_deleted"))
    show = q.take_bool("show_balances")
    q.done()
    return http.page(await entries.list_entries(
        http.context(request), http.tenant(request), per_page=per_page, order_by=order_by,
        descending=descending, after_cursor=cursor, show_balances=show, **filters))

def _settlement_id(q: Query) -> uuid.UUID | None:
    """ledger_account_settlement_id, or ledger_account_payout_id: its former name in Modern Treasury's API (ledger
    account payouts became ledger account settlements, the same object; the SDK still sends both)."""
    settlement = q.take_uuid("ledger_account_settlement_id")
    payout = q.take_uuid("ledger_account_payout_id")
    if settlement is not None and payout is not None and settlement != payout:
        raise InvalidRequest("ledger_account_payout_id is ledger_account_settlement_id's former name: give one id",
                             "invalid_parameter")
    return settlement or payout


routes = [get_entry, update_entry, list_entries]
