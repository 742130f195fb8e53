"""/api/ledger_account_balance_monitors: create, read, update, delete, list."""

from __future__ import annotations

from litestar import Request, Response, delete, get, patch, post
from litestar.params import FromPath

from cell.api import http
from cell.api.openapi import METADATA, UUID, documented, query
from cell.ledger.commands import MonitorCreate, MonitorUpdate
from cell.service import monitors
from cell.service.common import parse_uuid
from cell.service.views import LedgerAccountBalanceMonitor

WHAT = "ledger account balance monitor"


@post("/api/ledger_account_balance_monitors", status_code=201,
      operation_class=documented(MonitorCreate, LedgerAccountBalanceMonitor, 201))
async def create_monitor(request: Request) -> Response:
    raw, req = await http.body_of(request, MonitorCreate)
    return http.created(await monitors.create_monitor(http.context(request), http.tenant(request), req,
                                                      http.idem_of(request, raw)))


@get("/api/ledger_account_balance_monitors/{monitor_id:str}",
     operation_class=documented(response=LedgerAccountBalanceMonitor))
async def get_monitor(request: Request, monitor_id: FromPath[str]) -> Response:
    return http.json(await monitors.get_monitor(http.context(request), http.tenant(request),
                                                parse_uuid(monitor_id, WHAT)))


@patch("/api/ledger_account_balance_monitors/{monitor_id:str}",
       operation_class=documented(MonitorUpdate, LedgerAccountBalanceMonitor))
async def update_monitor(request: Request, monitor_id: FromPath[str]) -> Response:
    _, req = await http.body_of(request, MonitorUpdate)
    return http.json(await monitors.update_monitor(http.context(request), http.tenant(request),
                                                   parse_uuid(monitor_id, WHAT), req))


@delete("/api/ledger_account_balance_monitors/{monitor_id:str}", status_code=200,
        operation_class=documented(response=LedgerAccountBalanceMonitor))
async def delete_monitor(request: Request, monitor_id: FromPath[str]) -> Response:
    return http.json(await monitors.delete_monitor(http.context(request), http.tenant(request),
                                                   parse_uuid(monitor_id, WHAT)))


@get("/api/ledger_account_balance_monitors", operation_class=documented(
    response=LedgerAccountBalanceMonitor, many=True, parameters=[
        query("ledger_account_id", UUID, "Monitors of this account."),
        query("id[]", UUID, "Only these monitors (id[]=a&id[]=b)."), METADATA]))
async def list_monitors(request: Request) -> Response:
    q = http.query(request)
    per_page, cursor = http.paging(request, q)
    filters = {"ledger_account_id": q.take_uuid("ledger_account_id"), "ids": q.take_uuids("id"),
               "metadata": q.take_bracketed("metadata")}
    q.done()
    return http.page(await monitors.list_monitors(http.context(request), http.tenant(request), after_cursor=cursor,
                                                  per_page=per_page, **filters))


routes = [create_monitor, get_monitor, update_monitor, delete_monitor, list_monitors]
