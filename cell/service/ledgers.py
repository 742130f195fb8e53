"""Use cases of ledgers: create (idempotent), read, update, list; each change with its event."""

from __future__ import annotations

import uuid
from typing import Awaitable, Callable, TypeVar

import asyncpg
from msgspec import UNSET

from cell.ledger.commands import LedgerCreate, LedgerUpdate
from cell.ledger.errors import NotFound
from cell.ledger.models import IdemKey
from cell.service import events, views
from cell.service.common import Page, merge_metadata, seq_page, unchanged
from cell.service.context import CellContext
from cell.service.idempotency import CREATED, answer_body, replay
from cell.store import idempotency as store_idempotency
from cell.store import ledgers as store
from cell.store import tenants as store_tenants

T = TypeVar("T")


async def create_idempotently(ctx: CellContext, tenant_id: str, idem: IdemKey | None, resource_type: str,
                              type_: type[T], insert: Callable[[asyncpg.Connection, uuid.UUID], Awaitable[T]],
                              render_id: Callable[[asyncpg.Connection, object], Awaitable[T]]) -> T:
    """Create one resource in one transaction with the tenant fence, the idempotency key claimed and its first answer
    kept (no answer is ever stored after the commit: a tenant move copies the key whole, cell/store/idempotency.py)."""
    new_id = uuid.uuid4()

    async def work(conn: asyncpg.Connection) -> T | None:
        async with conn.transaction():
            await store_tenants.fence(conn, tenant_id)
            if idem is not None and await store_idempotency.claim(conn, tenant_id, idem, resource_type, new_id):
                return None
            created = await insert(conn, new_id)
            if idem is not None:
                await store_idempotency.keep_answer(conn, tenant_id, idem.key, CREATED, answer_body(created))
            return created

    created = await ctx.run(work)
    if created is None:
        return await ctx.run(lambda conn: replay(conn, tenant_id, idem, type_, render_id))
    return created


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
            current = await store.fetch(conn, tenant_id, ledger_id)
            if current is None:
                raise NotFound(f"ledger {ledger_id} not found")
            metadata = merge_metadata(current["metadata"], cmd.metadata, ctx.settings.metadata_keys_max)
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


async def list_ledgers(ctx: CellContext, tenant_id: str, *, after_cursor: str | None, per_page: int,
                       **filters) -> Page[views.Ledger]:
    return await seq_page(ctx, tenant_id, "ledgers", after_cursor, per_page, views.ledger, store.list_page,
                          **filters)
