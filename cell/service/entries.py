"""Use cases of ledger entries: read one, list (by account, transaction, lock version; ordered)."""

from __future__ import annotations

import uuid

import asyncpg
from msgspec import UNSET

from cell.ledger.commands import EntryUpdate
from cell.ledger.errors import InvalidRequest, NotFound
from cell.service import views
from cell.service.common import EffectivePosition, Page, SeqPosition, cursors, merge_metadata, page_of
from cell.service.context import CellContext
from cell.store import accounts as store_accounts
from cell.store import entries as store
from cell.store import tenants as store_tenants


async def get_entry(ctx: CellContext, tenant_id: str, entry_id: uuid.UUID, show_balances: bool) -> views.LedgerEntry:
    row = await ctx.run(lambda conn: store.fetch(conn, tenant_id, entry_id))
    if row is None:
        raise NotFound(f"ledger entry {entry_id} not found")
    return views.entry(row, show_balances)


async def update_entry(ctx: CellContext, tenant_id: str, entry_id: uuid.UUID, cmd: EntryUpdate) -> views.LedgerEntry:
    """Metadata only (PATCH semantics: a key set to "" is removed); a PATCH that changes nothing writes nothing."""

    async def work(conn: asyncpg.Connection) -> views.LedgerEntry:
        async with conn.transaction():
            await store_tenants.fence(conn, tenant_id)
            current = await store.fetch(conn, tenant_id, entry_id)
            if current is None:
                raise NotFound(f"ledger entry {entry_id} not found")
            if cmd.metadata is UNSET:
                return views.entry(current, False)
            metadata = merge_metadata(current["metadata"], cmd.metadata)
            if metadata == current["metadata"]:
                return views.entry(current, False)
            await store.set_metadata(conn, tenant_id, entry_id, metadata)
            return views.entry(await store.fetch(conn, tenant_id, entry_id), False)

    return await ctx.run(work)


async def list_entries(ctx: CellContext, tenant_id: str, *, per_page: int, order_by: str, descending: bool,
                       after_cursor: str | None, show_balances: bool, **filters) -> Page[views.LedgerEntry]:
    # The ordering is part of the list's name: a cursor of one ordering does not open in another.
    box = cursors(ctx.settings, tenant_id, f"ledger_entries order_by[{order_by}]={'desc' if descending else 'asc'}")
    by_effective_at = order_by == "effective_at"
    after = box.open(after_cursor, EffectivePosition if by_effective_at else SeqPosition)
    async def read(conn: asyncpg.Connection) -> list:
        as_of = filters.get("as_of_lock_version")
        if as_of is not None:  # a version the account never had is refused as its balances' read refuses it
            account = await store_accounts.fetch(conn, tenant_id, filters["ledger_account_id"])
            if account is not None and as_of > account["lock_version"]:
                raise InvalidRequest(f"the account has no lock_version {as_of} (current: {account['lock_version']})",
                                     "lock_version_not_found")
        return await store.list_page(conn, tenant_id, limit=per_page + 1, order_by=order_by, descending=descending,
                                     after=after, **filters)

    rows = await ctx.run(read)
    return page_of(rows, per_page, lambda r: views.entry(r, show_balances),
                   (lambda r: box.seal((r["effective_at"], r["seq"]))) if by_effective_at
                   else (lambda r: box.seal((r["seq"],))))
