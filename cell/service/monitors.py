"""Use cases of balance monitors (/api/ledger_account_balance_monitors): create, read, update (description and
metadata: the condition is fixed), delete, list; each change with its event. Their evaluation, and the
triggered / resolved events, are ledger_apply's (routines/monitor.sql)."""

from __future__ import annotations

import uuid

import asyncpg
from msgspec import UNSET

from cell.ledger.commands import MonitorCreate, MonitorUpdate
from cell.ledger.errors import NotFound, PostingRejected
from cell.ledger.models import IdemKey
from cell.service import events, views
from cell.service.common import Page, merge_metadata, seq_page
from cell.service.context import CellContext
from cell.service.ledgers import create_idempotently
from cell.store import monitors as store
from cell.store import tenants as store_tenants

RESOURCE = "ledger_account_balance_monitor"


async def _monitor(conn: asyncpg.Connection, tenant_id: str, monitor_id, *, discarded: bool = False,
                   lock: bool = False) -> views.LedgerAccountBalanceMonitor:
    row = await store.fetch(conn, tenant_id, monitor_id, discarded=discarded, lock=lock)
    if row is None:
        raise NotFound(f"ledger account balance monitor {monitor_id} not found")
    return views.balance_monitor(row, row)


async def create_monitor(ctx: CellContext, tenant_id: str, cmd: MonitorCreate,
                         idem: IdemKey | None) -> views.LedgerAccountBalanceMonitor:
    async def insert(conn: asyncpg.Connection, new_id: uuid.UUID) -> views.LedgerAccountBalanceMonitor:
        c = cmd.alert_condition
        if not await store.insert(conn, new_id, tenant_id, ledger_account_id=cmd.ledger_account_id,
                                  description=cmd.description, field=c.field, operator=c.operator, value=c.value,
                                  metadata=cmd.metadata):
            raise PostingRejected(f"ledger account {cmd.ledger_account_id} not found", "ledger_account_not_found")
        view = await _monitor(conn, tenant_id, new_id)
        await events.emit(ctx, conn, tenant_id, RESOURCE, "balance_monitor.created", view)
        return view

    return await create_idempotently(ctx, tenant_id, idem, RESOURCE, views.LedgerAccountBalanceMonitor, insert,
                                     lambda conn, rid: _monitor(conn, tenant_id, rid, discarded=True))


async def get_monitor(ctx: CellContext, tenant_id: str, monitor_id: uuid.UUID) -> views.LedgerAccountBalanceMonitor:
    return await ctx.run(lambda conn: _monitor(conn, tenant_id, monitor_id))


async def update_monitor(ctx: CellContext, tenant_id: str, monitor_id: uuid.UUID,
                         cmd: MonitorUpdate) -> views.LedgerAccountBalanceMonitor:
    async def work(conn: asyncpg.Connection) -> views.LedgerAccountBalanceMonitor:
        async with conn.transaction():
            await store_tenants.fence(conn, tenant_id)
            current = await _monitor(conn, tenant_id, monitor_id, lock=True)
            metadata = merge_metadata(current.metadata, cmd.metadata)
            if (metadata is None or metadata == current.metadata) and (
                    cmd.description is UNSET or cmd.description == current.description):
                return current  # a no-op PATCH writes nothing (updated_at kept)
            await store.update(conn, tenant_id, monitor_id, description_set=cmd.description is not UNSET,
                               description=None if cmd.description is UNSET else cmd.description, metadata=metadata)
            view = await _monitor(conn, tenant_id, monitor_id)
            await events.emit(ctx, conn, tenant_id, RESOURCE, "balance_monitor.updated", view)
            return view

    return await ctx.run(work)


async def delete_monitor(ctx: CellContext, tenant_id: str, monitor_id: uuid.UUID) -> views.LedgerAccountBalanceMonitor:
    """The monitor is discarded (no longer evaluated or listed); the answer shows it with discarded_at."""
    async def work(conn: asyncpg.Connection) -> views.LedgerAccountBalanceMonitor:
        async with conn.transaction():
            await store_tenants.fence(conn, tenant_id)
            if not await store.discard(conn, tenant_id, monitor_id):
                raise NotFound(f"ledger account balance monitor {monitor_id} not found")
            view = await _monitor(conn, tenant_id, monitor_id, discarded=True)
            await events.emit(ctx, conn, tenant_id, RESOURCE, "balance_monitor.deleted", view)
            return view

    return await ctx.run(work)


async def list_monitors(ctx: CellContext, tenant_id: str, *, after_cursor: str | None, per_page: int,
                        **filters) -> Page[views.LedgerAccountBalanceMonitor]:
    return await seq_page(ctx, tenant_id, "ledger_account_balance_monitors", after_cursor, per_page,
                          lambda r: views.balance_monitor(r, r), store.list_page, **filters)
