"""Ledger account statements' SQL, wrapped once: create (folding the account's queued effects first), fetch."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from cell.store.queries import Q


async def insert(conn: asyncpg.Connection, statement_id: uuid.UUID, tenant_id: str, *, ledger_account_id: uuid.UUID,
                 description: str | None, metadata: dict, lower: datetime, upper: datetime) -> bool:
    """Inside the caller's transaction: lock the account's balance row, apply what is queued for it, then write the
    statement at that lock version. False when the tenant has no such account."""
    if await conn.fetchval("SELECT 1 FROM ledger_accounts WHERE tenant_id = $1 AND id = $2 AND discarded_at IS NULL",
                           tenant_id, ledger_account_id) is None:
        return False
    await conn.execute(Q["fold_account_effects"], ledger_account_id, tenant_id)
    return await conn.fetchval(Q["insert_statement"], statement_id, tenant_id, ledger_account_id, description,
                               metadata, lower, upper) is not None


async def fetch(conn: asyncpg.Connection, tenant_id: str, statement_id) -> asyncpg.Record | None:
    return await conn.fetchrow(Q["fetch_statement"], tenant_id, statement_id)
