"""Use cases of ledgers: create (idempotent), read, update, list."""

from __future__ import annotations

import uuid
from typing import Awaitable, Callable

import asyncpg
from msgspec import UNSET

from cell.api.schemas import LedgerCreate, LedgerUpdate
from cell.service import render
from cell.service.common import Page, encode, encode_cursor, merge_metadata
from cell.service.context import CellContext
from cell.service.errors import NotFound
from cell.service.idempotency import IdemKey, replay, store_response
from cell.store.queries import Q


async def create_idempotently(ctx: CellContext, tenant_id: str, idem: IdemKey | None, resource_type: str,
                              insert: Callable[[asyncpg.Connection, uuid.UUID], Awaitable[object]],
                              render_row: Callable[[object], dict],
                              render_id: Callable[[asyncpg.Connection, object], Awaitable[bytes]]) -> tuple[int, bytes]:
    """Create one resource in one transaction with the tenant fence and the idempotency key claimed."""
    new_id = uuid.uuid4()

    async def work(conn: asyncpg.Connection):
        async with conn.transaction():
            await conn.execute(Q["fence_tenant"], tenant_id)
            if idem is not None and await conn.fetchval(
                    Q["claim_idempotency_key"], tenant_id, idem.key, idem.request_hash, resource_type, new_id):
                return None
            return await insert(conn, new_id)

    row = await ctx.run(work)
    if row is None:
        return await ctx.run(lambda conn: replay(conn, tenant_id, idem, render_id))
    body = encode(render_row(row))
    await store_response(ctx.pool, tenant_id, idem, 201, body)
    return 201, body


async def _render_ledger(conn: asyncpg.Connection, tenant_id: str, ledger_id) -> bytes:
    row = await conn.fetchrow(Q["fetch_ledger"], tenant_id, ledger_id)
    if row is None:
        raise NotFound(f"ledger {ledger_id} not found")
    return encode(render.ledger(row))


async def create_ledger(ctx: CellContext, tenant_id: str, req: LedgerCreate, idem: IdemKey | None) -> tuple[int, bytes]:
    async def insert(conn, new_id):
        return await conn.fetchrow(Q["insert_ledger"], new_id, tenant_id, req.name, req.description, req.metadata)

    return await create_idempotently(ctx, tenant_id, idem, "ledger", insert, render.ledger,
                                     lambda conn, rid: _render_ledger(conn, tenant_id, rid))


async def get_ledger(ctx: CellContext, tenant_id: str, ledger_id: uuid.UUID) -> bytes:
    return await ctx.run(lambda conn: _render_ledger(conn, tenant_id, ledger_id))


async def update_ledger(ctx: CellContext, tenant_id: str, ledger_id: uuid.UUID, req: LedgerUpdate) -> bytes:
    async def work(conn: asyncpg.Connection):
        async with conn.transaction():
            await conn.execute(Q["fence_tenant"], tenant_id)
            current = await conn.fetchrow(Q["fetch_ledger"], tenant_id, ledger_id)
            if current is None:
                raise NotFound(f"ledger {ledger_id} not found")
            metadata = None if req.metadata is UNSET else merge_metadata(
                current["metadata"], req.metadata, ctx.settings.metadata_keys_max)
            row = await conn.fetchrow(
                Q["update_ledger"], tenant_id, ledger_id, None if req.name is UNSET else req.name,
                req.description is not UNSET, None if req.description is UNSET else req.description, metadata)
        return encode(render.ledger(row))

    return await ctx.run(work)


async def list_ledgers(ctx: CellContext, tenant_id: str, *, after_seq: int, per_page: int,
                       metadata: dict | None) -> Page:
    rows = await ctx.run(lambda conn: conn.fetch(Q["list_ledgers"], tenant_id, after_seq, metadata or None,
                                                 per_page + 1))
    more = len(rows) > per_page
    rows = rows[:per_page]
    return Page([render.ledger(r) for r in rows], encode_cursor(rows[-1]["seq"]) if more else None)
