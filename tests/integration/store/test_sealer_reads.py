"""The audit sealer's pass bounds (ledger_audit_horizon) cost two index probes whatever the covered tables grow to:
the statement keeps the plan a sealer's connection makes on its first passes, perhaps on a new cell's tables
analyzed while empty, and no such plan may scan ledger_transaction_versions or ledger_accounts (measured on a
hot-account stack: 5-19 ms a pass, the tables read from their oldest rows, the unsealed ones being the newest).
And a pass's batch of unsealed versions costs what the batch holds, not the whole backlog behind it; one call of the
sealer's passes (worker/sealer.py, each second) seals the whole backlog, not a batch."""

from __future__ import annotations

import json

import asyncpg

from cell.store import audit
from cell.store.queries import Q

VERSIONS = 20_000  # sealed versions (below the watermark), written after the plan is made
BATCH = audit.SEAL_BATCH_MAX_DEFAULT  # a sealer pass's batch


async def write_versions(conn: asyncpg.Connection, ledger, count: int, per_transaction: int = 500) -> None:
    """`count` versions of new transactions, `per_transaction` to a database transaction (each its own audit_txid)."""
    for _ in range(count // per_transaction):
        async with conn.transaction():
            await conn.execute("INSERT INTO ledger_transactions (id, tenant_id, ledger_id, status, effective_at,"
                               " created_at, updated_at) SELECT gen_random_uuid(), 't', $1, 'posted', now(), now(),"
                               " now() FROM generate_series(1, $2)", ledger, per_transaction)
            await conn.execute("INSERT INTO ledger_transaction_versions (transaction_id, version, tenant_id, snapshot,"
                               " hash, created_at) SELECT t.id, 1, 't', jsonb_build_object('pad', repeat('x', 300)),"
                               " '\\x00', now() FROM ledger_transactions t WHERE NOT EXISTS (SELECT 1 FROM"
                               " ledger_transaction_versions v WHERE v.transaction_id = t.id)")


async def bounds_buffers(conn: asyncpg.Connection) -> int:
    """Shared buffers the sealer's statement touches, run as its connection runs it (a prepared statement)."""
    top = json.loads(await conn.fetchval("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE bounds"))[0]["Plan"]
    return top["Shared Hit Blocks"] + top["Shared Read Blocks"]


async def test_a_pass_bounds_read_as_much_after_a_long_history_as_before_any(make_database):
    conn = await asyncpg.connect(make_database("sealer_reads"))  # fresh tables; this connection's plans
    try:
        for table in ("ledger_transaction_versions", "ledger_accounts", "ledger_transactions"):
            await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")  # no analyze makes new plans
        await conn.execute("ANALYZE")
        await conn.execute("PREPARE bounds AS " + Q["audit_horizon_and_done"])
        for _ in range(6):  # the plan is made here, on empty tables
            await conn.fetchrow("EXECUTE bounds")
        before = await bounds_buffers(conn)
        await conn.execute("INSERT INTO tenants (id, name) VALUES ('t', 't')")
        ledger = await conn.fetchval("INSERT INTO ledgers (id, tenant_id, name) VALUES (gen_random_uuid(), 't', 'l')"
                                     " RETURNING id")
        await write_versions(conn, ledger, VERSIONS, per_transaction=VERSIONS)
        await conn.execute("UPDATE audit_sealer SET done_txid = pg_current_xact_id()")  # all of them sealed
        after = await bounds_buffers(conn)
        assert (await conn.fetchrow("EXECUTE bounds"))["written"] is False
        # Measured: a few buffers either way; a scan of the versions is ~1,000 more at this history.
        assert after < before + 20, (before, after)
    finally:
        await conn.close()


def nodes(plan: dict) -> list[str]:
    return [plan["Node Type"]] + [n for child in plan.get("Plans", []) for n in nodes(child)]


async def first_batch(conn: asyncpg.Connection) -> tuple[int, int, list[str]]:
    """(versions returned, shared buffers touched, plan nodes) of the sealer's first batch of unsealed versions,
    planned as its pass plans it, between its watermark and the current horizon."""
    async with conn.transaction():
        await conn.execute(Q["audit_custom_plans"])
        _, done, _ = await conn.fetchrow(Q["audit_horizon_and_done"])
        horizon = await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        await conn.execute("PREPARE unsealed(bigint, bigint, text, int) AS " + Q["audit_unsealed_versions"])
        await conn.execute(Q["audit_read_in_order"])
        plan = json.loads(await conn.fetchval(
            f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE unsealed({done}, {horizon}, NULL, {BATCH})"))[0]["Plan"]
        await conn.execute("DEALLOCATE unsealed")
    return plan["Actual Rows"], plan["Shared Hit Blocks"] + plan["Shared Read Blocks"], nodes(plan)


async def test_a_pass_reads_its_batch_not_the_backlog_behind_it(make_database):
    # Measured on a hot-account stack before the index on (audit_txid, seq): 86,000 versions behind, each pass read,
    # probed and sorted on disk all of them for its 5,000 (0.6 s a pass, a third of a core, the backlog growing): a
    # bitmap scan and a sort, the plan made for the 3,978 rows the statistics said the range held. On tables this
    # small the statistics are closer and the planner took an incremental sort by the old index, reading about a
    # batch; what holds it is the plan's shape: the batch read in the index's order, no sort, whatever they say.
    conn = await asyncpg.connect(make_database("sealer_backlog"))
    try:
        await conn.execute("INSERT INTO tenants (id, name) VALUES ('t', 't')")
        ledger = await conn.fetchval("INSERT INTO ledgers (id, tenant_id, name) VALUES (gen_random_uuid(), 't', 'l')"
                                     " RETURNING id")
        await write_versions(conn, ledger, VERSIONS // 2)  # a history, sealed: a link each
        await audit.seal_until_caught_up(conn)
        await write_versions(conn, ledger, BATCH // 2)
        await conn.execute("ANALYZE")  # the statistics of a short backlog
        await write_versions(conn, ledger, BATCH + BATCH // 2)
        rows, small, plan = await first_batch(conn)
        assert rows == BATCH
        assert not {"Sort", "Incremental Sort", "Bitmap Heap Scan"} & set(plan), plan
        await write_versions(conn, ledger, 8 * BATCH)  # a backlog 5 times as long
        rows, large, plan = await first_batch(conn)
        assert rows == BATCH
        assert not {"Sort", "Incremental Sort", "Bitmap Heap Scan"} & set(plan), plan
        # Measured: the same buffers; reading the whole backlog is 5 times as many.
        assert large < 2 * small, (small, large)
        # One call of the sealer's passes links the whole backlog, a batch a pass (each a little short of one: a pass
        # ends before its batch's last transaction, whose versions may go on), and every version has its link.
        assert await audit.seal_until_caught_up(conn) == 10 * BATCH
        links = await conn.fetchval("SELECT count(*) FROM audit_links WHERE kind = 'version'")
        assert links == VERSIONS // 2 + 10 * BATCH
    finally:
        await conn.close()
