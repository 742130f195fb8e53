"""Idempotency-Key: claimed in the use case's own transaction; the first answer is replayed as it was."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Awaitable, Callable, TypeVar

import asyncpg
import msgspec

from cell.ledger.errors import IdempotencyInFlight, IdempotencyKeyReused, InvalidRequest
from cell.ledger.models import IdemKey
from cell.store import idempotency as store
from cell.store.db import ACTING_TENANT

T = TypeVar("T")
CREATED = 201
_encoder = msgspec.json.Encoder()


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


class ResponseStore:
    """Keeps the first answer of each Idempotency-Key, after the commit that claimed it (the key and the resource
    are already durable together; this only keeps the answer) and before the answer goes out, as one statement
    would. Not a posting's: ledger_post keeps its key with the answer itself (transactions._Kept). Group commit:
    answers that arrive while a store is in flight go together in the next statement (one per tenant among them),
    so under load many answers cost one round trip and one commit. A failed store fails every answer it carried."""

    def __init__(self, pool: asyncpg.Pool, using: Callable[[Callable[[asyncpg.Connection], Awaitable[None]]],
                                                          Awaitable[None]] | None = None) -> None:
        """`using(fn)` runs fn on a connection (CellContext.using: the context's own acquire and release); without
        it, fn gets the pool."""
        self._using = using or (lambda fn: fn(pool))
        self._waiting: list[tuple[tuple[str, str, int, bytes], asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None

    async def store(self, tenant_id: str, key: str, status: int, body: bytes) -> None:
        done = asyncio.get_running_loop().create_future()
        self._waiting.append(((tenant_id, key, status, body), done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        await asyncio.shield(done)  # a caller that gives up does not cancel the others' statement

    async def _flush(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            by_tenant: dict[str, list[tuple[tuple[str, str, int, bytes], asyncio.Future]]] = {}
            for answer, done in batch:
                by_tenant.setdefault(answer[0], []).append((answer, done))
            for tenant_id, answers in by_tenant.items():
                await self._store(tenant_id, answers)

    async def _store(self, tenant_id: str, answers: list[tuple[tuple[str, str, int, bytes], asyncio.Future]]) -> None:
        """One statement for one tenant's answers, acting for that tenant: row-level security (migration 0110) hides
        every other tenant's keys from the API's role, so a statement acting for another would keep nothing."""
        acting = ACTING_TENANT.set(tenant_id)
        try:
            await self._using(lambda conn: store.store_responses(conn, [answer for answer, _ in answers]))
        except Exception as exc:  # noqa: BLE001 - each caller gets it, as from its own statement
            for _, done in answers:
                if not done.done():
                    done.set_exception(exc)
        else:
            for _, done in answers:
                if not done.done():
                    done.set_result(None)
        finally:
            ACTING_TENANT.reset(acting)


async def store_response(responses: ResponseStore, tenant_id: str, idem: IdemKey | None,
                         answer: msgspec.Struct) -> None:
    """The answer to keep for a claimed key (none without a key)."""
    if idem is not None:
        await responses.store(tenant_id, idem.key, CREATED, _encoder.encode(answer))
