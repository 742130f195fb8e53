"""/api/ledger_transactions: post, read, list, update (pending -> posted | archived), reverse, versions."""

from __future__ import annotations

from litestar import Request, Response, get, patch, post
from litestar.params import FromPath

from cell.api import http
from cell.api.openapi import METADATA, STATUS, TIME, UUID, documented, operators, query
from cell.api.params import time_filters
from cell.ledger.commands import ENTRIES_PER_TRANSACTION_MAX, ReversalCreate, TransactionCreate, TransactionUpdate
from cell.service import transactions
from cell.service.common import parse_uuid
from cell.service.views import LedgerTransaction, LedgerTransactionVersion


@post("/api/ledger_transactions", status_code=201,
      operation_class=documented(TransactionCreate, LedgerTransaction, 201, body_rules={
          "properties": {"ledger_entries": {"maxItems": ENTRIES_PER_TRANSACTION_MAX}}}))
async def create_transaction(request: Request) -> Response:
    raw, req = await http.body_of(request, TransactionCreate)
    return http.created(await transactions.create_transaction(http.context(request), http.tenant(request), req,
                                                         http.idem_of(request, raw)))


@get("/api/ledger_transactions/{txn_id:str}", operation_class=documented(response=LedgerTransaction))
async def get_transaction(request: Request, txn_id: FromPath[str]) -> Response:
    return http.json(await transactions.get_transaction(http.context(request), http.tenant(request),
                                                        parse_uuid(txn_id, "ledger transaction")))


@patch("/api/ledger_transactions/{txn_id:str}", operation_class=documented(TransactionUpdate, LedgerTransaction))
async def update_transaction(request: Request, txn_id: FromPath[str]) -> Response:
    _, req = await http.body_of(request, TransactionUpdate)
    return http.json(await transactions.update_transaction(http.context(request), http.tenant(request),
                                                           parse_uuid(txn_id, "ledger transaction"), req))


@post("/api/ledger_transactions/{txn_id:str}/reversal", status_code=201,
      operation_class=documented(ReversalCreate, LedgerTransaction, 201))
async def reverse_transaction(request: Request, txn_id: FromPath[str]) -> Response:
    raw, req = await http.body_of(request, ReversalCreate)
    return http.created(await transactions.reverse_transaction(
        http.context(request), http.tenant(request), parse_uuid(txn_id, "ledger transaction"), req,
        http.idem_of(request, raw)))


@get("/api/ledger_transactions/{txn_id:str}/versions",
     operation_class=documented(response=LedgerTransactionVersion, many=True))
async def list_versions(request: Request, txn_id: FromPath[str]) -> Response:
    versions = await transactions.list_versions(http.context(request), http.tenant(request),
                                                parse_uuid(txn_id, "ledger transaction"))
    return http.json(versions)


@get("/api/ledger_transactions", operation_class=documented(response=LedgerTransaction, many=True, parameters=[
    query("ledger_id", UUID, "Transactions of this ledger."), query("status", STATUS, "By status."),
    query("external_id", {"type": "string"}, "The transaction with this external_id."),
    query("ledger_account_id", UUID, "Transactions with an entry on this account."), METADATA,
    query("effective_at", operators(TIME), "effective_at[gte]=... and the like.", nested=True)]))
async def list_transactions(request: Request) -> Response:
    q = http.query(request)
    per_page, cursor = http.paging(request, q)
    filters = {
        "ledger_id": q.take_uuid("ledger_id"),
        "status": q.take_choice("status", {"pending", "posted", "archived"}),
        "external_id": q.take("external_id"),
        "ledger_account_id": q.take_uuid("ledger_account_id"),
        "metadata": q.take_bracketed("metadata"),
        "effective_at": time_filters(q, "effective_at"),
    }
    q.done()
    return http.page(await transactions.list_transactions(
        http.context(request), http.tenant(request), after_cursor=cursor,
        per_page=per_page, **filters))


routes = [create_transaction, get_transaction, update_transaction, reverse_transaction, list_versions,
          list_transactions]
