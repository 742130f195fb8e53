"""/api/events: the ordered stream of changes (Modern Treasury's events), read and listed by position."""

from __future__ import annotations

from litestar import Request, Response, get
from litestar.params import FromPath

from cell.api import http
from cell.api.openapi import TIME, UUID, documented, query
from cell.service import events
from cell.service.common import parse_uuid
from cell.service.views import Event

NAME_LENGTH_MAX = 128


@get("/api/events/{event_id:str}", operation_class=documented(response=Event))
async def get_event(request: Request, event_id: FromPath[str]) -> Response:
    return http.json(await events.get_event(http.context(request), http.tenant(request), parse_uuid(event_id, "event")))


@get("/api/events", operation_class=documented(response=Event, many=True, parameters=[
    query("entity_id", UUID, "Events of this object."),
    query("event_name", {"type": "string", "maxLength": NAME_LENGTH_MAX}, "Events of this name "
          "(ledger_transaction.created, balance_monitor.triggered, ...)."),
    query("resource", {"type": "string", "maxLength": NAME_LENGTH_MAX}, "Events of this kind of object "
          "(ledger, ledger_account, ledger_account_category, ledger_transaction, ledger_account_balance_monitor, "
          "ledger_account_statement, ledger_account_settlement)."),
    query("event_time_start", TIME, "Events at or after this time."),
    query("event_time_end", TIME, "Events at or before this time.")]))
async def list_events(request: Request) -> Response:
    """In stream order (position). A page that shows events carries X-After-Cursor even when it is the last: follow
    it to see each later event once, in order."""
    q = http.query(request)
    per_page, cursor = http.paging(request, q)
    filters = {"entity_id": q.take_uuid("entity_id"), "event_name": q.take_text("event_name", NAME_LENGTH_MAX),
               "resource": q.take_text("resource", NAME_LENGTH_MAX),
               "event_time_start": q.take_time("event_time_start"), "event_time_end": q.take_time("event_time_end")}
    q.done()
    return http.page(await events.list_events(http.context(request), http.tenant(request), after_cursor=cursor,
                                              per_page=per_page, **filters))


routes = [get_event, list_events]
