"""The events sequencer reads what the events it positions need, whatever the events table grows to: its statements
keep the plans a sequencer's connection makes on its first calls, perhaps on a new cell's events table analyzed
while empty, and no such plan may scan the table or walk a whole index (measured on a fresh cell under load: every
call read each event ever written three times and compared the batch with each of them, ~1.4 s a call at 7,600
events, until the next analyze)."""

from __future__ import annotations

import json

import asyncpg

SHORT, HISTORY = 2_000, 20_000  # positioned events of the tenant, written after the plans are made
BATCH = 50  # events waiting for a position
COLUMNS = "id, tenant_id, resource, event_name, entity_id, data"
VALUES = ("gen_random_uuid(), $1, 'ledger_transaction', 'ledger_transaction.created', gen_random_uuid(),"
          " jsonb_build_object('pad', repeat('x', 300))")
SEQUENCE = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT ledger_sequence_events()"


async def sequencer_buffers(conn: asyncpg.Connection) -> int:
    """Shared buffers one sequencer call touches, every statement under it included."""
    top = json.loads(await conn.fetchval(SEQUENCE))[0]["Plan"]
    return top["Shared Hit Blocks"] + top["Shared Read Blocks"]


async def waiting(conn: asyncpg.Connection, tenant: str, n: int) -> None:
    await conn.execute(f"INSERT INTO events ({COLUMNS}) SELECT {VALUES} FROM generate_series(1, $2)", tenant, n)


async def history(conn: asyncpg.Connection, tenant: str, n: int) -> int:
    """n more events of the tenant, positioned as the sequencer leaves them (written so: the unpositioned index keeps
    no entry of them, as after a vacuum); returns the last position."""
    last = await conn.fetchval("SELECT coalesce(max(position), 0) FROM events WHERE tenant_id = $1", tenant)
    await conn.execute(f"INSERT INTO events ({COLUMNS}, position, event_time_max, event_time_floor) SELECT {VALUES}, g,"
                       " now(), now()"
                       " FROM generate_series($2::bigint, $3::bigint) g", tenant, last + 1, last + n)
    return last + n


async def test_a_sequencer_call_reads_as_much_after_a_long_history_as_before_any(make_database):
    conn = await asyncpg.connect(make_database("sequencer_reads"))  # fresh tables; this connection's plans
    try:
        await conn.execute("ALTER TABLE events SET (autovacuum_enabled = off)")  # no analyze makes new plans
        await conn.execute("INSERT INTO tenants (id, name) VALUES ('t', 't')")
        await conn.execute("ANALYZE events")  # what autovacuum or an operator may do while a cell is new
        for _ in range(6):  # the plans are made here, on an empty table (past plpgsql's five custom plans)
            await conn.fetchval("SELECT ledger_sequence_events()")
        await history(conn, "t", SHORT)
        await waiting(conn, "t", BATCH)
        before = await sequencer_buffers(conn)
        last = await history(conn, "t", HISTORY)
        await waiting(conn, "t", BATCH)
        after = await sequencer_buffers(conn)
        positions = await conn.fetch("SELECT position FROM events WHERE position > $1 ORDER BY seq", last)
        assert [r["position"] for r in positions] == list(range(last + 1, last + BATCH + 1))
        # Measured: ~600 buffers either way (the batch's own rows and index entries); each scan of the table the
        # plan made on the empty one did is ~2,700 more at this history.
        assert after < before + 150, (before, after)
    finally:
        await conn.close()
