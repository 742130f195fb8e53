"""Readiness (/readyz) as the router probes it: the database's applied migrations and routines, every probe."""

from __future__ import annotations

import asyncpg
from litestar.testing import AsyncTestClient

from cell.api.app import create_app
from cell.settings import load_settings
from cell.store import migrate as migrate_module
from cell.store.migrate import migration_files


async def test_readiness_checks_the_database_at_every_probe_against_the_files_read_at_start(cell_database_url,
                                                                                            monkeypatch):
    # The process reads and hashes its migrations and routines once (its code does not change under it); every
    # probe still asks the database what it has applied.
    settings = load_settings(("CELL_TEST_UNUSED_",), database_url=cell_database_url, db_pool_min=1, db_pool_max=2,
                             sweep_interval_s=0, events_sequence_interval_s=0)
    last_migration = migration_files()[-1][0]
    async with AsyncTestClient(create_app(settings, run_migrations=False)) as cell:
        ready = await cell.get("/readyz")
        assert ready.status_code == 200, ready.text
        reads = []
        monkeypatch.setattr(migrate_module.Path, "read_text", lambda path, *a, **k: reads.append(path))
        conn = await asyncpg.connect(cell_database_url)
        checksum = await conn.fetchval("SELECT checksum FROM schema_routines WHERE name = 'routine:post'")
        applied_at = None
        try:
            await conn.execute("UPDATE schema_routines SET checksum = 'stale' WHERE name = 'routine:post'")
            stale = await cell.get("/readyz")
            assert stale.status_code == 503 and stale.json()["detail"] == "migrations pending: routine:post"
            applied_at = await conn.fetchval("DELETE FROM schema_migrations WHERE name = $1 RETURNING applied_at",
                                             last_migration)
            assert (await cell.get("/readyz")).json()["detail"] == f"migrations pending: {last_migration}, routine:post"
        finally:
            await conn.execute("INSERT INTO schema_migrations (name, applied_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                               last_migration, applied_at)
            await conn.execute("UPDATE schema_routines SET checksum = $1 WHERE name = 'routine:post'", checksum)
            await conn.close()
        assert (await cell.get("/readyz")).status_code == 200
        assert reads == []  # no file read by a probe

