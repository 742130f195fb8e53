"""Migrations of cells whose databases share one PostgreSQL server (make run, this test session), and the
routines applied after them.

The migration lock is per database but a role is cluster-wide: two cells starting together used to race
on ``CREATE ROLE ledger_app`` and one of them died at start-up with a unique violation.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path

import asyncpg
import pytest

from cell.store.migrate import (
    MIGRATIONS_DIR,
    NO_TRANSACTION,
    ROUTINES,
    expected,
    migrate,
    migration_files,
    pending_migrations,
    routine_files,
)


async def test_cells_sharing_a_server_migrate_at_the_same_moment(make_database, tmp_path):
    # The session's server already has ledger_app; the same migrations under a role nobody has created yet
    # put every database back at the moment of the race.
    # The schema goes in first, database by database, so that the role's migration starts everywhere at once.
    # ledger_worker is renamed too: created first here, as a member of the renamed role, it would be left
    # outside ledger_app for every database migrated later in the session.
    suffix = uuid.uuid4().hex[:10]
    role, worker = f"ledger_app_{suffix}", f"ledger_worker_{suffix}"
    schema, with_role = tmp_path / "schema", tmp_path / "all"
    schema.mkdir()
    with_role.mkdir()
    names = [name for name, _ in migration_files(MIGRATIONS_DIR)]
    for name, path in migration_files(MIGRATIONS_DIR):
        text = path.read_text().replace("ledger_app", role).replace("ledger_worker", worker)
        (with_role / path.name).write_text(text)
        if name < "0003":
            (schema / path.name).write_text(text)
    urls = [make_database(f"migrate_race_{uuid.uuid4().hex[:8]}", migrate_cell=False) for _ in range(6)]

    async def migrate_one(url: str, directory) -> list[str]:
        conn = await asyncpg.connect(url)
        try:
            return await migrate(conn, directory)
        finally:
            await conn.close()

    for url in urls:
        await migrate_one(url, schema)
    applied = await asyncio.gather(*(migrate_one(url, with_role) for url in urls))

    assert applied == [[name for name in names if name >= "0003"]] * len(urls)
    conn = await asyncpg.connect(urls[0])
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = $1", role) == 1
        # The role got its grants in every database: insert-only entries included.
        for url in urls:
            db = await asyncpg.connect(url)
            try:
                assert await db.fetchval("SELECT has_table_privilege($1, 'ledger_entries', 'INSERT')", role)
                assert not await db.fetchval("SELECT has_table_privilege($1, 'ledger_entries', 'UPDATE')", role)
            finally:
                await db.close()
    finally:
        await conn.close()


# ---- routines: code, re-applied when their text changes --------------------------------------------------------

ROUTINE_NAMES = [f"routine:{name}" for name in ROUTINES]


async def _connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(url)


def _copy_store(tmp_path) -> tuple:
    """The cell's migrations and routines copied side by side, to be changed by a test."""
    migrations, routines = tmp_path / "migrations", tmp_path / "routines"
    shutil.copytree(MIGRATIONS_DIR, migrations)
    shutil.copytree(MIGRATIONS_DIR.parent / "routines", routines)
    return migrations, routines


async def test_a_fresh_database_gets_the_migrations_then_every_routine_in_order(make_database):
    conn = await _connect(make_database(f"routines_fresh_{uuid.uuid4().hex[:8]}", migrate_cell=False))
    try:
        assert await pending_migrations(conn) == [name for name, _ in migration_files()] + ROUTINE_NAMES
        assert await migrate(conn) == [name for name, _ in migration_files()] + ROUTINE_NAMES
        assert await pending_migrations(conn) == []
        checksums = {r["name"]: r["checksum"] for r in await conn.fetch("SELECT name, checksum FROM schema_routines")}
        assert checksums == {name: checksum for name, _, checksum in routine_files()}
        # /readyz asks as the cell's role.
        assert await conn.fetchval("SELECT has_table_privilege('ledger_app', 'schema_routines', 'SELECT')")
        assert await conn.fetchval("SELECT has_function_privilege('ledger_app', 'ledger_post(text, text, bytea, uuid,"
                                   " uuid, text, text, timestamptz, text, jsonb, uuid, uuid[], uuid[], text[], bigint[],"
                                   " uuid[], jsonb, jsonb, text, text, jsonb, jsonb, boolean, jsonb, bytea)', 'EXECUTE')")
    finally:
        await conn.close()


async def test_unchanged_routines_are_not_created_again(make_database):
    conn = await _connect(make_database(f"routines_same_{uuid.uuid4().hex[:8]}"))
    try:
        def snapshot():
            return conn.fetch("SELECT p.proname, p.xmin::text AS row_version, r.applied_at FROM pg_proc p"
                              " JOIN schema_routines r ON r.name = 'routine:' || substr(p.proname, 8)"
                              " WHERE p.proname LIKE 'ledger\\_%' ORDER BY 1")
        before = [tuple(r) for r in await snapshot()]
        assert len(before) == len(ROUTINES)
        assert await migrate(conn) == []
        assert [tuple(r) for r in await snapshot()] == before
    finally:
        await conn.close()


async def test_a_changed_routine_is_applied_again_and_reported_pending_until_then(make_database, tmp_path):
    migrations, routines = _copy_store(tmp_path)
    conn = await _connect(make_database(f"routines_changed_{uuid.uuid4().hex[:8]}", migrate_cell=False))
    try:
        assert await migrate(conn, migrations) == [name for name, _ in migration_files()] + ROUTINE_NAMES
        path = routines / "version_hash.sql"
        path.write_text(path.read_text().replace("sha256(", "sha512("))
        assert await pending_migrations(conn, migrations) == ["routine:version_hash"]
        assert await migrate(conn, migrations) == ["routine:version_hash"]
        assert await pending_migrations(conn, migrations) == []
        assert len(await conn.fetchval("SELECT ledger_version_hash(NULL, '{}')")) == 64
        assert await migrate(conn, migrations) == []
    finally:
        await conn.close()


async def test_an_old_process_during_an_upgrade_neither_reports_nor_writes_back_its_older_routines(make_database,
                                                                                                  tmp_path):
    """An upgrade's migration job runs the new code's migrations and routines before the rollout: the old API
    processes still serving are not unready for routines that differ from theirs (every one of them out of its
    Service at once: an outage), and one restarting meanwhile does not write its older text back over the new."""
    migrations, routines = _copy_store(tmp_path)
    conn = await _connect(make_database(f"routines_newer_{uuid.uuid4().hex[:8]}", migrate_cell=False))
    try:
        await migrate(conn, migrations)
        newer = tmp_path / "newer"  # the new code: one more migration, a changed routine
        shutil.copytree(migrations, newer / "migrations")
        shutil.copytree(routines, newer / "routines")
        (newer / "migrations" / "9999_newer.sql").write_text("SELECT 1;\n")
        path = newer / "routines" / "version_hash.sql"
        path.write_text(path.read_text().replace("sha256(", "sha512("))
        assert await migrate(conn, newer / "migrations") == ["9999_newer", "routine:version_hash"]
        assert await pending_migrations(conn, migrations) == []  # the old code's view: ready
        assert await migrate(conn, migrations) == []  # nothing written back
        assert len(await conn.fetchval("SELECT ledger_version_hash(NULL, '{}')")) == 64  # sha512: the newer one's
        await conn.execute("DELETE FROM schema_migrations WHERE name = '9999_newer'")  # the same migrations: as before
        assert await pending_migrations(conn, migrations) == ["routine:version_hash"]
    finally:
        await conn.close()


def _routines_at(tmp_path, name: str, generation: int, sha: str) -> Path:
    """The cell's code at a routines generation, its version_hash with `sha` (sha256 in the code): another
    release's code, whose migrations are the same (an upgrade or a rollback that changes routines only)."""
    migrations, routines = tmp_path / name / "migrations", tmp_path / name / "routines"
    shutil.copytree(MIGRATIONS_DIR, migrations)
    shutil.copytree(MIGRATIONS_DIR.parent / "routines", routines)
    with (routines / "generations.txt").open("a") as file:
        file.write(f"{generation} (a test's)\n")
    path = routines / "version_hash.sql"
    path.write_text(path.read_text().replace("sha256(", f"{sha}("))
    return migrations


async def _hash_length(conn: asyncpg.Connection) -> int:
    return len(await conn.fetchval("SELECT ledger_version_hash(NULL, '{}')"))


async def test_an_old_process_during_a_routines_only_upgrade_keeps_the_newer_routines_and_stays_ready(
        make_database, tmp_path):
    """An upgrade that changes routines and adds no migration: an old process (a lower routines generation, an older
    body of ledger_version_hash) restarting during the rollout neither writes its older body back over the newer
    one nor goes unready; the new code upgrades a database the old code migrated."""
    generation = expected().generation
    older = _routines_at(tmp_path, "older", generation - 1, "sha512")
    conn = await _connect(make_database(f"routines_gen_{uuid.uuid4().hex[:8]}"))  # the current code's routines
    try:
        assert await pending_migrations(conn, older) == []  # the old code's view: ready
        assert await migrate(conn, older) == []  # nothing written back
        assert await _hash_length(conn) == 32  # sha256: the newer body
        assert await pending_migrations(conn) == []
    finally:
        await conn.close()
    # The reverse: the current code upgrades a database the older code's routines are in.
    conn = await _connect(make_database(f"routines_gen_up_{uuid.uuid4().hex[:8]}", migrate_cell=False))
    try:
        await migrate(conn, older)
        assert await _hash_length(conn) == 64
        assert await pending_migrations(conn) == ["routine:version_hash"]
        assert await migrate(conn) == ["routine:version_hash"]
        assert await _hash_length(conn) == 32
        assert await pending_migrations(conn) == []
        assert await pending_migrations(conn, older) == []
        assert await migrate(conn, older) == []
        assert await _hash_length(conn) == 32
    finally:
        await conn.close()


async def test_old_and_new_processes_starting_at_once_leave_the_newer_routines(make_database, tmp_path):
    """A rollout's old and new processes all start together on a database of the old routines: whichever takes the
    migration lock first, the newer routines are what stays, and every process is ready."""
    generation = expected().generation
    older = _routines_at(tmp_path, "older", generation - 1, "sha512")
    url = make_database(f"routines_gen_race_{uuid.uuid4().hex[:8]}", migrate_cell=False)
    conn = await _connect(url)
    try:
        await migrate(conn, older)

        async def start(directory: Path) -> list[str]:
            process = await _connect(url)
            try:
                return await migrate(process, directory)
            finally:
                await process.close()

        applied = await asyncio.gather(*(start(d) for d in (older, MIGRATIONS_DIR) * 3))
        assert sorted(applied) == [[]] * 5 + [["routine:version_hash"]]
        assert await _hash_length(conn) == 32
        assert await pending_migrations(conn) == [] and await pending_migrations(conn, older) == []
    finally:
        await conn.close()


async def test_routines_of_a_new_generation_that_fail_half_written_are_not_written_back_by_an_old_process(
        make_database, tmp_path):
    """The new code's routines fail part of the way (one of them does not compile against this database): the
    generation is recorded first, so an old process starting before the new code's next start keeps the newer
    routines already written, and that next start (the routine fixed) writes the rest."""
    generation = expected().generation
    newer = _routines_at(tmp_path, "newer", generation + 1, "sha512")
    last = newer.parent / "routines" / f"{ROUTINES[-1]}.sql"
    good = last.read_text()
    last.write_text(good + "\nSELECT no_such_column FROM no_such_table;\n")
    conn = await _connect(make_database(f"routines_gen_half_{uuid.uuid4().hex[:8]}"))
    try:
        with pytest.raises(asyncpg.UndefinedTableError):
            await migrate(conn, newer)
        assert await _hash_length(conn) == 64  # the new version_hash, written before the failure
        assert await pending_migrations(conn) == []  # the old code: ready, and leaves them be
        assert await migrate(conn) == []
        assert await _hash_length(conn) == 64
        assert await pending_migrations(conn, newer) == [f"routine:{ROUTINES[-1]}"]  # the new code: not yet ready
        last.write_text(good + "-- fixed\n")
        assert await migrate(conn, newer) == [f"routine:{ROUTINES[-1]}"]
        assert await pending_migrations(conn, newer) == []
    finally:
        await conn.close()


async def test_the_same_routines_generation_compares_the_routines_bodies(make_database, tmp_path):
    """Two codes of one generation (a routine changed without its bump: a developer's tree) are told apart by
    their hashes, as before generations: each applies its own."""
    generation = expected().generation
    other = _routines_at(tmp_path, "other", generation, "sha512")
    conn = await _connect(make_database(f"routines_gen_same_{uuid.uuid4().hex[:8]}"))
    try:
        assert await pending_migrations(conn, other) == ["routine:version_hash"]
        assert await migrate(conn, other) == ["routine:version_hash"]
        assert await _hash_length(conn) == 64
        assert await migrate(conn) == ["routine:version_hash"]
        assert await _hash_length(conn) == 32
    finally:
        await conn.close()


async def test_a_routine_missing_from_the_order_is_a_loud_error(tmp_path):
    migrations, routines = _copy_store(tmp_path)
    (routines / "stray.sql").write_text("SELECT 1;")
    with pytest.raises(RuntimeError, match="stray"):
        routine_files(migrations)


async def test_a_database_whose_0002_created_the_routines_gets_the_new_ones(make_database):
    """Before routines were files, 0002 created them, ledger_apply with a p_skip_locked; such a database has
    0002 recorded and no schema_routines. Its routines are replaced, the old ledger_apply signature dropped."""
    conn = await _connect(make_database(f"routines_old_{uuid.uuid4().hex[:8]}"))
    try:
        await conn.execute("""
            DROP TABLE schema_routines;
            DROP FUNCTION ledger_apply(uuid[], text, ledger_new_effect[]);
            DROP FUNCTION ledger_balances(text, numeric, numeric, numeric, numeric);
            CREATE FUNCTION ledger_apply(p_accounts uuid[], p_skip_locked boolean DEFAULT false,
                                         p_tenant text DEFAULT NULL, p_new ledger_new_effect[] DEFAULT '{}')
            RETURNS integer LANGUAGE plpgsql AS $$ BEGIN RETURN -1; END $$;
            CREATE OR REPLACE FUNCTION ledger_apply_report(p_accounts uuid[], p_skip_locked boolean)
            RETURNS TABLE (applied integer, skipped uuid[], lags_ms double precision[]) LANGUAGE plpgsql AS $$
            BEGIN applied := ledger_apply(p_accounts, false); skipped := '{}'; lags_ms := '{}'; RETURN NEXT; END $$;
        """)
        assert await pending_migrations(conn) == ROUTINE_NAMES
        assert await migrate(conn) == ROUTINE_NAMES
        assert await pending_migrations(conn) == []
        assert [r["args"] for r in await conn.fetch(
            "SELECT pg_get_function_identity_arguments(oid) AS args FROM pg_proc WHERE proname = 'ledger_apply'")] == [
            "p_accounts uuid[], p_tenant text, p_new ledger_new_effect[]"]
        assert await conn.fetchval("SELECT applied FROM ledger_apply_report($1::uuid[], false)", [uuid.uuid4()]) == 0
        assert await conn.fetchval("SELECT available_amount FROM ledger_balances('credit', 30, 0, 0, 100)") == 70
    finally:
        await conn.close()


async def test_several_databases_and_several_cells_on_one_database_migrate_at_once(make_database):
    urls = [make_database(f"routines_race_{uuid.uuid4().hex[:8]}", migrate_cell=False) for _ in range(4)]

    async def migrate_one(url: str) -> list[str]:
        conn = await _connect(url)
        try:
            return await migrate(conn)
        finally:
            await conn.close()

    # Two cells start on each database: under the lock, one applies everything, the other nothing.
    applied = await asyncio.gather(*(migrate_one(url) for url in urls for _ in range(2)))
    everything = [name for name, _ in migration_files()] + ROUTINE_NAMES
    for first, second in zip(applied[::2], applied[1::2]):
        assert sorted([first, second]) == [[], everything]
    for url in urls:
        conn = await _connect(url)
        try:
            assert await pending_migrations(conn) == []
        finally:
            await conn.close()


def _no_transaction_store(tmp_path, index: str) -> Path:
    """Two migrations: a table with a duplicated value, then an index built CONCURRENTLY (NO_TRANSACTION)."""
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "0001_table.sql").write_text(
        "CREATE TABLE t (id int PRIMARY KEY, v int);\n"
        "INSERT INTO t SELECT i, i % 500 FROM generate_series(1, 1000) i;\n")
    (directory / "0002_index.sql").write_text(
        f"{NO_TRANSACTION}\n-- built while the table is written\n"
        "SET lock_timeout = '10s';\n"
        f"CREATE {index} CONCURRENTLY IF NOT EXISTS t_v ON t (v);\n"
        "RESET lock_timeout;\n")
    return directory


async def _index_valid(conn) -> bool | None:
    return await conn.fetchval("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                               "WHERE c.relname = 't_v'")


async def test_migrators_wait_for_a_concurrent_index_build_without_a_deadlock(make_database, tmp_path):
    """CREATE INDEX CONCURRENTLY waits out every snapshot older than its own: a migrator blocked in
    pg_advisory_lock would hold one, and wait for the builder's lock (a deadlock); they poll instead."""
    directory = _no_transaction_store(tmp_path, "INDEX")
    url = make_database(f"migrate_cic_{uuid.uuid4().hex[:8]}", migrate_cell=False)
    conns = [await _connect(url) for _ in range(4)]
    try:
        applied = await asyncio.gather(*(migrate(c, directory) for c in conns))
        assert sorted(applied, key=len) == [[], [], [], ["0001_table", "0002_index"]]
        assert await _index_valid(conns[0]) is True
    finally:
        for c in conns:
            await c.close()


async def test_an_index_a_failed_concurrent_build_left_invalid_is_built_again(make_database, tmp_path):
    directory = _no_transaction_store(tmp_path, "UNIQUE INDEX")
    conn = await _connect(make_database(f"migrate_cic_retry_{uuid.uuid4().hex[:8]}", migrate_cell=False))
    try:
        with pytest.raises(asyncpg.UniqueViolationError):
            await migrate(conn, directory)
        assert await _index_valid(conn) is False
        assert await pending_migrations(conn, directory) == ["0002_index"]
        await conn.execute("DELETE FROM t WHERE id > 500")
        assert await migrate(conn, directory) == ["0002_index"]
        assert await _index_valid(conn) is True
    finally:
        await conn.close()


_EVENT = ("INSERT INTO events (id, tenant_id, resource, event_name, entity_id, data, event_time, position)"
          " VALUES (gen_random_uuid(), $1, 'ledger_transaction', 'ledger_transaction.created', gen_random_uuid(),"
          " '{}', '2026-05-01'::timestamptz + $3 * interval '1 hour', $2)")  # tenant, position, hour


async def _before_0198(conn: asyncpg.Connection, rows: list[tuple]) -> None:
    """The database as 0198 finds it (no bounds), with these events."""
    await conn.execute("ALTER TABLE events DROP COLUMN event_time_max;"
                       "DELETE FROM schema_migrations WHERE name = '0198_event_time_bound'")
    await conn.executemany(_EVENT, rows)


async def _bounds(conn: asyncpg.Connection) -> list[tuple]:
    return [tuple(r) for r in await conn.fetch(
        "SELECT tenant_id, position, extract(hour FROM event_time_max AT TIME ZONE 'UTC')::int AS hour FROM events"
        " ORDER BY tenant_id, position")]


@pytest.mark.parametrize("batch", [None, 1, 2])  # positions a batch of the backfill (None: the default, 10,000)
async def test_0198_bounds_every_positioned_event_by_the_latest_time_of_its_stream_so_far(make_database, batch):
    """A cell upgraded to 0198: each positioned event gets its tenant's latest event time up to its position, whatever
    order the times came in and however the stream is cut in batches; an event not positioned yet gets none (the
    sequencer gives it one); one bounded already keeps its bound (a backfill run again after a failed start)."""
    conn = await _connect(make_database(f"event_bounds_{uuid.uuid4().hex[:8]}"))
    try:
        await _before_0198(conn, [("a", 1, 2), ("a", 2, 1), ("a", 3, 3), ("a", 4, 0), ("a", 5, 4), ("b", 1, 5),
                                  ("b", 2, 4), ("b", 3, 6), ("a", None, 0)])
        if batch is not None:
            await conn.execute(f"SET ledger.event_bounds_batch = {batch}")
        assert await migrate(conn) == ["0198_event_time_bound"]
        bounded = [("a", 1, 2), ("a", 2, 2), ("a", 3, 3), ("a", 4, 3), ("a", 5, 4), ("a", None, None), ("b", 1, 5),
                   ("b", 2, 5), ("b", 3, 6)]
        assert await _bounds(conn) == bounded
        # Run again with the first positions bounded (marked an hour on) and the rest not: those keep theirs.
        await conn.execute("UPDATE events SET event_time_max = event_time_max + interval '1 hour' WHERE position = 1;"
                           "UPDATE events SET event_time_max = NULL WHERE position > 1;"
                           "DELETE FROM schema_migrations WHERE name = '0198_event_time_bound'")
        assert await migrate(conn) == ["0198_event_time_bound"]
        assert await _bounds(conn) == [("a", 1, 3), ("a", 2, 2), ("a", 3, 3), ("a", 4, 3), ("a", 5, 4),
                                       ("a", None, None), ("b", 1, 6), ("b", 2, 5), ("b", 3, 6)]
    finally:
        await conn.close()


async def test_0198_bounds_a_live_cells_events_while_postings_write_on(make_database):
    """0198 runs on a live cell: while its backfill waits for a positioned event's row (locked here once the column is
    there), a posting still writes its event, where in one transaction with the column added every posting waited for
    the backfill; every bound is the stream's latest time so far."""
    url = make_database(f"event_bounds_live_{uuid.uuid4().hex[:8]}")
    conn, holder, writer = [await _connect(url) for _ in range(3)]
    loop = asyncio.get_running_loop()

    async def until(query: str, what: str) -> None:
        deadline = loop.time() + 60
        while not await writer.fetchval(query, conn.get_server_pid()):
            assert loop.time() < deadline, what
            await asyncio.sleep(0.005)

    try:
        await _before_0198(conn, [])
        last = 100_000  # positions: the backfill takes seconds, a thousand a batch
        await conn.execute("INSERT INTO events (id, tenant_id, resource, event_name, entity_id, data, event_time,"
                           " position) SELECT gen_random_uuid(), 'a', 'ledger_transaction', 'ledger_transaction.created',"
                           " gen_random_uuid(), '{}', '2026-05-01'::timestamptz + (g % 97) * interval '1 hour', g"
                           f" FROM generate_series(1, {last}) g")
        await conn.execute("SET ledger.event_bounds_batch = 1000")
        migrating = asyncio.create_task(migrate(conn))
        await until("SELECT query LIKE 'DO $$%' FROM pg_stat_activity WHERE pid = $1",
                    "the backfill never began on its own, after the column was added")
        held = holder.transaction()
        await held.start()
        assert await holder.fetchval("SELECT event_time_max FROM events WHERE position = $1 FOR UPDATE", last) is None
        await until("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1",
                    "the backfill never reached the locked row")
        # the batches before it committed apart (positions 1 to 99,999), not held to the backfill's end
        assert await writer.fetchval("SELECT count(*) FROM events WHERE event_time_max IS NOT NULL") == last - 1
        await writer.execute("SET lock_timeout = '5s'")
        await writer.execute(_EVENT, "a", None, 4)  # a posting's event, written while the backfill waits
        await held.rollback()
        assert await asyncio.wait_for(migrating, 60) == ["0198_event_time_bound"]
        assert await conn.fetchval(
            "SELECT count(*) FROM (SELECT event_time_max, max(event_time) OVER (ORDER BY position) AS latest"
            " FROM events WHERE position IS NOT NULL) b WHERE event_time_max IS DISTINCT FROM latest") == 0
    finally:
        for c in (conn, holder, writer):
            await c.close()


async def test_0229_holds_the_deliveries_already_waiting_behind_an_earlier_one_and_each_is_released_in_turn(
        make_database):
    """A cell upgraded to 0229 with deliveries due behind an earlier pending one of their entity: those are held (no
    longer stepped over by every claim), the first of each entity is not; run again, nothing is held twice; the end
    of the first releases the next one, due when it was."""
    conn = await _connect(make_database(f"deliveries_waiting_{uuid.uuid4().hex[:8]}"))
    try:
        await conn.execute("DROP TRIGGER webhook_deliveries_hold_waiting ON webhook_deliveries;"
                           "DROP TRIGGER webhook_deliveries_release_next ON webhook_deliveries;"
                           "DELETE FROM schema_migrations WHERE name = '0229_webhook_deliveries_waiting'")
        await conn.execute("INSERT INTO tenants (id, name) VALUES ('t', 't')")
        endpoint = await conn.fetchval("INSERT INTO webhook_endpoints (id, tenant_id, url, event_names, key) VALUES"
                                       " (gen_random_uuid(), 't', 'http://127.0.0.1:9/hook', '{}', 'k') RETURNING id")
        a, b = uuid.uuid4(), uuid.uuid4()
        # (entity, position, status, next attempt in minutes from now): a's first in back-off, b's first delivered.
        rows = [(a, 1, "pending", 30), (a, 2, "pending", -20), (a, 3, "pending", -10), (b, 4, "succeeded", -50),
                (b, 5, "pending", -5)]
        await conn.executemany(
            "INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id, event_position, entity_id,"
            " event_name, give_up_at, status, next_attempt_at) VALUES (gen_random_uuid(), 't', $1, gen_random_uuid(),"
            " $3, $2, 'x', now() + interval '1 day', $4, date_trunc('minute', now()) + $5 * interval '1 minute')",
            [(endpoint, *row) for row in rows])

        async def scheduled() -> dict:
            return {r["event_position"]: (r["held"], r["at"]) for r in await conn.fetch(
                "SELECT event_position, next_attempt_at >= '5000-01-01 00:00:00+00' AS held,"
                " extract(minute FROM next_attempt_at)::int AS at FROM webhook_deliveries WHERE status = 'pending'")}

        before = await scheduled()
        assert await migrate(conn) == ["0229_webhook_deliveries_waiting"]
        held = {position: (position in (2, 3), at) for position, (_, at) in before.items()}
        assert await scheduled() == held
        await conn.execute("DELETE FROM schema_migrations WHERE name = '0229_webhook_deliveries_waiting'")
        assert await migrate(conn) == ["0229_webhook_deliveries_waiting"]  # a retry: nothing held twice
        assert await scheduled() == held
        await conn.execute("UPDATE webhook_deliveries SET status = 'succeeded' WHERE event_position = 1")
        assert await scheduled() == {2: (False, before[2][1]), 3: (True, before[3][1]), 5: before[5]}
    finally:
        await conn.close()
