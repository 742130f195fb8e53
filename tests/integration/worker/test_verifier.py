"""The periodic verifier (and every cell-wide verify) checks the tenants the cell serves, active or frozen; the copies
it holds but does not serve (a move's copy being made, 'arriving'; a moved-out tenant's leftover, being purged) are
inconsistent by nature between a move's rounds or a purge's batches, and are the move's to verify: left out. A verify
that names a tenant checks it whatever its state."""

from __future__ import annotations

import asyncpg
import pytest
from prometheus_client import REGISTRY
from worker_helpers import new_book, post, worker_settings

from cell.store.verify import verify
from worker import drain

CACHE = "UPDATE account_balances SET posted_debits = posted_debits + $2 WHERE account_id = $1"


def gauge() -> float | None:
    """ledger_verify_violations, as an operator's scrape reads it."""
    return REGISTRY.get_sample_value("ledger_verify_violations")


@pytest.mark.parametrize("state", ["arriving", "moved_out"])
async def test_a_copy_the_cell_does_not_serve_is_left_out_of_the_cell_wide_verifier(
        pool, sqs_queue, worker_database_url, state):
    async with pool.acquire() as conn:
        book = await new_book(conn, {"card": "debit", "settlement": "credit"})
        await post(conn, book, [("card", "debit", 100), ("settlement", "credit", 100)], sync=("card", "settlement"))
    settings = worker_settings(sqs_queue)
    await drain.sweep(pool, worker_settings(sqs_queue, sweep_after_s=0.000001))  # other tests' queued effects
    card = str(book.id("card"))
    owner = await asyncpg.connect(worker_database_url)
    try:
        await owner.execute(CACHE, book.id("card"), 1)  # its cache no longer its entries' sum
        # Served (active): the verifier reports it, and pages.
        found = await drain.verify(pool, settings)
        assert [v for v in found if card in v], found
        assert gauge() == len(found)

        await owner.execute("UPDATE tenants SET state = $2 WHERE id = $1", book.tenant, state)
        assert await drain.verify(pool, settings) == []
        assert gauge() == 0
        async with pool.acquire() as conn:
            assert await verify(conn, None, unapplied_age_max_s=settings.unapplied_age_max_s) == []
            # An operator who names it has it checked all the same.
            named = await verify(conn, book.tenant)
            assert [v for v in named if card in v], named
    finally:
        await owner.execute(CACHE, book.id("card"), -1)
        await owner.execute("UPDATE tenants SET state = 'active' WHERE id = $1", book.tenant)
        await owner.close()
    async with pool.acquire() as conn:
        assert await verify(conn, book.tenant) == []
