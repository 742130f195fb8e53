"""/api/ledger_account_categories: create, read (current or effective-time balances), update, delete, list, and
the accounts and categories nested in one (PUT / DELETE)."""

from __future__ import annotations

from litestar import Request, Response, delete, get, patch, post, put
from litestar.params import FromPath

from cell.api import http
from cell.api.openapi import CURRENCY_EXPONENT_RULE, METADATA, TIME, UUID, array_query, documented, query
from cell.api.params import Query, end_of_date
from cell.ledger.commands import CategoryCreate, CategoryUpdate
from cell.ledger.errors import InvalidRequest
from cell.service import categories
from cell.service.categories import AsOf
from cell.service.common import parse_uuid
from cell.service.views import LedgerAccountCategory

AS_OF_NOTE = ("The balances as of a time count entries at exactly that time, over the accounts the category "
              "holds now.")
BALANCES_AT = query("balances", {"type": "object", "additionalProperties": False, "properties": {
    "effective_at": TIME}}, f"balances[effective_at]: balances as of that effective time. {AS_OF_NOTE}", nested=True)
BALANCES_AT_OR_DATE = query("balances", {"type": "object", "additionalProperties": False, "maxProperties": 1,
                                         "properties": {"effective_at": TIME,
                                                        "as_of_date": {"type": "string", "format": "date"}}},
                            "balances[effective_at] (inclusive), or balances[as_of_date]: at the end of that UTC "
                            f"day. {AS_OF_NOTE}", nested=True)
PATH = "/api/ledger_account_categories"


def _category_id(raw: str):
    return parse_uuid(raw, "ledger account category")


def _as_of(q: Query, *, dates: bool) -> AsOf:
    at = q.take_time("balances[effective_at]")
    day_end = end_of_date(q, "balances[as_of_date]") if dates else None
    if at is not None and day_end is not None:
        raise InvalidRequest("use balances[effective_at] or balances[as_of_date], not both", "conflicting_parameters")
    if day_end is not None:
        return AsOf(day_end, inclusive=False)
    return AsOf(at)


@post(PATH, status_code=201, operation_class=documented(CategoryCreate, LedgerAccountCategory, 201,
                                                         body_rules=CURRENCY_EXPONENT_RULE))
async def create_category(request: Request) -> Response:
    raw, req = await http.body_of(request, CategoryCreate)
    return http.created(await categories.create_category(http.context(request), http.tenant(request), req,
                                                         http.idem_of(request, raw)))


@get(PATH + "/{category_id:str}", operation_class=documented(response=LedgerAccountCategory,
                                                             parameters=[BALANCES_AT_OR_DATE]))
async def get_category(request: Request, category_id: FromPath[str]) -> Response:
    q = http.query(request)
    as_of = _as_of(q, dates=True)
    q.done()
    return http.json(await categories.get_category(http.context(request), http.tenant(request),
                                                   _category_id(category_id), as_of))


@patch(PATH + "/{category_id:str}", operation_class=documented(CategoryUpdate, LedgerAccountCategory))
async def update_category(request: Request, category_id: FromPath[str]) -> Response:
    _, req = await http.body_of(request, CategoryUpdate)
    return http.json(await categories.update_category(http.context(request), http.tenant(request),
                                                      _category_id(category_id), req))


@delete(PATH + "/{category_id:str}", status_code=200, operation_class=documented(response=LedgerAccountCategory))
async def delete_category(request: Request, category_id: FromPath[str]) -> Response:
    return http.json(await categories.delete_category(http.context(request), http.tenant(request),
                                                      _category_id(category_id)))


@get(PATH, operation_class=documented(response=LedgerAccountCategory, many=True, parameters=[
    array_query("id", UUID, "Only these categories."), query("ledger_id", UUID, "Categories of this ledger."),
    query("currency", {"type": "string"}, "Categories in this currency."),
    query("name", {"type": "string"}, "Categories with this name."),
    query("external_id", {"type": "string"}, "The category with this external_id."),
    query("ledger_account_id", UUID, "Categories that hold this account, directly or through nested categories."),
    query("parent_ledger_account_category_id", UUID, "Categories nested directly in this one."),
    METADATA, BALANCES_AT]))
async def list_categories(request: Request) -> Response:
    q = http.query(request)
    per_page, cursor = http.paging(request, q)
    filters = {"ids": q.take_uuids("id"), "ledger_id": q.take_uuid("ledger_id"), "currency": q.take("currency"),
               "name": q.take("name"), "external_id": q.take("external_id"),
               "ledger_account_id": q.take_uuid("ledger_account_id"),
               "parent_id": q.take_uuid("parent_ledger_account_category_id"),
               "metadata": q.take_bracketed("metadata")}
    as_of = _as_of(q, dates=False)
    q.done()
    return http.page(await categories.list_categories(
        http.context(request), http.tenant(request), after_cursor=cursor, per_page=per_page, as_of=as_of, **filters))


# Adding or removing what is already there (or not) changes nothing and succeeds: the calls are idempotent as
# they stand, so the Idempotency-Key the SDK sends with a PUT needs no record.
@put(PATH + "/{category_id:str}/ledger_accounts/{account_id:str}", status_code=204,
     operation_class=documented(status=204))
async def add_account(request: Request, category_id: FromPath[str], account_id: FromPath[str]) -> None:
    await categories.add_account(http.context(request), http.tenant(request), _category_id(category_id),
                                 parse_uuid(account_id, "ledger account"))


@delete(PATH + "/{category_id:str}/ledger_accounts/{account_id:str}", status_code=204,
        operation_class=documented(status=204))
async def remove_account(request: Request, category_id: FromPath[str], account_id: FromPath[str]) -> None:
    await categories.remove_account(http.context(request), http.tenant(request), _category_id(category_id),
                                    parse_uuid(account_id, "ledger account"))


@put(PATH + "/{category_id:str}/ledger_account_categories/{sub_id:str}", status_code=204,
     operation_class=documented(status=204))
async def add_category(request: Request, category_id: FromPath[str], sub_id: FromPath[str]) -> None:
    await categories.add_category(http.context(request), http.tenant(request), _category_id(category_id),
                                  _category_id(sub_id))


@delete(PATH + "/{category_id:str}/ledger_account_categories/{sub_id:str}", status_code=204,
        operation_class=documented(status=204))
async def remove_category(request: Request, category_id: FromPath[str], sub_id: FromPath[str]) -> None:
    await categories.remove_category(http.context(request), http.tenant(request), _category_id(category_id),
                                     _category_id(sub_id))


routes = [create_category, get_category, update_category, delete_category, list_categories, add_account,
          remove_account, add_category, remove_category]
