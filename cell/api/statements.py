"""/api/ledger_account_statements: create (immutable), read."""

from __future__ import annotations

from litestar import Request, Response, get, post
from litestar.params import FromPath

from cell.api import http
from cell.api.openapi import documented
from cell.ledger.commands import StatementCreate
from cell.service import statements
from cell.service.common import parse_uuid
from cell.service.views import LedgerAccountStatement


@post("/api/ledger_account_statements", status_code=201,
      operation_class=documented(StatementCreate, LedgerAccountStatement, 201))
async def create_statement(request: Request) -> Response:
    raw, req = await http.body_of(request, StatementCreate)
    return http.created(await statements.create_statement(http.context(request), http.tenant(request), req,
                                                          http.idem_of(request, raw)))


@get("/api/ledger_account_statements/{statement_id:str}", operation_class=documented(response=LedgerAccountStatement))
async def get_statement(request: Request, statement_id: FromPath[str]) -> Response:
    return http.json(await statements.get_statement(http.context(request), http.tenant(request),
                                                    parse_uuid(statement_id, "ledger account statement")))


routes = [create_statement, get_statement]
