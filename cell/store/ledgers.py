"""Ledgers' SQL, wrapped once: insert, fetch, exists, update, discard, list."""

from __future__ import annotations

import uuid

import asyncpg

from cell.store.filters import OPERATORS_SQL, Where, own_rows
from cell.store.queries import Q


async def insert(conn: asyncpg.Connection, ledger_id: uuid.UUID, tenant_id: str, *, name: str,
                 description: str | None, metadata: dict) -> asyncpg.Record:
    return await conn.fetchrow(Q["insert_ledger"], ledger_id, tenant_id, name, description, metadata)


async def fetch(conn: asyncpg.Connection, tenant_id: str, ledger_id) -> asyncpg.Record | None:
    return await conn.fetchrow(Q["fetch_ledger"], tenant_id, ledger_id)


async def lock_row(conn: asyncpg.Connection, tenant_id: str, ledger_id) -> None:
    """Hold the live ledger's row until the caller's transaction ends (a PATCH, before it reads what it merges)."""
    await conn.execute(Q["lock_ledger_row"], tenant_id, ledger_id)


async def exists(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, ledger_id) -> bool:
    return await conn.fetchval(Q["fetch_ledger_exists"], tenant_id, ledger_id) is not None


async def holds_anything(conn: asyncpg.Connection, tenant_id: str, ledger_id) -> bool:
    return await conn.fetchval(Q["ledger_holds_anything"], tenant_id, ledger_id)


async def discard(conn: asyncpg.Connection, tenant_id: str, ledger_id) -> asyncpg.Record | None:
    """Its discarded_at and updated_at; None when it is discarded already."""
    return await conn.fetchrow(Q["discard_ledger"], tenant_id, ledger_id)


async def update(conn: asyncpg.Connection, tenant_id: str, ledger_id, *, name: str | None, description_set: bool,
                 description: str | None, metadata: dict | None) -> asyncpg.Record | None:
    return await conn.fetchrow(Q["update_ledger"], tenant_id, ledger_id, name, description_set, description, metadata)


async def list_page(conn: asyncpg.Connection, tenant_id: str, *, after_seq: int, limit: int,
                    metadata: dict | None = None, ids=(), updated_at=()) -> list:
    """A page of ledgers in seq order; those named by id read by id (filters.own_rows)."""
    w = Where(tenant_id)
    source = own_rows("ledgers", [f"id = ANY({w.bind(list(ids))}::uuid[])"] if ids else [])
    w.add("l.seq > {}", after_seq)
    w.clauses.append("l.discarded_at IS NULL")  # a discarded ledger (0205) is not found
    if metadata:
        w.add("l.metadata @> {}::jsonb", metadata)
    for op, value in updated_at:
        w.add(f"l.updated_at {OPERATORS_SQL[op]} {{}}", value)
    return await conn.fetch("SELECT l.seq, l.id, l.name, l.description, l.metadata, l.created_at, l.updated_at "
                            f"FROM {source} l WHERE l.tenant_id = $1{w.sql()} ORDER BY l.seq LIMIT {w.bind(limit)}",
                            *w.args)
