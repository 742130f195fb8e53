"""SDK test fixtures: Modern Treasury's official Python SDK pointed, unchanged, at a real router in front of a real
cell (the cell app behind uvicorn on its own database, registered and given tenants by the control plane's own
operations), as a customer's code reaches `make run`. Each SDK client gets a fresh tenant; the invariants of
DESIGN.md section 8 are verified for it after the test."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from modern_treasury import AsyncModernTreasury

from cell.api.app import create_app
from cell.settings import load_settings
from cell.store.verify import verify
from control_plane import operations
from control_plane.catalog import connect, migrate_catalog
from control_plane.settings import ControlPlaneSettings
from integration.router.router_rig import RealPlatform, Served

CELL = "sdk-cell"


@pytest.fixture(scope="session")
async def sdk_platform(make_database, redis_url):
    """One cell (sync posting mode: every balance exact at once) behind one router, for the whole session."""
    suffix = uuid.uuid4().hex[:6]
    cp_url = make_database(f"cp_sdk_{suffix}", migrate_cell=False)
    cell_url = make_database(f"cell_sdk_{suffix}")
    settings = ControlPlaneSettings(database_url=cp_url, redis_url=redis_url, actor="tests")
    conn = await connect(cp_url)
    cell = None
    try:
        await migrate_catalog(conn)
        cell = await Served(create_app(load_settings(
            ("UNUSED_PREFIX_",), name=CELL, database_url=cell_url, posting_mode="sync", db_pool_min=1,
            db_pool_max=8, api_key_cache_ttl_s=0.5))).start()
        await operations.add_cell(conn, settings, CELL, cell.url, cell_url)
        platform = RealPlatform(conn, settings)
        platform.router = await platform.start_router()
        platform.cell_database_url = cell_url
        yield platform
        await platform.router.stop()
    finally:
        if cell is not None:
            await cell.stop()
        await conn.close()


@pytest.fixture
async def mt(sdk_platform):
    """Factory: the SDK's async client on a fresh tenant's credentials, talking HTTP to the router."""
    made: list[tuple[str, AsyncModernTreasury]] = []

    async def make() -> AsyncModernTreasury:
        tenant_id, secret = await sdk_platform.tenant(CELL, "sdk")
        client = AsyncModernTreasury(organization_id=tenant_id, api_key=secret, base_url=sdk_platform.router.url,
                                     max_retries=0)
        made.append((tenant_id, client))
        return client

    yield make
    conn = await asyncpg.connect(sdk_platform.cell_database_url)
    try:
        for tenant_id, client in made:
            await client.close()
            problems = await verify(conn, tenant_id)
            assert problems == [], f"invariants violated for {tenant_id}: {problems}"
    finally:
        await conn.close()
