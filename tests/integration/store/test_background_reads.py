"""The cell's background statements (the sweeper's stale accounts, the queue gauges of /readyz and /metrics) read
what they find, not the whole of balance_effects, in the sessions that run them (db.INDEX_PLANS): they keep the plans
a connection makes on its first runs, perhaps on a new cell's tables analyzed while empty, where a sequential scan
of every effect ever written looked free."""

from __future__ import annotations

import json

import asyncpg
import pytest

from cell.store.db import INDEX_PLANS
from cell.store.queries import Q

APPLIED = 20_000  # applied effects, written after the plans are made
STATEMENTS = {"worker_stale_accounts": "(5, 100)", "worker_queue_gauges": "", "worker_unapplied_older_than": "(5)"}


async def buffers(conn: asyncpg.Connection, name: str) -> int:
    plan = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE {name}{STATEMENTS[name]}")
    top = json.loads(plan)[0]["Plan"]
    return top["Shared Hit Blocks"] + top["Shared Read Blocks"]


@pytest.mark.parametrize("planner", ["background_sessions", "default_planner"])
async def test_the_queue_statements_read_as_much_after_a_long_history_as_before_any(make_database, planner):
    url = make_database(f"background_reads_{planner}")
    conn = await asyncpg.connect(url, server_settings=INDEX_PLANS if planner == "background_sessions" else None)
    try:
        await conn.execute("ALTER TABLE balance_effects SET (autovacuum_enabled = off)")  # no analyze: no new plans
        await conn.execute("ANALYZE")
        for name, args in STATEMENTS.items():  # the plans are made here, on empty tables
            await conn.execute(f"PREPARE {name} AS {Q[name]}")
            for _ in range(6):
                await conn.execute(f"EXECUTE {name}{args}")
        before = {name: await buffers(conn, name) for name in STATEMENTS}
        await conn.execute(
            "INSERT INTO balance_effects (tenant_id, account_id, entry_id, kind, d_pending_debits, d_pending_credits,"
            " d_posted_debits, d_posted_credits, effective_at, applied_at, lock_version, pending_debits,"
            " pending_credits, posted_debits, posted_credits) SELECT 't', gen_random_uuid(), gen_random_uuid(), 'entry',"
            " 1, 0, 1, 0, now(), now(), g, 0, 0, 0, 0 FROM generate_series(1, $1) g", APPLIED)
        after = {name: await buffers(conn, name) for name in STATEMENTS}
        grown = {name: after[name] - before[name] for name in STATEMENTS}
        if planner == "background_sessions":
            # Measured: 0-2 buffers either way (the unapplied effects' partial index, empty).
            assert all(g < 20 for g in grown.values()), (before, after)
        else:  # what these sessions had before: every applied effect read at every sweep and probe
            assert all(g > 300 for g in grown.values()), (before, after)
    finally:
        await conn.close()
