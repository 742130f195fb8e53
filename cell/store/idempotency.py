"""Idempotency keys' SQL: claimed inside the use case's transaction; the first answer stored after the commit (a
posting's key is written whole by ledger_post, with its answer and facts: routines/post.sql)."""

from __future__ import annotations

import uuid

import asyncpg

from cell.ledger.models import IdemKey
from cell.store.queries import Q


async def claim(conn: asyncpg.Connection, tenant_id: str, idem: IdemKey, resource_type: str,
                resource_id: uuid.UUID) -> bool:
    """True when the key was used before (replay or reject); raises IdempotencyInFlight while it is in flight."""
    return await conn.fetchval(Q["claim_idempotency_key"], tenant_id, idem.key, idem.request_hash, resource_type,
                               resource_id)


async def fetch(conn: asyncpg.Connection, tenant_id: str, key: str) -> asyncpg.Record | None:
    return await conn.fetchrow(Q["fetch_idempotency_key"], tenant_id, key)


async def store_responses(pool: asyncpg.Pool, answers: list[tuple[str, str, int, bytes]]) -> None:
    """(tenant id, key, status, body) each: the first answers of claimed keys, in one statement."""
    tenants, keys, statuses, bodies = (list(column) for column in zip(*answers))
    await pool.execute(Q["store_idempotent_responses"], tenants, keys, statuses, bodies)
