"""Use cases of ledger accounts: create (with its balance row), read balances (total, effective-time,
lock-version, read-your-writes), update, list with balance filters."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
from msgspec import UNSET

from cell.api.schemas import AccountCreate, AccountUpdate
from cell.ledger.models import Account, Totals
from cell.service import render
from cell.service.common import Page, encode, encode_cursor, merge_metadata
from cell.service.context import CellContext
from cell.service.errors import InvalidRequest, NotFound, PostingRejected
from cell.service.idempotency import IdemKey
from cell.service.ledgers import create_idempotently
from cell.store import listing
from cell.store.queries import Q

# ISO 4217 minor units of common currencies; any other currency must say its exponent.
KNOWN_EXPONENTS = {"USD": 2, "EUR": 2, "GBP": 2, "CAD": 2, "AUD": 2, "CHF": 2, "CNY": 2, "INR": 2, "MXN": 2,
                   "BRL": 2, "SEK": 2, "NOK": 2, "DKK": 2, "SGD": 2, "HKD": 2, "NZD": 2, "ZAR": 2, "PLN": 2,
                   "JPY": 0, "KRW": 0, "CLP": 0, "VND": 0, "ISK": 0, "BHD": 3, "KWD": 3, "JOD": 3, "OMR": 3,
                   "TND": 3, "BTC": 8, "ETH": 18, "USDC": 6}


class BalanceQuery:
    """Which balances a read asks for: current (default), at an effective time, a time range, a lock version."""

    def __init__(self, effective_at: datetime | None = None, lower: datetime | None = None,
                 upper: datetime | None = None, as_of_lock_version: int | None = None,
                 include_unapplied: bool = False) -> None:
        chosen = sum(x is not None for x in (effective_at, as_of_lock_version)) + (lower is not None or upper is not None)
        if chosen > 1:
            raise InvalidRequest("use one of balances[effective_at], balances[effective_at_lower_bound]/"
                                 "[effective_at_upper_bound] or balances[as_of_lock_version]", "conflicting_parameters")
        if include_unapplied and chosen:
            raise InvalidRequest("balances[include_unapplied] applies to current balances only",
                                 "conflicting_parameters")
        if lower is not None and upper is not None and lower > upper:
            raise InvalidRequest("effective_at_lower_bound is after effective_at_upper_bound", "invalid_range")
        self.effective_at = effective_at
        self.lower = lower
        self.upper = upper
        self.as_of_lock_version = as_of_lock_version
        self.include_unapplied = include_unapplied


async def _totals_for(conn: asyncpg.Connection, row, q: BalanceQuery) -> Totals:
    current = render.totals_of(row)
    if q.as_of_lock_version is not None:
        if q.as_of_lock_version == 0:
            return Totals()
        r = await conn.fetchrow(Q["balances_at_lock_version"], row["id"], q.as_of_lock_version)
        if r is None:
            raise InvalidRequest(f"the account has no lock_version {q.as_of_lock_version} (current: "
                                 f"{current.lock_version})", "lock_version_not_found")
        return render.totals_of(r)
    if q.effective_at is not None:
        r = await conn.fetchrow(Q["balances_at_effective_time"], row["id"], q.effective_at, True)
        return render.totals_of(r, current.lock_version)
    if q.lower is not None or q.upper is not None:
        r = await conn.fetchrow(Q["balances_in_effective_range"], row["id"], q.lower, q.upper)
        return render.totals_of(r, current.lock_version)
    return current


async def _render_account(conn: asyncpg.Connection, tenant_id: str, account_id, q: BalanceQuery | None = None) -> bytes:
    including = q is not None and q.include_unapplied
    row = await conn.fetchrow(Q["fetch_account_including_unapplied" if including else "fetch_account"], tenant_id,
                              account_id)
    if row is None:
        raise NotFound(f"ledger account {account_id} not found")
    totals = await _totals_for(conn, row, q) if q is not None else None
    return encode(render.account(row, totals))


async def create_account(ctx: CellContext, tenant_id: str, req: AccountCreate, idem: IdemKey | None) -> tuple[int, bytes]:
    exponent = req.currency_exponent if req.currency_exponent is not None else KNOWN_EXPONENTS.get(req.currency)
    if exponent is None:
        raise InvalidRequest(f"currency_exponent is required for currency {req.currency}", "currency_exponent_required")

    async def insert(conn: asyncpg.Connection, new_id: uuid.UUID):
        if await conn.fetchval(Q["fetch_ledger_exists"], tenant_id, req.ledger_id) is None:
            raise PostingRejected(f"ledger {req.ledger_id} not found", "ledger_not_found")
        return await conn.fetchrow(Q["insert_account"], new_id, tenant_id, req.ledger_id, req.name, req.description,
                                   req.normal_balance, req.currency, exponent, req.metadata, req.sync_only)

    def render_row(row) -> dict:
        ctx.cache.remember(tenant_id, Account(str(row["id"]), str(row["ledger_id"]), row["currency"],
                                              row["currency_exponent"], row["normal_balance"]))
        return render.account(row)

    return await create_idempotently(ctx, tenant_id, idem, "ledger_account", insert, render_row,
                                     lambda conn, rid: _render_account(conn, tenant_id, rid))


async def get_account(ctx: CellContext, tenant_id: str, account_id: uuid.UUID, q: BalanceQuery) -> bytes:
    return await ctx.run(lambda conn: _render_account(conn, tenant_id, account_id, q))


async def update_account(ctx: CellContext, tenant_id: str, account_id: uuid.UUID, req: AccountUpdate) -> bytes:
    async def work(conn: asyncpg.Connection):
        async with conn.transaction():
            await conn.execute(Q["fence_tenant"], tenant_id)
            current = await conn.fetchrow(Q["fetch_account"], tenant_id, account_id)
            if current is None:
                raise NotFound(f"ledger account {account_id} not found")
            metadata = None if req.metadata is UNSET else merge_metadata(
                current["metadata"], req.metadata, ctx.settings.metadata_keys_max)
            await conn.execute(
                Q["update_account"], tenant_id, account_id, None if req.name is UNSET else req.name,
                req.description is not UNSET, None if req.description is UNSET else req.description, metadata,
                None if req.sync_only is UNSET else req.sync_only)
        return await _render_account(conn, tenant_id, account_id)

    return await ctx.run(work)


async def list_accounts(ctx: CellContext, tenant_id: str, *, after_seq: int, per_page: int, **filters) -> Page:
    rows = await ctx.run(lambda conn: listing.list_accounts(conn, tenant_id, after_seq=after_seq,
                                                            limit=per_page + 1, **filters))
    more = len(rows) > per_page
    rows = rows[:per_page]
    return Page([render.account(r) for r in rows], encode_cursor(rows[-1]["seq"]) if more else None)
