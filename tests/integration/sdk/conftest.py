"""The official SDK's client, for every SDK test module."""

from __future__ import annotations

import pytest
from modern_treasury import AsyncModernTreasury


@pytest.fixture
async def mt(new_tenant, cell_client):
    """The SDK's async client on one tenant's credentials, talking HTTP to the cell app (in process)."""

    async def make() -> AsyncModernTreasury:
        api = await new_tenant()
        return AsyncModernTreasury(organization_id=api.tenant_id, api_key=api.api_key,
                                   base_url=str(cell_client.base_url), http_client=cell_client, max_retries=0)

    return make
