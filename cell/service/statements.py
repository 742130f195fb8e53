"""Use cases of ledger account statements: create (immutable, at the account's lock version then; with its event),
read."""

from __future__ import annotations

import uuid

import asyncpg

from cell.ledger.commands import StatementCreate
from cell.ledger.errors import NotFound, PostingRejected
from cell.ledger.models import IdemKey
from cell.service import events, views
from cell.service.context import CellContext
from cell.service.ledgers import create_idempotently
from cell.store import statements as store


async def _statement(conn: asyncpg.Connection, tenant_id: str, statement_id) -> views.LedgerAccountStatement:
    row = await store.fetch(conn, tenant_id, statement_id)
    if row is None:
        raise NotFound(f"ledger account statement {statement_id} not found")
    return views.statement(row)


async def create_statement(ctx: CellContext, tenant_id: str, cmd: StatementCreate,
                           idem: IdemKey | None) -> views.LedgerAccountStatement:
    async def insert(conn: asyncpg.Connection, new_id: uuid.UUID) -> views.LedgerAccountStatement:
        written = await store.insert(conn, new_id, tenant_id, ledger_account_id=cmd.ledger_account_id,
                                     description=cmd.description, metadata=cmd.metadata,
                                     lower=cmd.effective_at_lower_bound, upper=cmd.effective_at_upper_bound)
        if not written:
            raise PostingRejected(f"ledger account {cmd.ledger_account_id} not found", "ledger_account_not_found")
        view = await _statement(conn, tenant_id, new_id)
        await events.emit(ctx, conn, tenant_id, "ledger_account_statement", "ledger_account_statement.created", view)
        return view

    return await create_idempotently(ctx, tenant_id, idem, "ledger_account_statement", views.LedgerAccountStatement,
                                     insert, lambda conn, rid: _statement(conn, tenant_id, rid))


async def get_statement(ctx: CellContext, tenant_id: str, statement_id: uuid.UUID) -> views.LedgerAccountStatement:
    return await ctx.run(lambda conn: _statement(conn, tenant_id, statement_id))
