"""The worker's apply (ledger_apply_report) reads what its group's accounts and their queued effects need, whatever
balance_effects grows to: planned per call, on statistics of still empty tables (a cell's first minutes) or on fresh
ones, none of its statements may walk a whole index (of every effect, of the applied ones, or of an account's
history)."""

from __future__ import annotations

import json

import asyncpg
import pytest
from routine_helpers import new_account, new_ledger
from test_sync_posting_reads import history, queue

EFFECTS = 80_000  # of the group's history and of another account's queue, added after the analyze
APPLY = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT applied FROM ledger_apply_report($1::uuid[], $2)"


async def apply_buffers(conn: asyncpg.Connection, tenant: str, group: list, skip_locked: bool) -> int:
    """Shared buffers one apply of the group touches (two queued effects an account), every statement of the
    routines under it included."""
    for account in group:
        await queue(conn, tenant, account, 2)
    plan = json.loads(await conn.fetchval(APPLY, [a.id for a in group], skip_locked))[0]["Plan"]
    assert await conn.fetchval("SELECT count(*) FROM balance_effects WHERE account_id = ANY($1::uuid[])"
                               " AND applied_at IS NULL", [a.id for a in group]) == 0
    return plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]


@pytest.mark.parametrize("analyzed_after", [False, True])
@pytest.mark.parametrize("skip_locked", [False, True])
async def test_an_apply_reads_as_much_with_a_long_history_as_with_none(make_database, skip_locked, analyzed_after):
    conn = await asyncpg.connect(make_database(f"worker_reads_{skip_locked}_{analyzed_after}"))  # fresh tables
    try:
        tenant, ledger = await new_ledger(conn)
        group = [await new_account(conn, "credit", tenant=tenant, ledger=ledger) for _ in range(4)]
        other = await new_account(conn, "credit", tenant=tenant, ledger=ledger)
        await conn.execute("ANALYZE")
        await apply_buffers(conn, tenant, group, skip_locked)
        before = await apply_buffers(conn, tenant, group, skip_locked)
        for account in group:
            await history(conn, tenant, account, EFFECTS // len(group))
        await queue(conn, tenant, other, EFFECTS)
        if analyzed_after:
            await conn.execute("ANALYZE")
        # Each measured on a second apply: the first after a change of the statistics reads the catalogs anew.
        await apply_buffers(conn, tenant, group, skip_locked)
        after = await apply_buffers(conn, tenant, group, skip_locked)
        # Measured: ~125 buffers, ~180 with the history (deeper indexes); a walk of one of them is hundreds more.
        assert after < before + 100, (before, after)
    finally:
        await conn.close()
