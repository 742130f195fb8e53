"""Use cases of ledger entries: read one, list (by account, transaction, lock version; ordered)."""

from __future__ import annotations

import uuid
from datetime import datetime

from cell.service import render
from cell.service.common import Page, encode, encode_cursor
from cell.service.context import CellContext
from cell.service.errors import NotFound
from cell.store import listing


async def get_entry(ctx: CellContext, tenant_id: str, entry_id: uuid.UUID, show_balances: bool) -> bytes:
    row = await ctx.run(lambda conn: listing.fetch_entry(conn, tenant_id, entry_id))
    if row is None:
        raise NotFound(f"ledger entry {entry_id} not found")
    return encode(render.entry(row, show_balances))


async def list_entries(ctx: CellContext, tenant_id: str, *, per_page: int, order_by: str, descending: bool,
                       after: tuple | None, show_balances: bool, **filters) -> Page:
    if after is not None and order_by == "effective_at":
        after = (datetime.fromisoformat(after[0]), after[1])
    rows = await ctx.run(lambda conn: listing.list_entries(
        conn, tenant_id, limit=per_page + 1, order_by=order_by, descending=descending, after=after, **filters))
    more = len(rows) > per_page
    rows = rows[:per_page]
    cursor = None
    if more:
        last = rows[-1]
        cursor = encode_cursor(last["effective_at"].isoformat(), last["seq"]) if order_by == "effective_at" \
            else encode_cursor(last["seq"])
    return Page([render.entry(r, show_balances) for r in rows], cursor)
