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


@pytest.fixture(scope="module")
async def cells_platform(make_database, redis_url):
    """Two real cells (the cell app on its own database each, behind uvicorn), registered and given tenants
    through the control plane's own operations, behind a real router."""
    from cell.api.app import create_app
    from cell.settings import load_settings
    from control_plane import operations
    from control_plane.settings import ControlPlaneSettings
    from router_rig import RealPlatform

    suffix = uuid.uuid4().hex[:6]
    cp_url = make_database(f"cp_cells_{suffix}", migrate_cell=False)
    settings = ControlPlaneSettings(database_url=cp_url, redis_url=redis_url, actor="tests")
    conn = await connect(cp_url)
    served = []
    try:
        await migrate_catalog(conn)
        for name in ("cell-1", "cell-2"):
            db_url = make_database(f"{name.replace('-', '_')}_{suffix}")
            cell_settings = load_settings(("UNUSED_PREFIX_",), name=name, database_url=db_url, posting_mode="sync",
                                          db_pool_min=1, db_pool_max=4, api_key_cache_ttl_s=0.5)
            cell = await Served(create_app(cell_settings)).start()
            served.append(cell)
            await operations.add_cell(conn, settings, name, cell.url, db_url)
        platform = RealPlatform(conn, settings)
        platform.router = await platform.start_router()
        yield platform
        await platform.router.stop()
    finally:
        for cell in served:
            await cell.stop()
        await conn.close()
