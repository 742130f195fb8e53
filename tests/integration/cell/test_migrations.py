"""Migrations of cells whose databases share one PostgreSQL server (make run, this test session).

The migration lock is per database but a role is cluster-wide: two cells starting together used to race
on ``CREATE ROLE ledger_app`` and one of them died at start-up with a unique violation.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from cell.store.migrate import MIGRATIONS_DIR, migrate, migration_files


async def test_cells_sharing_a_server_migrate_at_the_same_moment(make_database, tmp_path):
    # The session's server already has ledger_app; the same migrations under a role nobody has created yet
    # put every database back at the moment of the race.
    # The schema goes in first, database by database, so that the role's migration starts everywhere at once.
    role = f"ledger_app_{uuid.uuid4().hex[:10]}"
    schema, with_role = tmp_path / "schema", tmp_path / "all"
    schema.mkdir()
    with_role.mkdir()
    names = [name for name, _ in migration_files(MIGRATIONS_DIR)]
    for name, path in migration_files(MIGRATIONS_DIR):
        text = path.read_text().replace("ledger_app", role)
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
