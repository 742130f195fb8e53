"""Use cases of ledgers: create (idempotent), read, update, delete (discard), list; each change with its event; a
change no write of the tenant may straddle (a delete), under the tenant's fence taken exclusively."""

from __future__ import annotations

import uuid
from typing import Awaitable, Callable, TypeVar

import asyncpg
import msgspec
from msgspec import UNSET

from cell.ledger.commands import LedgerCreate, LedgerUpdate
from cell.ledger.errors import LockTimeout, NotFound, PostingRejected
from cell.ledger.models import IdemKey
from cell.service import events, views
from cell.service.common import Page, merge_metadata, seq_page, unchanged
from cell.service.context import CellContext
from cell.service.idempotency import CREATED, answer_body, replay
from cell.store import idempotency as store_idempotency
from cell.store import ledgers as store
from cell.store import tenants as store_tenants

T = TypeVar("T")
# How long a change under the tenant's exclusive fence waits for the tenant's writes in flight: the tenant's later
# writes wait behind it meanwhile, so it stays short; past it, 503 lock_timeout and nothing done.
EXCLUSIVE_WAIT_MS = 250


async def discard_exclusively(ctx: CellContext, tenant_id: str, resource_id: uuid.UUID, *, resource: str,
                              fetch: Callable, held: Callable, refusal: PostingRejected, discard: Callable,
                              render: Callable[[asyncpg.Record], T]) -> T:
    """A delete: the resource discarded in one transaction under the tenant's fence taken exclusively (as a move's
    freeze takes it), so that every write of the tenant in flight has committed or failed before it and every later
    one starts after its commit (each reads what it checks after its own fence: ledger_post, routines/post.sql).
    Its row by `fetch` (None: 404), refused with `refusal` while `held`, its discarded_at and updated_at set by
    `discard` (store functions of (conn, tenant, id)); the answer is `render(row)` with them, also the data of its
    `<resource>.deleted` event."""
    async def work(conn: asyncpg.Connection) -> T:
        async with conn.transaction():
            await store_tenants.fence_exclusive(conn, tenant_id, EXCLUSIVE_WAIT_MS)
            current = await fetch(conn, tenant_id, resource_id)
            if current is None:
                raise NotFound(f"{resource.replace('_', ' ')} {resource_id} not found")
            if await held(conn, tenant_id, resource_id):
                raise refusal
            stamp = await discard(conn, tenant_id, resource_id)
            view = msgspec.structs.replace(render(current), discarded_at=views.utc(stamp["discarded_at"]),
                                           updated_at=views.utc(stamp["updated_at"]))
            await events.emit(ctx, conn, tenant_id, resource, f"{resource}.deleted", view)
            return view

    try:
        return await ctx.run(work)
    except LockTimeout:
        raise LockTimeout(f"the tenant's writes in flight did not finish within {EXCLUSIVE_WAIT_MS} ms; nothing "
                          "was deleted, retry shortly") from None


async def write_idempotently(ctx: CellContext, tenant_id: str, idem: IdemKey | None, resource_type: str,
                             resource_id: uuid.UUID, type_: type[T],
                             write: Callable[[asyncpg.Connection, uuid.UUID], Awaitable[T]],
                             render_id: Callable[[asyncpg.Connection, object], Awaitable[T]],
                             status: int = CREATED) -> T:
    """Write one resource (`write(conn, resource_id)`) in one transaction with the tenant fence, the idempotency key
    claimed and its first answer kept (no answer is ever stored after the commit: a tenant move copies the key whole,
    cell/store/idempotency.py); a used key is replayed instead."""
    async def work(conn: asyncpg.Connection) -> T | None:
        async with conn.transaction():
            await store_tenants.fence(conn, tenant_id)
            if idem is not None and await store_idempotency.claim(conn, tenant_id, idem, resource_type, resource_id):
                return None
            written = await write(conn, resource_id)
            if idem is not None:
                await store_idempotency.keep_answer(conn, tenant_id, idem.key, status, answer_body(written))
            return written

    written = await ctx.run(work)
    if written is None:
        return await ctx.run(lambda conn: replay(conn, tenant_id, idem, type_, render_id))
    return written


async def create_idempotently(ctx: CellContext, tenant_id: str, idem: IdemKey | None, resource_type: str,
                              type_: type[T], insert: Callable[[asyncpg.Connection, uuid.UUID], Awaitable[T]],
                              render_id: Callable[[asyncpg.Connection, object], Awaitable[T]]) -> T:
    """Create one resource under a new id, as write_idempotently writes."""
    return await write_idempotently(ctx, tenant_id, idem, resource_type, uuid.uuid4(), type_, insert, render_id)


async def _ledger(conn: asyncpg.Connection, tenant_id: str, ledger_id) -> views.Ledger:
    row = await store.fetch(conn, tenant_id, ledger_id)
    if row is None:
        raise NotFound(f"ledger {ledger_id} not found")
    return views.ledger(row)


async def create_ledger(ctx: CellContext, tenant_id: str, cmd: LedgerCreate, idem: IdemKey | None) -> views.Ledger:
    async def insert(conn: asyncpg.Connection, new_id: uuid.UUID) -> views.Ledger:
        view = views.ledger(await store.insert(conn, new_id, tenant_id, name=cmd.name, description=cmd.description,
                                               metadata=cmd.metadata))
        await events.emit(ctx, conn, tenant_id, "ledger", "ledger.created", view)
        return view

    return await create_idempotently(ctx, tenant_id, idem, "ledger", views.Ledger, insert,
                                     lambda conn, rid: _ledger(conn, tenant_id, rid))


async def get_ledger(ctx: CellContext, tenant_id: str, ledger_id: uuid.UUID) -> views.Ledger:
    return await ctx.run(lambda conn: _ledger(conn, tenant_id, ledger_id))


async def update_ledger(ctx: CellContext, tenant_id: str, ledger_id: uuid.UUID, cmd: LedgerUpdate) -> views.Ledger:
    async def work(conn: asyncpg.Connection) -> views.Ledger:
        async with conn.transaction():
            await store_tenants.fence(conn, tenant_id)
            await store.lock_row(conn, tenant_id, ledger_id)  # a PATCH at the same time merges after this one
            current = await store.fetch(conn, tenant_id, ledger_id)
            if current is None:
                raise NotFound(f"ledger {ledger_id} not found")
            metadata = merge_metadata(current["metadata"], cmd.metadata)
            if unchanged(current, name=cmd.name, description=cmd.description,
                         metadata=UNSET if metadata is None else metadata):
                return views.ledger(current)  # a no-op PATCH writes nothing (updated_at kept)
            row = await store.update(
                conn, tenant_id, ledger_id, name=None if cmd.name is UNSET else cmd.name,
                description_set=cmd.description is not UNSET,
                description=None if cmd.description is UNSET else cmd.description, metadata=metadata)
            view = views.ledger(row)
            await events.emit(ctx, conn, tenant_id, "ledger", "ledger.updated", view)
        return view

    return await ctx.run(work)


async def delete_ledger(ctx: CellContext, tenant_id: str, ledger_id: uuid.UUID) -> views.Ledger:
    """Discards a ledger that holds no account or category (but discarded ones): from then on it is not found, and
    no account or category is created in it (their creations read it after their fence)."""
    view = await discard_exclusively(
        ctx, tenant_id, ledger_id, resource="ledger", fetch=store.fetch, held=store.holds_anything,
        refusal=PostingRejected(f"ledger {ledger_id} holds accounts or categories: delete them first",
                                "ledger_not_empty"), discard=store.discard, render=views.ledger)
    ctx.cache.forget_ledger(tenant_id, str(ledger_id))
    return view


async def list_ledgers(ctx: CellContext, tenant_id: str, *, after_cursor: str | None, per_page: int,
                       **filters) -> Page[views.Ledger]:
    return await seq_page(ctx, tenant_id, "ledgers", after_cursor, per_page, views.ledger, store.list_page,
                          **filters)
