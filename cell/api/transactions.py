"""/api/ledger_transactions: post, read, list, update (pending -> posted | archived), reverse, versions."""

from __future__ import annotations

from litestar import Request, Response, get, patch, post
from litestar.params import FromPath

from cell.api import http
from cell.api.openapi import METADATA, ORDER_BY, STATUS, TIME, UUID, array_query, documented, operators, query
from cell.api.params import AMOUNT_VERSION_MAX, date_filters, int_filters, order_of, time_filters
from cell.ledger.commands import (
    ENTRIES_PER_TRANSACTION_MAX,
    LEDGERABLE_TYPES,
    PartialPostCreate,
    ReversalCreate,
    TransactionCreate,
    TransactionUpdate,
)
from cell.service import transactions
from cell.service.common import parse_uuid
from cell.service.views import LedgerTransaction, LedgerTransactionVersion


@post("/api/ledger_transactions", status_code=201,
      operation_class=documented(TransactionCreate, LedgerTransaction, 201, body_rules={
          "properties": {"ledger_entries": {"maxItems": ENTRIES_PER_TRANSACTION_MAX, "items": {
              "anyOf": [{"required": ["amount"]}, {"required": ["amount_string"]}]}}}}))
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


@post("/api/ledger_transactions/{txn_id:str}/partial_post", status_code=201,
      operation_class=documented(PartialPostCreate, LedgerTransaction, 201, body_rules={
          "properties": {"posted_ledger_entries": {"maxItems": ENTRIES_PER_TRANSACTION_MAX, "items": {
              "anyOf": [{"required": ["amount"]}, {"required": ["amount_string"]}]}}}}))
async def partial_post(request: Request, txn_id: FromPath[str]) -> Response:
    raw, req = await http.body_of(request, PartialPostCreate)
    return http.created(await transactions.partial_post(
        http.context(request), http.tenant(request), parse_uuid(txn_id, "ledger transaction"), req,
        http.idem_of(request, raw)))


@get("/api/ledger_transactions/{txn_id:str}/versions",
     operation_class=documented(response=LedgerTransactionVersion, many=True))
async def list_versions(request: Request, txn_id: FromPath[str]) -> Response:
    versions = await transactions.list_versions(http.context(request), http.tenant(request),
                                                parse_uuid(txn_id, "ledger transaction"))
    return http.json(versions)


@get("/api/ledger_transaction_versions", operation_class=documented(
    response=LedgerTransactionVersion, many=True, parameters=[
        query("ledger_transaction_id", UUID, "The versions of this transaction."),
        query("ledger_account_statement_id", UUID,
              "The versions of the transactions with entries in this statement, up to its creation."),
        query("version", operators({"type": "integer", "minimum": 1, "maximum": 2**31 - 1}),
              "version[gte]=2 and the like.", nested=True),
        query("created_at", operators(TIME), "created_at[gte]=... and the like.", nested=True)]))
async def list_all_versions(request: Request) -> Response:
    q = http.query(request)
    per_page, cursor = http.paging(request, q)
    filters = {"ledger_transaction_id": q.take_uuid("ledger_transaction_id"),
               "statement_id": q.take_uuid("ledger_account_statement_id"),
               "version": int_filters(q, "version", 1, 2**31 - 1), "created_at": time_filters(q, "created_at")}
    q.done()
    return http.page(await transactions.list_all_versions(
        http.context(request), http.tenant(request), after_cursor=cursor, per_page=per_page, **filters))


@get("/api/ledger_transactions", operation_class=documented(response=LedgerTransaction, many=True, parameters=[
    query("ledger_id", UUID, "Transactions of this ledger."), query("status", STATUS, "By status."),
    array_query("status", STATUS, "Any of these statuses."), array_query("id", UUID, "Only these transactions."),
    query("external_id", {"type": "string"}, "The transaction with this external_id."),
    query("ledger_account_id", UUID, "Transactions with an entry on this account."), METADATA,
    query("ledger_account_category_id", UUID, "Transactions with an entry on an account of this category."),
    query("ledgerable_type", {"type": "string", "enum": list(LEDGERABLE_TYPES)}, "By what they reconcile to."),
    query("ledgerable_id", {"type": "string"}, "Transactions reconciled to this object."),
    query("reverses_ledger_transaction_id", UUID, "The reversal of this transaction."),
    query("partially_posts_ledger_transaction_id", UUID, "The partial posts of this pending transaction."),
    query("ledger_account_settlement_id", UUID, "The transactions of the entries this settlement settles."),
    query("amount", operators({"type": "integer", "minimum": 0, "maximum": AMOUNT_VERSION_MAX}),
          "amount[gte]=n and the like: by what a transaction moves (the sum of its debit entries).", nested=True),
    *(query(name, operators(TIME), f"{name}[gte]=... and the like.", nested=True)
      for name in ("effective_at", "posted_at", "updated_at")),
    query("effective_date", operators({"type": "string", "format": "date"}),
          "effective_date[gte]=2024-01-01 and the like (UTC dates).", nested=True),
    ORDER_BY]))
async def list_transactions(request: Request) -> Response:
    q = http.query(request)
    per_page, cursor = http.paging(request, q)
    order_by, descending = order_of(q)
    filters = {
        "ledger_id": q.take_uuid("ledger_id"),
        "status": q.take_choices("status", {"pending", "posted", "archived"}),
        "ids": q.take_uuids("id"),
        "external_id": q.take("external_id"),
        "ledger_account_id": q.take_uuid("ledger_account_id"),
        "category_id": q.take_uuid("ledger_account_category_id"),
        "metadata": q.take_bracketed("metadata"),
        "ledgerable_type": q.take_choice("ledgerable_type", set(LEDGERABLE_TYPES)),
        "ledgerable_id": q.take("ledgerable_id"),
        "reverses_id": q.take_uuid("reverses_ledger_transaction_id"),
        "partially_posts_id": q.take_uuid("partially_posts_ledger_transaction_id"),
        "settlement_id": q.take_uuid("ledger_account_settlement_id"),
        "effective_at": time_filters(q, "effective_at") + date_filters(q, "effective_date"),
        "posted_at": time_filters(q, "posted_at"),
        "updated_at": time_filters(q, "updated_at"),
        "amount": int_filters(q, "amount", 0, AMOUNT_VERSION_MAX),
    }
    q.done()
    return http.page(await transactions.list_transactions(
        http.context(request), http.tenant(request), after_cursor=cursor, per_page=per_page, order_by=order_by,
        descending=descending, **filters))


routes = [create_transaction, get_transaction, update_transaction, reverse_transaction, partial_post, list_versions,
          list_all_versions, list_transactions]
