"""ledger_fence, the tenant write fence: an active tenant writes; frozen (LG003), unknown (LG011) and moved-out
(LG012) tenants are refused."""

from __future__ import annotations

import uuid

import pytest
from routine_helpers import new_ledger, raised

FENCE = "SELECT ledger_fence($1)"


async def test_an_active_tenant_passes(db):
    tenant, _ = await new_ledger(db)
    assert await raised(db, FENCE, tenant) is None


@pytest.mark.parametrize(("state", "code"), [("frozen", "LG003"), ("moved_out", "LG012"), ("arriving", "LG012")])
async def test_a_tenant_frozen_moved_out_or_arriving_is_refused(db, state, code):
    tenant, _ = await new_ledger(db, state)
    assert (await raised(db, FENCE, tenant)).sqlstate == code


async def test_an_unknown_tenant_is_refused(db):
    assert (await raised(db, FENCE, "t-" + uuid.uuid4().hex)).sqlstate == "LG011"


async def test_a_write_holds_the_shared_lock_a_move_waits_on(db):
    tenant, _ = await new_ledger(db)
    async with db.transaction():
        await db.execute(FENCE, tenant)
        held = await db.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ShareLock'"
            " AND pid = pg_backend_pid()"
            " AND ((classid::bigint << 32) | objid::bigint) = hashtextextended('tenant:' || $1, 0)", tenant)
    assert held == 1
