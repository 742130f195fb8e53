"""/api/ledgers: create, read, update, delete, list."""

from __future__ import annotations

from litestar import Request, Response, delete, get, patch, post
from litestar.params import FromPath

from cell.api import http
from cell.api.openapi import METADATA, TIME, UUID, array_query, documented, operators, query
from cell.api.params import time_filters
from cell.ledger.commands import LedgerCreate, LedgerUpdate
from cell.service import ledgers
from cell.service.common import parse_uuid
from cell.service.views import Ledger


@post("/api/ledgers", status_code=201, operation_class=documented(LedgerCreate, Ledger, 201))
async def create_ledger(request: Request) -> Response:
    raw, req = await http.body_of(request, LedgerCreate)
    return http.created(await ledgers.create_ledger(http.context(request), http.tenant(request), req,
                                               http.idem_of(request, raw)))


@get("/api/ledgers/{ledger_id:str}", operation_class=documented(response=Ledger))
async def get_ledger(request: Request, ledger_id: FromPath[str]) -> Response:
    return http.json(await ledgers.get_ledger(http.context(request), http.tenant(request),
                                              parse_uuid(ledger_id, "ledger")))


@patch("/api/ledgers/{ledger_id:str}", operation_class=documented(LedgerUpdate, Ledger))
async def update_ledger(request: Request, ledger_id: FromPath[str]) -> Response:
    _, req = await http.body_of(request, LedgerUpdate)
    return http.json(await ledgers.update_ledger(http.context(request), http.tenant(request),
                                                 parse_uuid(ledger_id, "ledger"), req))


@delete("/api/ledgers/{ledger_id:str}", status_code=200, operation_class=documented(response=Ledger))
async def delete_ledger(request: Request, ledger_id: FromPath[str]) -> Response:
    """Discards a ledger without accounts or categories (422 ledger_not_empty otherwise): the answer is the ledger
    with its discarded_at; from then on it is not found."""
    return http.json(await ledgers.delete_ledger(http.context(request), http.tenant(request),
                                                 parse_uuid(ledger_id, "ledger")))


@get("/api/ledgers", operation_class=documented(response=Ledger, many=True, parameters=[
    METADATA, array_query("id", UUID, "Only these ledgers."),
    query("updated_at", operators(TIME), "updated_at[gte]=... and the like.", nested=True)]))
async def list_ledgers(request: Request) -> Response:
    q = http.query(request)
    per_page, cursor = http.paging(request, q)
    metadata = q.take_bracketed("metadata")
    ids = q.take_uuids("id")
    updated_at = time_filters(q, "updated_at")
    q.done()
    return http.page(await ledgers.list_ledgers(http.context(request), http.tenant(request),
                                                after_cursor=cursor, per_page=per_page,
                                                metadata=metadata, ids=ids, updated_at=updated_at))


routes = [create_ledger, get_ledger, update_ledger, delete_ledger, list_ledgers]
