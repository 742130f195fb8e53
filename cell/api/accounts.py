"""/api/ledger_accounts: create, read (current, effective-time, lock-version balances), update, delete, list."""

from __future__ import annotations

from litestar import Request, Response, delete, get, patch, post
from litestar.params import FromPath

from cell.api import http
from cell.api.openapi import (
    BALANCE_FILTERS,
    CURRENCY_EXPONENT_RULE,
    METADATA,
    TIME,
    UUID,
    array_query,
    documented,
    operators,
    query,
)
from cell.api.params import AMOUNT_VERSION_MAX, Query, balance_filters, end_of_date, time_filters
from cell.ledger.commands import AccountCreate, AccountUpdate
from cell.service import accounts
from cell.service.accounts import BalanceQuery
from cell.service.common import parse_uuid
from cell.service.views import LedgerAccount

EFFECTIVE = {"effective_at": TIME, "as_of_date": {"type": "string", "format": "date"},
             "effective_at_lower_bound": TIME, "effective_at_upper_bound": TIME}
BALANCES = query("balances", {"type": "object", "additionalProperties": False, "properties": {
    **EFFECTIVE, "as_of_lock_version": {"type": "integer", "minimum": 0}, "include_unapplied": {"type": "boolean"}}},
    "Which balances: at an effective time (entries at it counted), at the end of a UTC day (as_of_date), in a range "
    "[lower, upper), as of a lock version, or current with queued entries counted (one kind at a time).", nested=True)
LIST_BALANCES = query("balances", {"type": "object", "additionalProperties": False, "properties": EFFECTIVE},
                      "Each account's balances at an effective time, at the end of a UTC day (as_of_date), or in a "
                      "range [lower, upper) of effective time (one kind at a time); current without.", nested=True)


def _balance_query(q: Query, *, one: bool) -> BalanceQuery:
    """The balances a read asks for; lists (`one` false) take the effective-time kinds only."""
    return BalanceQuery(
        effective_at=q.take_time("balances[effective_at]"),
        day_end=end_of_date(q, "balances[as_of_date]"),
        lower=q.take_time("balances[effective_at_lower_bound]"),
        upper=q.take_time("balances[effective_at_upper_bound]"),
        as_of_lock_version=q.take_int("balances[as_of_lock_version]", 0, AMOUNT_VERSION_MAX) if one else None,
        include_unapplied=q.take_bool("balances[include_unapplied]") if one else False)


@post("/api/ledger_accounts", status_code=201,
      operation_class=documented(AccountCreate, LedgerAccount, 201, body_rules=CURRENCY_EXPONENT_RULE))
async def create_account(request: Request) -> Response:
    raw, req = await http.body_of(request, AccountCreate)
    return http.created(await accounts.create_account(http.context(request), http.tenant(request), req,
                                                 http.idem_of(request, raw)))


@get("/api/ledger_accounts/{account_id:str}", operation_class=documented(response=LedgerAccount, parameters=[BALANCES]))
async def get_account(request: Request, account_id: FromPath[str]) -> Response:
    q = http.query(request)
    bq = _balance_query(q, one=True)
    q.done()
    return http.json(await accounts.get_account(http.context(request), http.tenant(request),
                                                parse_uuid(account_id, "ledger account"), bq))


@patch("/api/ledger_accounts/{account_id:str}", operation_class=documented(AccountUpdate, LedgerAccount))
async def update_account(request: Request, account_id: FromPath[str]) -> Response:
    _, req = await http.body_of(request, AccountUpdate)
    return http.json(await accounts.update_account(http.context(request), http.tenant(request),
                                                   parse_uuid(account_id, "ledger account"), req))


@delete("/api/ledger_accounts/{account_id:str}", status_code=200,
        operation_class=documented(response=LedgerAccount))
async def delete_account(request: Request, account_id: FromPath[str]) -> Response:
    """Discards an account no entry was ever written to (422 ledger_account_has_entries otherwise) that no live
    monitor watches nor live category holds (422 ledger_account_in_use): the answer is the account with its
    discarded_at; from then on it is not found."""
    return http.json(await accounts.delete_account(http.context(request), http.tenant(request),
                                                   parse_uuid(account_id, "ledger account")))


@get("/api/ledger_accounts", operation_class=documented(response=LedgerAccount, many=True, parameters=[
    query("ledger_id", UUID, "Accounts of this ledger."),
    query("currency", {"type": "string"}, "Accounts in this currency."),
    query("ledger_account_category_id", UUID, "Accounts in this category, directly or through nested ones."),
    array_query("id", UUID, "Only these accounts."),
    array_query("name", {"type": "string"}, "Accounts of these names."),
    query("external_id", {"type": "string"}, "The account with this external_id (one a ledger)."),
    query("normal_balance", {"type": "string", "enum": ["credit", "debit"]}, "Credit- or debit-normal accounts."),
    *(query(name, operators(TIME), f"{name}[gte]=... and the like.", nested=True)
      for name in ("created_at", "updated_at")),
    METADATA, *BALANCE_FILTERS, LIST_BALANCES]))
async def list_accounts(request: Request) -> Response:
    q = http.query(request)
    per_page, cursor = http.paging(request, q)
    filters = {
        "ledger_id": q.take_uuid("ledger_id"), "currency": q.take("currency"),
        "category_id": q.take_uuid("ledger_account_category_id"), "metadata": q.take_bracketed("metadata"),
        "balance_filters": balance_filters(q), "ids": q.take_uuids("id"), "names": q.take_list("name"),
        "external_id": q.take("external_id"), "normal_balance": q.take_choice("normal_balance", {"credit", "debit"}),
        "created_at": time_filters(q, "created_at"), "updated_at": time_filters(q, "updated_at")}
    balances = _balance_query(q, one=False)
    q.done()
    return http.page(await accounts.list_accounts(http.context(request), http.tenant(request), after_cursor=cursor,
                                                  per_page=per_page, balances=balances, **filters))


routes = [create_account, get_account, update_account, delete_account, list_accounts]
