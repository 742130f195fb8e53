"""The audit sealer's pass bounds (ledger_audit_horizon) cost two index probes whatever the covered tables grow to:
the statement keeps the plan a sealer's connection makes on its first passes, perhaps on a new cell's tables
analyzed while empty, and no such plan may scan ledger_transaction_versions or ledger_accounts (measured on a
hot-account stack: 5-19 ms a pass, the tables read from their oldest rows, the unsealed ones being the newest)."""

from __future__ import annotations

import json

import asyncpg

from cell.store.queries import Q

VERSIONS = 20_000  # sealed versions (below the watermark), written after the plan is made


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
        await conn.execute("INSERT INTO ledger_transactions (id, tenant_id, ledger_id, status, effective_at, created_at,"
                           " updated_at) SELECT gen_random_uuid(), 't', $1, 'posted', now(), now(), now()"
                           " FROM generate_series(1, $2)", ledger, VERSIONS)
        await conn.execute("INSERT INTO ledger_transaction_versions (transaction_id, version, tenant_id, snapshot, hash,"
                           " created_at) SELECT id, 1, 't', jsonb_build_object('pad', repeat('x', 300)), '\\x00', now()"
                           " FROM ledger_transactions")
        await conn.execute("UPDATE audit_sealer SET done_txid = pg_current_xact_id()")  # all of them sealed
        after = await bounds_buffers(conn)
        assert (await conn.fetchrow("EXECUTE bounds"))["written"] is False
        # Measured: a few buffers either way; a scan of the versions is ~1,000 more at this history.
        assert after < before + 20, (before, after)
    finally:
        await conn.close()
