"""Idempotency-Key: claimed in the use case's own transaction; the first answer is replayed byte for byte."""

from __future__ import annotations

import hashlib
from typing import Awaitable, Callable

import asyncpg
import msgspec

from cell.service.errors import (
    IdempotencyInFlight,
    IdempotencyKeyReused,
    InvalidRequest,
)
from cell.store.queries import Q


class IdemKey(msgspec.Struct, frozen=True):
    key: str
    request_hash: bytes


def idempotency_key(header: str | None, method: str, path: str, body: bytes, length_max: int) -> IdemKey | None:
    if header is None:
        return None
    if not 1 <= len(header) <= length_max or not header.isprintable():
        raise InvalidRequest(f"Idempotency-Key must be 1-{length_max} printable characters", "invalid_idempotency_key")
    digest = hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).digest()
    return IdemKey(header, digest)


async def replay(conn: asyncpg.Connection, tenant_id: str, idem: IdemKey,
                 render: Callable[[asyncpg.Connection, object], Awaitable[bytes]]) -> tuple[int, bytes]:
    """The answer to a repeated key: the stored response, or the resource re-rendered if none was stored."""
    row = await conn.fetchrow(Q["fetch_idempotency_key"], tenant_id, idem.key)
    if row is None:
        raise IdempotencyInFlight("a request with this Idempotency-Key is still in flight")
    if row["request_hash"] != idem.request_hash:
        raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
    if row["response"] is not None:
        return row["status_code"], bytes(row["response"])
    return 201, await render(conn, row["resource_id"])


async def store_response(pool: asyncpg.Pool, tenant_id: str, idem: IdemKey | None, status: int, body: bytes) -> None:
    """After the commit: the key and the resource are already durable together; this only caches the body."""
    if idem is not None:
        await pool.execute(Q["store_idempotent_response"], tenant_id, idem.key, status, body)
