"""/api/ledger_accounts: create, read (current, effective-time, lock-version balances), update, list."""

from __future__ import annotations

from litestar import Request, Response, get, patch, post
from litestar.params import FromPath

from cell.api import http
from cell.api.openapi import BALANCE_FILTERS, CURRENCY_EXPONENT_RULE, METADATA, TIME, UUID, documented, query
from cell.api.params import AMOUNT_VERSION_MAX, balance_filters
from cell.ledger.commands import AccountCreate, AccountUpdate
from cell.service import accounts
from cell.service.accounts import BalanceQuery
from cell.service.common import parse_uuid
from cell.service.views import LedgerAccount

BALANCES = query("balances", {"type": "object", "additionalProperties": False, "properties": {
    "effective_at": TIME, "effective_at_lower_bound": TIME, "effective_at_upper_bound": TIME,
    "as_of_lock_version": {"type": "integer", "minimum": 0}, "include_unapplied": {"type": "boolean"}}},
    "Which balances: at an effective time, in a range [lower, upper), as of a lock version, or current with "
    "queued entries counted (one kind at a time).", nested=True)


@post("/api/ledger_accounts", status_code=201,
      operation_class=documented(AccountCreate, LedgerAccount, 201, body_rules=CURRENCY_EXPONENT_RULE))
async def create_account(request: Request) -> Response:
    raw, req = await http.body_of(request, AccountCreate)
    return http.created(await accounts.create_account(http.context(request), http.tenant(request), req,
                                                 http.idem_of(request, raw)))


@get("/api/ledger_accounts/{account_id:str}", operation_class=documented(response=LedgerAccount, parameters=[BALANCES]))
async def get_account(request: Request, account_id: FromPath[str]) -> Response:
    q = http.query(request)
    bq = BalanceQuery(
        effective_at=q.take_time("balances[effective_at]"),
        lower=q.take_time("balances[effective_at_lower_bound]"),
        upper=q.take_time("balances[effective_at_upper_bound]"),
        as_of_lock_version=q.take_int("balances[as_of_lock_version]", 0, AMOUNT_VERSION_MAX),
        include_unapplied=q.take_bool("balances[include_unapplied]"),
    )
    q.done()
    return http.json(await accounts.get_account(http.context(request), http.tenant(request),
                                                parse_uuid(account_id, "ledger account"), bq))


@patch("/api/ledger_accounts/{account_id:str}", operation_class=documented(AccountUpdate, LedgerAccount))
async def update_account(request: Request, account_id: FromPath[str]) -> Response:
    _, req = await http.body_of(request, AccountUpdate)
    return http.json(await accounts.update_account(http.context(request), http.tenant(request),
                                                   parse_uuid(account_id, "ledger account"), req))


@get("/api/ledger_accounts", operation_class=documented(response=LedgerAccount, many=True, parameters=[
    query("ledger_id", UUID, "Accounts of this ledger."),
    query("currency", {"type": "string"}, "Accounts in this currency."),
    query("ledger_account_category_id", UUID, "Accounts in this category, directly or through nested ones."),
    METADATA, *BALANCE_FILTERS]))
async def list_accounts(request: Request) -> Response:
    q = http.query(request)
    per_page, cursor = http.paging(request, q)
    ledger_id = q.take_uuid("ledger_id")
    currency = q.take("currency")
    category_id = q.take_uuid("ledger_account_category_id")
    metadata = q.take_bracketed("metadata")
    filters = balance_filters(q)
    q.done()
    return http.page(await accounts.list_accounts(
        http.context(request), http.tenant(request), after_cursor=cursor, per_page=per_page,
        ledger_id=ledger_id, currency=currency, category_id=category_id, metadata=metadata, balance_filters=filters))


routes = [create_account, get_account, update_account, list_accounts]
