"""Fixtures the cell's HTTP tests share."""

from __future__ import annotations

import pytest


@pytest.fixture
async def live_books(live_api):
    """A ledger, a debit and a credit account on the live cell, with one transfer between them."""
    ledger = await live_api.ledger()
    a, b = await live_api.account(ledger["id"], "debit"), await live_api.account(ledger["id"], "credit")
    r = await live_api.transfer(ledger["id"], a["id"], b["id"], 125)
    assert r.status_code == 201, r.text
    return live_api, ledger, a, b
