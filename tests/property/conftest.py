"""Property-test fixtures: one cell app driven through litestar's sync TestClient, plus an admin connection on
a private event loop (no pytest-asyncio loop involved: hypothesis runs the examples synchronously)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import asyncpg
import pytest
from hypothesis import Phase, settings
from litestar.testing import TestClient

from cell.api.app import create_app
from cell.service.tenants import create_api_key, create_tenant
from cell.service.verify import verify
from cell.settings import load_settings


@dataclass
class Cell:
    """The app under test and a way to run admin coroutines (tenants, verify) against its database."""

    client: TestClient
    loop: asyncio.AbstractEventLoop
    admin: asyncpg.Connection

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def new_tenant(self) -> tuple[str, tuple[str, str]]:
        """A fresh tenant with an API key: (tenant_id, basic-auth pair). Each example gets its own books."""
        tenant_id = f"p-{uuid.uuid4().hex[:12]}"
        self.run(create_tenant(self.admin, tenant_id, "property"))
        _, secret = self.run(create_api_key(self.admin, tenant_id))
        return tenant_id, (tenant_id, secret)

    def verify(self, tenant_id: str) -> list[str]:
        return self.run(verify(self.admin, tenant_id))


@pytest.fixture(scope="session")
def ledger_cell(cell_database_url):
    # The model assumes every effect is applied in the posting's own transaction: force sync mode, and read
    # no CELL_/LEDGER_ environment that could switch it.
    settings = load_settings(("CELL_PROPERTY_TEST_UNUSED_",), database_url=cell_database_url, posting_mode="sync",
                             db_pool_min=1, db_pool_max=4, api_key_cache_ttl_s=60.0)
    # A private loop, never installed as the thread's current loop, so pytest-asyncio's session loop is untouched.
    loop = asyncio.new_event_loop()
    admin = loop.run_until_complete(asyncpg.connect(cell_database_url))
    try:
        with TestClient(create_app(settings)) as client:
            yield Cell(client, loop, admin)
    finally:
        loop.run_until_complete(admin.close())
        loop.close()


# `pytest --hypothesis-profile=no-shrink`: report a failing sequence at once, unshrunk (shrinking a stateful
# run against the real API can take hypothesis' full five minutes).
settings.register_profile("no-shrink", phases=[Phase.explicit, Phase.reuse, Phase.generate])
