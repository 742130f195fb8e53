"""List queries: fixed SQL fragments, chosen by filter name and bound as parameters (never user text in SQL)."""

from __future__ import annotations

from typing import Any

import asyncpg

_ACCOUNT_COLUMNS = """a.seq, a.id, a.ledger_id, a.name, a.description, a.normal_balance, a.currency, a.currency_exponent,
       a.metadata, a.sync_only, a.created_at, a.updated_at,
       b.pending_debits, b.pending_credits, b.posted_debits, b.posted_credits, b.lock_version"""

_BALANCE_EXPR = {
    "pending_balance_amount": "CASE WHEN a.normal_balance = 'credit' THEN b.pending_credits - b.pending_debits "
                              "ELSE b.pending_debits - b.pending_credits END",
    "posted_balance_amount": "CASE WHEN a.normal_balance = 'credit' THEN b.posted_credits - b.posted_debits "
                             "ELSE b.posted_debits - b.posted_credits END",
    "available_balance_amount": "CASE WHEN a.normal_balance = 'credit' THEN b.posted_credits - b.pending_debits "
                                "ELSE b.posted_debits - b.pending_credits END",
}
_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "="}

_TRANSACTION_COLUMNS = """t.seq, t.id, t.ledger_id, t.description, t.status, t.effective_at, t.external_id, t.metadata,
       t.version, t.reverses_id, t.reversed_by_id, t.posted_at, t.archived_at, t.created_at, t.updated_at"""

_ENTRY_COLUMNS = """e.seq, e.id, e.transaction_id, e.ledger_account_id, e.direction, e.amount, e.effective_at, e.created_at,
       t.status, a.currency, a.currency_exponent, a.normal_balance,
       f.lock_version, f.pending_debits, f.pending_credits, f.posted_debits, f.posted_credits"""


class _Where:
    def __init__(self, tenant_id: str) -> None:
        self.args: list[Any] = [tenant_id]
        self.clauses: list[str] = []

    def bind(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def add(self, template: str, value: Any) -> None:
        self.clauses.append(template.format(self.bind(value)))

    def sql(self) -> str:
        return "".join(" AND " + c for c in self.clauses)


async def list_accounts(conn: asyncpg.Connection, tenant_id: str, *, after_seq: int, limit: int,
                        ledger_id=None, currency=None, metadata=None,
                        balance_filters: list[tuple[str, str, int]] = ()) -> list:
    w = _Where(tenant_id)
    w.add("a.seq > {}", after_seq)
    if ledger_id is not None:
        w.add("a.ledger_id = {}", ledger_id)
    if currency is not None:
        w.add("a.currency = {}", currency)
    if metadata:
        w.add("a.metadata @> {}::jsonb", metadata)
    for field, op, value in balance_filters:
        w.add(f"({_BALANCE_EXPR[field]}) {_OPS[op]} {{}}::numeric", value)
    limit_ref = w.bind(limit)
    return await conn.fetch(
        f"SELECT {_ACCOUNT_COLUMNS} FROM ledger_accounts a JOIN account_balances b ON b.account_id = a.id "
        f"WHERE a.tenant_id = $1{w.sql()} ORDER BY a.seq LIMIT {limit_ref}", *w.args)


async def list_transactions(conn: asyncpg.Connection, tenant_id: str, *, after_seq: int, limit: int,
                            ledger_id=None, status=None, external_id=None, metadata=None,
                            ledger_account_id=None, effective_at: list[tuple[str, Any]] = ()) -> list:
    w = _Where(tenant_id)
    w.add("t.seq > {}", after_seq)
    if ledger_id is not None:
        w.add("t.ledger_id = {}", ledger_id)
    if status is not None:
        w.add("t.status = {}", status)
    if external_id is not None:
        w.add("t.external_id = {}", external_id)
    if metadata:
        w.add("t.metadata @> {}::jsonb", metadata)
    if ledger_account_id is not None:
        w.add("t.id IN (SELECT transaction_id FROM ledger_entries WHERE ledger_account_id = {})", ledger_account_id)
    for op, value in effective_at:
        w.add(f"t.effective_at {_OPS[op]} {{}}", value)
    limit_ref = w.bind(limit)
    return await conn.fetch(
        f"SELECT {_TRANSACTION_COLUMNS} FROM ledger_transactions t "
        f"WHERE t.tenant_id = $1{w.sql()} ORDER BY t.seq LIMIT {limit_ref}", *w.args)


async def list_entries(conn: asyncpg.Connection, tenant_id: str, *, limit: int, order_by: str, descending: bool,
                       after: tuple | None, ledger_account_id=None, ledger_transaction_id=None,
                       as_of_lock_version=None, direction=None, status=None) -> list:
    w = _Where(tenant_id)
    if ledger_account_id is not None:
        w.add("e.ledger_account_id = {}", ledger_account_id)
    if ledger_transaction_id is not None:
        w.add("e.transaction_id = {}", ledger_transaction_id)
    if as_of_lock_version is not None:
        w.add("f.lock_version <= {}", as_of_lock_version)
    if direction is not None:
        w.add("e.direction = {}", direction)
    if status is not None:
        w.add("t.status = {}", status)
    cmp = "<" if descending else ">"
    order = "DESC" if descending else "ASC"
    if order_by == "effective_at":
        if after is not None:
            w.clauses.append(f"(e.effective_at, e.seq) {cmp} ({w.bind(after[0])}::timestamptz, {w.bind(after[1])})")
        order_sql = f"e.effective_at {order}, e.seq {order}"
    else:
        if after is not None:
            w.add(f"e.seq {cmp} {{}}", after[0])
        order_sql = f"e.seq {order}"
    limit_ref = w.bind(limit)
    return await conn.fetch(
        f"SELECT {_ENTRY_COLUMNS} FROM ledger_entries e "
        "JOIN ledger_transactions t ON t.id = e.transaction_id "
        "JOIN ledger_accounts a ON a.id = e.ledger_account_id "
        "LEFT JOIN balance_effects f ON f.entry_id = e.id AND f.kind = 'entry' "
        f"WHERE e.tenant_id = $1{w.sql()} ORDER BY {order_sql} LIMIT {limit_ref}", *w.args)


async def fetch_entry(conn: asyncpg.Connection, tenant_id: str, entry_id) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {_ENTRY_COLUMNS} FROM ledger_entries e "
        "JOIN ledger_transactions t ON t.id = e.transaction_id "
        "JOIN ledger_accounts a ON a.id = e.ledger_account_id "
        "LEFT JOIN balance_effects f ON f.entry_id = e.id AND f.kind = 'entry' "
        "WHERE e.tenant_id = $1 AND e.id = $2", tenant_id, entry_id)
