"""Ledger account settlements' SQL, wrapped once: the settlement row, the entries it holds (claimed at most once,
by the database's key), its outcome, list."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from cell.store.filters import OPERATORS_SQL, Where, own_rows
from cell.store.queries import Q


async def insert(conn: asyncpg.Connection, settlement_id: uuid.UUID, tenant_id: str, *, ledger_id, settled_id,
                 contra_id, currency: str, currency_exponent: int, status: str, allow_either_direction: bool,
                 upper: datetime | None, description: str | None, metadata: dict) -> None:
    """A new settlement; `upper` None: effective_at_upper_bound is its created_at."""
    await conn.execute(Q["insert_settlement"], settlement_id, tenant_id, ledger_id, settled_id, contra_id, currency,
                       currency_exponent, status, allow_either_direction, upper, description, metadata)


async def fetch(conn: asyncpg.Connection, tenant_id: str, settlement_id, *, lock: bool = False
                ) -> asyncpg.Record | None:
    return await conn.fetchrow(Q["lock_settlement" if lock else "fetch_settlement"], tenant_id, settlement_id)


async def claim_gathered(conn: asyncpg.Connection, tenant_id: str, settlement_id, settled_id, upper: datetime,
                         limit: int) -> int:
    """Claims at most `limit` of the settled account's unsettled posted entries; returns how many it claimed."""
    status = await conn.execute(Q["claim_gathered_entries"], tenant_id, settlement_id, settled_id, upper, limit)
    return int(status.rsplit(" ", 1)[1])


async def settleable(conn: asyncpg.Connection, tenant_id: str, entry_ids: list, settled_id,
                     upper: datetime) -> set[uuid.UUID]:
    return {r["id"] for r in await conn.fetch(Q["settleable_entries"], tenant_id, entry_ids, settled_id, upper)}


async def claim(conn: asyncpg.Connection, tenant_id: str, settlement_id, entry_ids: list) -> set[uuid.UUID]:
    """The entries of `entry_ids` the settlement holds now; the others are held by another settlement."""
    return {r["entry_id"] for r in await conn.fetch(Q["claim_entries"], tenant_id, settlement_id, entry_ids)}


async def held(conn: asyncpg.Connection, settlement_id, entry_ids: list) -> set[uuid.UUID]:
    return {r["entry_id"] for r in await conn.fetch(Q["held_entries"], settlement_id, entry_ids)}


async def count_held(conn: asyncpg.Connection, settlement_id, most: int) -> int:
    """How many entries the settlement holds, at most `most`."""
    return await conn.fetchval(Q["count_held_entries"], settlement_id, most)


async def claim_offset(conn: asyncpg.Connection, tenant_id: str, settlement_id, entry_id) -> None:
    await conn.execute(Q["claim_offset_entry"], tenant_id, settlement_id, entry_id)


async def release(conn: asyncpg.Connection, tenant_id: str, settlement_id, entry_ids: list | None = None) -> int:
    """Releases the entries of `entry_ids` the settlement holds (None: all); how many it released."""
    status = await conn.execute(Q["release_entries"], tenant_id, settlement_id, entry_ids)
    return int(status.rsplit(" ", 1)[1])


async def net(conn: asyncpg.Connection, settlement_id, normal_balance: str) -> int:
    return int(await conn.fetchval(Q["settled_net"], settlement_id, normal_balance))


async def set_outcome(conn: asyncpg.Connection, tenant_id: str, settlement_id, *, status: str, amount: int | None,
                      direction: str | None, transaction_id=None) -> None:
    await conn.execute(Q["set_settlement_outcome"], tenant_id, settlement_id, status, amount, direction,
                       transaction_id)


async def update(conn: asyncpg.Connection, tenant_id: str, settlement_id, *, description_set: bool,
                 description: str | None, metadata: dict | None) -> None:
    await conn.execute(Q["update_settlement"], tenant_id, settlement_id, description_set, description, metadata)


async def of_transaction(conn: asyncpg.Connection, tenant_id: str, transaction_id) -> uuid.UUID | None:
    return await conn.fetchval(Q["settlement_of_transaction"], tenant_id, transaction_id)


async def list_page(conn: asyncpg.Connection, tenant_id: str, *, after_seq: int, limit: int, ids=(), ledger_id=None,
                    ledger_transaction_id=None, settled_ledger_account_id=None, settlement_entry_direction=None,
                    metadata=None, created_at: list[tuple[str, Any]] = (),
                    updated_at: list[tuple[str, Any]] = ()) -> list:
    w = Where(tenant_id)
    named = []  # an account's settlements, or a transaction's: by their own index, not a walk of the tenant's
    for column, value in (("settled_ledger_account_id", settled_ledger_account_id),
                          ("ledger_transaction_id", ledger_transaction_id)):
        if value is not None:
            named.append(f"{column} = {w.bind(value)}")
    settlements = own_rows("ledger_account_settlements", named)
    w.add("s.seq > {}", after_seq)
    if ids:
        w.add("s.id = ANY({}::uuid[])", list(ids))
    for column, value in (("ledger_id", ledger_id), ("settlement_entry_direction", settlement_entry_direction)):
        if value is not None:
            w.add(f"s.{column} = {{}}", value)
    if metadata:
        w.add("s.metadata @> {}::jsonb", metadata)
    for column, bounds in (("created_at", created_at), ("updated_at", updated_at)):
        for op, value in bounds:
            w.add(f"s.{column} {OPERATORS_SQL[op]} {{}}", value)
    limit_ref = w.bind(limit)
    return await conn.fetch(f"SELECT s.* FROM {settlements} s WHERE s.tenant_id = $1{w.sql()} "
                            f"ORDER BY s.seq LIMIT {limit_ref}", *w.args)
