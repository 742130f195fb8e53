"""The write freeze of a move is bounded by what the tenant wrote in the last round, not by its size.

MOVE_FREEZE_ENTRIES (default 2000) sets the tenant's size; the test prints the freeze window and the
verification times (`pytest -s`), e.g. MOVE_FREEZE_ENTRIES=20000 for the numbers quoted in the README."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime

import asyncpg

from test_moves import _rows, _world


def bulk_post(database_url: str, tenant_id: str, ledger_id: str, debit: str, credit: str, count: int) -> None:
    """`count` posted transfers written through the store's ledger_post, applied in the posting (as the sync
    path writes them), on one connection: fast enough for tens of thousands."""
    from cell.ledger.models import Condition, EntryRequest, Posting, TransactionState, VersionEntry
    from cell.store import transactions
    from cell.store.db import _init_connection

    async def go():
        conn = await asyncpg.connect(database_url)
        try:
            await _init_connection(conn)
            for i in range(count):
                entries = [(debit, "debit"), (credit, "credit")]
                state = TransactionState(
                    id=uuid.uuid4(), ledger_id=uuid.UUID(ledger_id), description=f"bulk {i}", status="posted",
                    effective_at=datetime.now(UTC), external_id=None, metadata={},
                    reverses_ledger_transaction_id=None,
                    ledger_entries=[VersionEntry(uuid.uuid4(), uuid.UUID(a), d, 1 + i % 7) for a, d in entries])
                await transactions.post(conn, Posting(
                    tenant_id=tenant_id, state=state,
                    entries=[EntryRequest(a, d, 1 + i % 7, Condition({})) for a, d in entries],
                    apply_accounts=sorted([debit, credit])))
        finally:
            await conn.close()

    asyncio.run(go())


def test_freeze_window_of_a_large_tenant(ctl, stack):
    entries = int(os.environ.get("MOVE_FREEZE_ENTRIES", "2000"))
    w = _world(ctl, stack, postings=1)
    source = stack["cells"]["cli-1"]
    bulk_post(source.database_url, w["tenant"], w["ledger"], w["accounts"][0], w["accounts"][1], entries // 2)
    before = _rows(source.database_url, w["tenant"])
    result = ctl.json("tenants", "move", w["tenant"], "--to", "cli-2", "--yes")
    assert result["state"] == "done" and result["verification"]["ok"], result
    steps = {s["step"]: s["ms"] for s in result["steps"]}
    print(f"\nmove of a tenant with {before['ledger_entries']} entries: freeze window {result['freeze_ms']} ms "
          f"(final catch-up {steps['final_catch_up']} ms, verify {steps['verify']} ms, "
          f"pre-freeze verify {steps.get('pre_verify')} ms)")
    assert _rows(stack["cells"]["cli-2"].database_url, w["tenant"]) == before
    # The whole tenant was verified before the freeze; inside it, only the delta (nothing written meanwhile).
    v = result["verification"]
    assert v["delta"] and v["pre_verify_differences"] == 0
    assert (v["accounts_checked"], v["transactions_checked"]) == (0, 0)
    assert steps["pre_verify"] > steps["verify"]


def test_the_in_freeze_check_catches_a_difference_in_what_was_touched(ctl, stack):
    """verify_delta on a finished move's two copies: clean; then the target tampered with, which it finds
    when the account or transaction was touched since the pre-verification, or differed in it."""
    from control_plane.moves import discover, verify_copy, verify_delta

    w = _world(ctl, stack, postings=2)
    tenant = w["tenant"]
    assert ctl.json("tenants", "move", tenant, "--to", "cli-2", "--yes")["verification"]["ok"]
    account = w["accounts"][0]

    async def go():
        src = await asyncpg.connect(stack["cells"]["cli-1"].database_url)
        dst = await asyncpg.connect(stack["cells"]["cli-2"].database_url)
        try:
            tables = await discover(src)
            pre = await verify_copy(src, dst, tables, tenant)
            assert pre["ok"], pre
            transaction = str(await dst.fetchval("SELECT transaction_id FROM ledger_entries WHERE tenant_id = $1 "
                                                 "LIMIT 1", tenant))
            assert (await verify_delta(src, dst, tables, tenant, pre, {"accounts": [account],
                                                                       "transactions": [transaction]}))["ok"]
            await dst.execute("UPDATE account_balances SET posted_debits = posted_debits + 1 WHERE account_id = $1",
                              uuid.UUID(account))
            try:
                # Untouched since a clean pre-verification: the account is not recomputed (that is the point),
                # but its ledger no longer sums to zero, which is checked over every account of the tenant.
                result = await verify_delta(src, dst, tables, tenant, pre, {})
                assert result["accounts_checked"] == 0 and [p for p in result["problems"] if "ledger" in p] == \
                    result["problems"] != [], result
                for touched, off in (({"accounts": [account]}, []), ({"transactions": [transaction]}, []),
                                     ({}, [account])):
                    result = await verify_delta(src, dst, tables, tenant, {**pre, "accounts_off": off}, touched)
                    assert not result["ok"] and any(account in p for p in result["problems"]), result
            finally:
                await dst.execute("UPDATE account_balances SET posted_debits = posted_debits - 1 "
                                  "WHERE account_id = $1", uuid.UUID(account))
            # A target problem of the pre-verification about nothing touched fails the move.
            result = await verify_delta(src, dst, tables, tenant, {**pre, "target_problems": ["something else"]}, {})
            assert not result["ok"]
            # A pre-verification problem of the target about an account touched since is a delta, rechecked
            # (clean here); about one untouched since, it is real.
            stale = [f"account {account}: effective-time cache of 2026-01-01 differs from effects"]
            clean = await verify_delta(src, dst, tables, tenant, {**pre, "target_problems": stale},
                                       {"accounts": [account]})
            assert clean["ok"], clean
            result = await verify_delta(src, dst, tables, tenant, {**pre, "target_problems": stale}, {})
            assert not result["ok"] and "nothing touched since" in result["problems"][0], result
            # An extra row on the target is counted.
            await dst.execute("INSERT INTO ledgers (id, tenant_id, name) VALUES ($1, $2, 'extra')", uuid.uuid4(),
                              tenant)
            result = await verify_delta(src, dst, tables, tenant, pre, {})
            assert not result["ok"] and any(p.startswith("ledgers:") for p in result["problems"]), result
        finally:
            await src.close()
            await dst.close()

    asyncio.run(go())
