"""/api/bulk_requests and /api/bulk_results (Modern Treasury's): a batch of ledger transaction or account creates
or updates, processed by the cell's workers, one result per resource."""

from __future__ import annotations

from litestar import Request, Response, get, post
from litestar.params import FromPath

from cell.api import http
from cell.api.openapi import METADATA, UUID, documented, query
from cell.ledger.commands import BULK_RESOURCES_MAX, BulkRequestCreate
from cell.service import bulk
from cell.service.common import parse_uuid
from cell.service.views import BulkRequest, BulkResult

REQUEST_STATUSES = {"pending", "processing", "completed"}
# What a list may filter by: every value Modern Treasury's SDK names, so a customer's filter is never refused; those
# a ledger never makes (deletes, payment orders and the like, a pending result: results are written when done) find
# nothing. (What a request may be is BulkRequestCreate's: a create or update of ledger transactions or accounts.)
LISTED_ACTIONS = {"create", "update", "delete"}
LISTED_RESOURCES = {"ledger_transaction", "ledger_account", "payment_order", "expected_payment", "transaction",
                    "transaction_line_item"}
LISTED_ENTITY_TYPES = LISTED_RESOURCES | {"bulk_error"}
LISTED_RESULT_STATUSES = {"pending", "successful", "failed"}


def _enum(values: set[str]) -> dict:
    return {"type": "string", "enum": sorted(values)}


@post("/api/bulk_requests", status_code=201, operation_class=documented(
    BulkRequestCreate, BulkRequest, 201, body_rules={"properties": {"resources": {"maxItems": BULK_RESOURCES_MAX}}}))
async def create_request(request: Request) -> Response:
    """Taken as `pending`; the workers process it. Transactions that use balance locks, lock_version or resulting
    balances make the whole request a 422 (bulk_balance_locks_not_allowed); any other invalid resource gets a
    bulk_error result."""
    raw, req = await http.body_of(request, BulkRequestCreate)
    return http.created(await bulk.create_request(http.context(request), http.tenant(request), req,
                                                  http.idem_of(request, raw)))


@get("/api/bulk_requests/{request_id:str}", operation_class=documented(response=BulkRequest))
async def get_request(request: Request, request_id: FromPath[str]) -> Response:
    return http.json(await bulk.get_request(http.context(request), http.tenant(request),
                                            parse_uuid(request_id, "bulk request")))


@get("/api/bulk_requests", operation_class=documented(response=BulkRequest, many=True, parameters=[
    query("status", _enum(REQUEST_STATUSES), "By status."),
    query("action_type", _enum(LISTED_ACTIONS), "By action (create or update here: delete finds nothing)."),
    query("resource_type", _enum(LISTED_RESOURCES),
          "By resource type (ledger_transaction or ledger_account here: the others find nothing)."), METADATA]))
async def list_requests(request: Request) -> Response:
    q = http.query(request)
    per_page, cursor = http.paging(request, q)
    filters = {"status": q.take_choice("status", REQUEST_STATUSES),
               "action_type": q.take_choice("action_type", LISTED_ACTIONS),
               "resource_type": q.take_choice("resource_type", LISTED_RESOURCES),
               "metadata": q.take_bracketed("metadata") or None}
    q.done()
    return http.page(await bulk.requests_page(http.context(request), http.tenant(request), after_cursor=cursor,
                                              per_page=per_page, **filters))


@get("/api/bulk_results/{result_id:str}", operation_class=documented(response=BulkResult))
async def get_result(request: Request, result_id: FromPath[str]) -> Response:
    return http.json(await bulk.get_result(http.context(request), http.tenant(request),
                                           parse_uuid(result_id, "bulk result")))


@get("/api/bulk_results", operation_class=documented(response=BulkResult, many=True, parameters=[
    query("request_id", UUID, "The results of this bulk request."),
    query("request_type", _enum({"bulk_request"}), "Always bulk_request."),
    query("entity_type", _enum(LISTED_ENTITY_TYPES),
          "ledger_transaction, ledger_account or bulk_error here (the others find nothing)."),
    query("entity_id", UUID, "The result of this entity."),
    query("status", _enum(LISTED_RESULT_STATUSES),
          "successful or failed (a result is written when its resource is done: pending finds nothing).")]))
async def list_results(request: Request) -> Response:
    q = http.query(request)
    per_page, cursor = http.paging(request, q)
    q.take_choice("request_type", {"bulk_request"})
    filters = {"request_id": q.take_uuid("request_id"),
               "entity_type": q.take_choice("entity_type", LISTED_ENTITY_TYPES),
               "status": q.take_choice("status", LISTED_RESULT_STATUSES), "entity_id": q.take_uuid("entity_id")}
    q.done()
    return http.page(await bulk.results_page(http.context(request), http.tenant(request), after_cursor=cursor,
                                             per_page=per_page, **filters))


routes = [create_request, get_request, list_requests, get_result, list_results]
