"""Use cases of ledger entries: read one, list (by account, transaction, lock version; ordered)."""

from __future__ import annotations

import uuid
from datetime import datetime

from cell.ledger.errors import NotFound
from cell.service import views
from cell.service.common import Page, encode_cursor, page_of
from cell.service.context import CellContext
from cell.store import entries as store


async def get_entry(ctx: CellContext, tenant_id: str, entry_id: uuid.UUID, show_balances: bool) -> views.LedgerEntry:
    row = await ctx.run(lambda conn: store.fetch(conn, tenant_id, entry_id))
    if row is None:
        raise NotFound(f"ledger entry {entry_id} not found")
    return views.entry(row, show_balances)


async def list_entries(ctx: CellContext, tenant_id: str, *, per_page: int, order_by: str, descending: bool,
                       after: tuple | None, show_balances: bool, **filters) -> Page[views.LedgerEntry]:
    by_effective_at = order_by == "effective_at"
    if after is not None and by_effective_at:
        after = (datetime.fromisoformat(after[0]), after[1])
    rows = await ctx.run(lambda conn: store.list_page(
        conn, tenant_id, limit=per_page + 1, order_by=order_by, descending=descending, after=after, **filters))
    return page_of(rows, per_page, lambda r: views.entry(r, show_balances),
                   (lambda r: encode_cursor(r["effective_at"].isoformat(), r["seq"])) if by_effective_at
                   else (lambda r: encode_cursor(r["seq"])))
