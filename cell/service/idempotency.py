"""Idempotency-Key: claimed, and its first answer kept, in the use case's own transaction; replayed as it was."""

from __future__ import annotations

import hashlib
from typing import Awaitable, Callable, TypeVar

import asyncpg
import msgspec

from cell.ledger.errors import IdempotencyInFlight, IdempotencyKeyReused, InvalidRequest
from cell.ledger.models import IdemKey
from cell.store import idempotency as store

T = TypeVar("T")
CREATED = 201
_encoder = msgspec.json.Encoder()


def one_key(values: list[str]) -> str | None:
    """The request's Idempotency-Key header: none, or one (given twice, which one the client meant is unknown)."""
    if len(values) > 1:
        raise InvalidRequest("Idempotency-Key is given more than once", "invalid_idempotency_key")
    return values[0] if values else None


def idempotency_key(header: str | None, method: str, path: str, body: bytes, length_max: int) -> IdemKey | None:
    if header is None:
        return None
    if not 1 <= len(header) <= length_max or not header.isprintable():
        raise InvalidRequest(f"Idempotency-Key must be 1-{length_max} printable characters", "invalid_idempotency_key")
    digest = hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).digest()
    return IdemKey(header, digest)


async def replay(conn: asyncpg.Connection, tenant_id: str, idem: IdemKey, type_: type[T],
                 render: Callable[[asyncpg.Connection, object], Awaitable[T]],
                 finish: Callable[[bytes, str], T] | None = None) -> T:
    """The answer to a repeated key: the stored answer, or the resource rendered anew if none was stored. An answer
    kept with the routine's facts (a posting's, 0140_idempotency_facts.sql) is finished by `finish(kept, facts)`,
    the function that finished the first answer."""
    row = await store.fetch(conn, tenant_id, idem.key)
    if row is None:
        raise IdempotencyInFlight("a request with this Idempotency-Key is still in flight")
    if row["request_hash"] != idem.request_hash:
        raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
    if row["response"] is not None and row["facts"] is not None and finish is not None:
        return finish(bytes(row["response"]), row["facts"])
    if row["response"] is not None:
        return msgspec.json.decode(bytes(row["response"]), type=type_)
    return await render(conn, row["resource_id"])


def answer_body(answer: msgspec.Struct) -> bytes:
    """The bytes a key keeps of its first answer, exactly as they go out."""
    return _encoder.encode(answer)
