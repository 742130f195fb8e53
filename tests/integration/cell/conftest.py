"""Fixtures the cell's HTTP tests share."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from cell.api.app import create_app
from tests.integration.conftest import cell_settings


@pytest.fixture
async def live_books(live_api):
    """A ledger, a debit and a credit account on the live cell, with one transfer between them."""
    ledger = await live_api.ledger()
    a, b = await live_api.account(ledger["id"], "debit"), await live_api.account(ledger["id"], "credit")
    r = await live_api.transfer(ledger["id"], a["id"], b["id"], 125)
    assert r.status_code == 201, r.text
    return live_api, ledger, a, b


@pytest.fixture
async def hybrid_api(cell_database_url, new_tenant):
    """A tenant on a cell app in hybrid mode (async postings queued; no worker, no sweeper)."""
    app = create_app(cell_settings(cell_database_url, posting_mode="hybrid", sqs_queue_url="", sweep_interval_s=0))
    async with AsyncTestClient(app) as client:
        yield await new_tenant(client)
