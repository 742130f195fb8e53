"""Idempotency keys' SQL: claimed inside the use case's transaction, the first answer kept in that same transaction
(a posting's key is written whole by ledger_post, with its answer and facts: routines/post.sql)."""

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


async def keep_answer(conn: asyncpg.Connection, tenant_id: str, key: str, status: int, body: bytes) -> None:
    """The first answer of a key claimed in this transaction, kept before it commits: the key, the resource and the
    answer are durable together (a tenant move copies them together), never a key awaiting its answer."""
    await conn.execute(Q["keep_idempotent_answer"], tenant_id, key, status, body)
