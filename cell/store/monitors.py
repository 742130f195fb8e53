"""Balance monitors' SQL, wrapped once: create (evaluated under the account's balance row lock), fetch with the
account's balances, update, discard, list. Their evaluation after each balance change is ledger_apply's
(routines/monitor.sql)."""

from __future__ import annotations

import uuid

import asyncpg

from cell.store.filters import Where, own_rows
from cell.store.queries import Q

_SELECT = """SELECT m.seq, m.id, m.ledger_account_id, m.description, m.alert_field, m.alert_operator, m.alert_value,
       m.metadata, m.triggered, m.discarded_at, m.created_at, m.updated_at, a.currency, a.currency_exponent,
       b.lock_version, b.pending_debits, b.pending_credits, b.posted_debits, b.posted_credits, lb.*
FROM {monitors} m
JOIN ledger_accounts a ON a.id = m.ledger_account_id
JOIN account_balances b ON b.account_id = m.ledger_account_id
CROSS JOIN LATERAL ledger_balances(a.normal_balance, b.pending_debits, b.pending_credits, b.posted_debits,
                                   b.posted_credits) lb"""


async def insert(conn: asyncpg.Connection, monitor_id: uuid.UUID, tenant_id: str, *, ledger_account_id: uuid.UUID,
                 description: str | None, field: str, operator: str, value: int, metadata: dict) -> bool:
    """Inside the caller's transaction: the account's balance row locked first, then (a later snapshot) the monitor
    written and the account flagged. False when the tenant has no such account."""
    if await conn.fetchval(Q["lock_monitored_account"], tenant_id, ledger_account_id) is None:
        return False
    return await conn.fetchval(Q["insert_monitor"], monitor_id, tenant_id, ledger_account_id, description, field,
                               operator, value, metadata) is not None


async def fetch(conn: asyncpg.Connection, tenant_id: str, monitor_id, *, discarded: bool = False,
                lock: bool = False) -> asyncpg.Record | None:
    """The monitor with its account's current balances (the state ledger_apply keeps evaluated). `lock`: the monitor's
    row locked until the caller's transaction ends (a PATCH merges its metadata into what it read: one at the same
    time waits, then merges into what this one wrote)."""
    select = _SELECT.format(monitors="ledger_account_balance_monitors")
    locking = " FOR NO KEY UPDATE OF m" if lock else ""
    return await conn.fetchrow(f"{select} WHERE m.tenant_id = $1 AND m.id = $2 AND (m.discarded_at IS NULL OR $3)"
                               f"{locking}", tenant_id, monitor_id, discarded)


async def update(conn: asyncpg.Connection, tenant_id: str, monitor_id, *, description_set: bool,
                 description: str | None, metadata: dict | None) -> bool:
    return await conn.fetchval(Q["update_monitor"], tenant_id, monitor_id, description_set, description,
                               metadata) is not None


async def discard(conn: asyncpg.Connection, tenant_id: str, monitor_id) -> bool:
    """Inside the caller's transaction: the account's balance row locked first, then (a later snapshot) the monitor
    discarded and the account's flag set from its live monitors."""
    if await conn.fetchval(Q["lock_monitor_account"], tenant_id, monitor_id) is None:
        return False
    return await conn.fetchval(Q["discard_monitor"], tenant_id, monitor_id) is not None


async def list_page(conn: asyncpg.Connection, tenant_id: str, *, after_seq: int, limit: int, ids=(),
                    ledger_account_id=None, metadata=None) -> list:
    w = Where(tenant_id)
    monitors = "ledger_account_balance_monitors"
    if ledger_account_id is not None:  # an account's few monitors, not a walk of the tenant's
        monitors = own_rows(monitors, [f"ledger_account_id = {w.bind(ledger_account_id)}", "discarded_at IS NULL"])
    w.add("m.seq > {}", after_seq)
    if ids:
        w.add("m.id = ANY({}::uuid[])", list(ids))
    if metadata:
        w.add("m.metadata @> {}::jsonb", metadata)
    limit_ref = w.bind(limit)
    select = _SELECT.format(monitors=monitors)
    return await conn.fetch(f"{select} WHERE m.tenant_id = $1 AND m.discarded_at IS NULL{w.sql()} "
                            f"ORDER BY m.seq LIMIT {limit_ref}", *w.args)
