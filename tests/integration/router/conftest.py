"""Router test fixtures: a migrated control-plane database with two stand-in cells registered."""

from __future__ import annotations

import uuid

import pytest

from control_plane.catalog import connect, migrate_catalog
from control_plane.devstack import free_port
from router_rig import EchoCell, Platform, Served


@pytest.fixture(scope="module")
async def platform(make_database, redis_url):
    url = make_database(f"cp_router_{uuid.uuid4().hex[:6]}", migrate_cell=False)
    conn = await connect(url)
    try:
        await migrate_catalog(conn)
    finally:
        await conn.close()
    cells = {name: await Served(EchoCell(name)).start() for name in ("cell-a", "cell-b")}
    platform = Platform(url, redis_url, cells)
    for name, served in cells.items():
        await platform.sql("INSERT INTO cells (name, api_url, database_url) VALUES ($1, $2, '')", name, served.url)
    # A registered cell that nothing serves.
    await platform.sql("INSERT INTO cells (name, api_url, database_url) VALUES ('cell-down', $1, '')",
                       f"http://127.0.0.1:{free_port()}")
    yield platform
    for served in cells.values():
        await served.stop()
