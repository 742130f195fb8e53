"""ledger_unserved_tenants, the tenants whose rows a cell holds but does not serve: exactly those in the states the
cell answers 421 (cell/service/tenants.py NOT_SERVED), which its cell-wide checks and queue gauges leave out."""

from __future__ import annotations

import pytest
from routine_helpers import new_ledger

from cell.service.tenants import NOT_SERVED


@pytest.mark.parametrize("state", ["active", "frozen", "moved_out", "arriving"])
async def test_a_tenant_is_unserved_in_the_states_the_cell_answers_421(db, state):
    tenant, _ = await new_ledger(db, state)
    unserved = await db.fetchval("SELECT $1 IN (SELECT * FROM ledger_unserved_tenants())", tenant)
    assert unserved == (state in NOT_SERVED)
