"""/api/ledger_account_settlements: create, read, update (the status lifecycle), list, and attaching / detaching
entries while drafting (/ledger_entries, the SDK's account_entries)."""

from __future__ import annotations

from litestar import Request, Response, delete, get, patch, post
from litestar.params import FromPath

from cell.api import http
from cell.api.openapi import METADATA, TIME, UUID, array_query, documented, operators, query
from cell.api.params import time_filters
from cell.ledger.commands import SETTLEMENT_ENTRY_IDS_MAX, SettlementCreate, SettlementEntries, SettlementUpdate
from cell.service import settlements
from cell.service.common import parse_uuid
from cell.service.views import LedgerAccountSettlement

_ENTRY_IDS = {"properties": {"ledger_entry_ids": {"maxItems": SETTLEMENT_ENTRY_IDS_MAX}}}


@post("/api/ledger_account_settlements", status_code=201,
      operation_class=documented(SettlementCreate, LedgerAccountSettlement, 201))
async def create_settlement(request: Request) -> Response:
    raw, req = await http.body_of(request, SettlementCreate)
    return http.created(await settlements.create_settlement(http.context(request), http.tenant(request), req,
                                                            http.idem_of(request, raw)))


@get("/api/ledger_account_settlements/{settlement_id:str}",
     operation_class=documented(response=LedgerAccountSettlement))
async def get_settlement(request: Request, settlement_id: FromPath[str]) -> Response:
    return http.json(await settlements.get_settlement(http.context(request), http.tenant(request),
                                                      parse_uuid(settlement_id, "ledger account settlement")))


@patch("/api/ledger_account_settlements/{settlement_id:str}",
       operation_class=documented(SettlementUpdate, LedgerAccountSettlement))
async def update_settlement(request: Request, settlement_id: FromPath[str]) -> Response:
    _, req = await http.body_of(request, SettlementUpdate)
    return http.json(await settlements.update_settlement(http.context(request), http.tenant(request),
                                                         parse_uuid(settlement_id, "ledger account settlement"), req))


@patch("/api/ledger_account_settlements/{settlement_id:str}/ledger_entries",
       operation_class=documented(SettlementEntries, LedgerAccountSettlement, body_rules=_ENTRY_IDS))
async def attach_entries(request: Request, settlement_id: FromPath[str]) -> Response:
    return await _change_entries(request, settlement_id, attach=True)


@delete("/api/ledger_account_settlements/{settlement_id:str}/ledger_entries", status_code=200,
        operation_class=documented(SettlementEntries, LedgerAccountSettlement, body_rules=_ENTRY_IDS))
async def detach_entries(request: Request, settlement_id: FromPath[str]) -> Response:
    return await _change_entries(request, settlement_id, attach=False)


async def _change_entries(request: Request, settlement_id: str, *, attach: bool) -> Response:
    _, req = await http.body_of(request, SettlementEntries)
    return http.json(await settlements.change_entries(
        http.context(request), http.tenant(request), parse_uuid(settlement_id, "ledger account settlement"), req,
        attach=attach))


@get("/api/ledger_account_settlements", operation_class=documented(
    response=LedgerAccountSettlement, many=True, parameters=[
        array_query("id", UUID, "Only these settlements."),
        query("ledger_id", UUID, "Settlements in this ledger."),
        query("ledger_transaction_id", UUID, "The settlement of this transaction."),
        query("settled_ledger_account_id", UUID, "Settlements of this account."),
        query("settlement_entry_direction", {"type": "string", "enum": ["credit", "debit"]},
              "By the direction of the settlement's entry on the settled account."),
        METADATA,
        *(query(name, operators(TIME), f"{name}[gte]=... and the like.", nested=True)
          for name in ("created_at", "updated_at"))]))
async def list_settlements(request: Request) -> Response:
    q = http.query(request)
    per_page, cursor = http.paging(request, q)
    filters = {
        "ids": q.take_uuids("id"),
        "ledger_id": q.take_uuid("ledger_id"),
        "ledger_transaction_id": q.take_uuid("ledger_transaction_id"),
        "settled_ledger_account_id": q.take_uuid("settled_ledger_account_id"),
        "settlement_entry_direction": q.take_choice("settlement_entry_direction", {"credit", "debit"}),
        "metadata": q.take_bracketed("metadata"),
        "created_at": time_filters(q, "created_at"),
        "updated_at": time_filters(q, "updated_at"),
    }
    q.done()
    return http.page(await settlements.list_settlements(http.context(request), http.tenant(request),
                                                        after_cursor=cursor, per_page=per_page, **filters))


routes = [create_settlement, get_settlement, update_settlement, attach_entries, detach_entries, list_settlements]
