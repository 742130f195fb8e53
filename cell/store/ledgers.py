"""Ledgers' SQL, wrapped once: insert, fetch, exists, update, list."""

from __future__ import annotations

import uuid

import asyncpg

from cell.store.queries import Q


async def insert(conn: asyncpg.Connection, ledger_id: uuid.UUID, tenant_id: str, *, name: str,
                 description: str | None, metadata: dict) -> asyncpg.Record:
    return await conn.fetchrow(Q["insert_ledger"], ledger_id, tenant_id, name, description, metadata)


async def fetch(conn: asyncpg.Connection, tenant_id: str, ledger_id) -> asyncpg.Record | None:
    return await conn.fetchrow(Q["fetch_ledger"], tenant_id, ledger_id)


async def exists(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, ledger_id) -> bool:
    return await conn.fetchval(Q["fetch_ledger_exists"], tenant_id, ledger_id) is not None


async def update(conn: asyncpg.Connection, tenant_id: str, ledger_id, *, name: str | None, description_set: bool,
                 description: str | None, metadata: dict | None) -> asyncpg.Record | None:
    return await conn.fetchrow(Q["update_ledger"], tenant_id, ledger_id, name, description_set, description, metadata)


async def list_page(conn: asyncpg.Connection, tenant_id: str, *, after_seq: int, limit: int,
                    metadata: dict | None) -> list:
    return await conn.fetch(Q["list_ledgers"], tenant_id, after_seq, metadata or None, limit)
