"""What changed since a time, for the lists that then read it by id: transactions by the index of when each last
changed (0197), entries by their transactions' and by the index of when their metadata was set (0199).

A transaction is changed when it is written, posted or archived, and later only; an entry is written with its
transaction (the same time) and changed later only by its metadata (ledger_entry_metadata). `ledgerctl verify` holds
both (verify_transaction_times, verify_entry_times). So a lower bound on a transaction's posted_at is one on its
updated_at, and the entries changed since a time are among those of the transactions changed since it and those whose
metadata was set since it. Without these a list walked every transaction (~480 more buffers at 20,000 postings) or
entry (~41,000) of the tenant."""

from __future__ import annotations

from typing import Any

import asyncpg

from cell.store.filters import OPERATORS_SQL, Where, at_most

# Lists whose bounds at most this many transactions, or entries, meet read them by id; more, by the walk.
READ_BY_IDS_MAX = 1000


def since(bounds) -> list[tuple[str, Any]]:
    """The lower bounds among `bounds` ((op, value) pairs), as bounds on a later time: `eq` and `gte` as `gte`."""
    return [("gt" if op == "gt" else "gte", value) for op, value in bounds if op in ("gt", "gte", "eq")]


async def transactions(conn: asyncpg.Connection, tenant_id: str, *, updated_at=(), posted_at=()) -> list | None:
    """The ids of the transactions that may meet these bounds (every one that does among them), when at most
    READ_BY_IDS_MAX; None when more, or when nothing bounds them from below or by updated_at."""
    bounds = [*updated_at, *since(posted_at)]
    if not bounds:
        return None
    w = Where(tenant_id)
    for op, value in bounds:
        w.add(f"t.updated_at {OPERATORS_SQL[op]} {{}}", value)
    return await at_most(conn, f"SELECT t.id FROM ledger_transactions t WHERE t.tenant_id = $1{w.sql()} "
                         f"LIMIT ${len(w.args) + 1}", *w.args, most=READ_BY_IDS_MAX)


async def entries(conn: asyncpg.Connection, tenant_id: str, *, updated_at) -> list | None:
    """The ids of the entries that may meet these bounds on updated_at (every one that does among them), when at most
    READ_BY_IDS_MAX; None when more, or when no bound is from below."""
    lower = since(updated_at)
    if not lower:
        return None
    written = await transactions(conn, tenant_id, updated_at=lower)
    if written is None:
        return None
    w = Where(tenant_id)
    set_since = "".join(f" AND m.updated_at {OPERATORS_SQL[op]} {w.bind(value)}" for op, value in updated_at)
    return await at_most(conn, "SELECT e.id FROM ledger_entries e WHERE e.tenant_id = $1 AND e.transaction_id = "
                         f"ANY({w.bind(written)}::uuid[]) UNION SELECT m.entry_id FROM ledger_entry_metadata m "
                         f"WHERE m.tenant_id = $1{set_since} LIMIT ${len(w.args) + 1}", *w.args,
                         most=READ_BY_IDS_MAX)
