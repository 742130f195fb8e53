"""A sync posting reads what its own few rows need, whatever balance_effects grows to: its statements keep the one
generic plan ledger_post makes on a connection's first call, perhaps while the tables are still empty, and no such
plan may walk a whole index (of every effect, of the applied ones, or of an account's history) to find them."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from routine_helpers import new_account, new_ledger

AT = datetime(2026, 3, 1, 12, tzinfo=UTC)
EFFECTS = 20_000  # of the card's history and of another account's queue, added after the plans are made

POST = ("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT ledger_post($1, NULL, NULL, $2, $3, 'd', 'posted', $4, NULL,"
        " '{}', NULL, $5, $6, ARRAY['debit', 'credit'], ARRAY[5, 5]::bigint[], $6, $7, '{}')")
EFFECT_COLUMNS = ("tenant_id, account_id, entry_id, kind, d_pending_debits, d_pending_credits, d_posted_debits,"
                  " d_posted_credits, effective_at")


async def posting_buffers(conn: asyncpg.Connection, tenant: str, ledger: uuid.UUID, card, hot) -> int:
    """Shared buffers one sync posting touches, every statement of the routines under it included: the card
    (under a lock_version and a balance lock) against the hot account, both applied now."""
    version = await conn.fetchval("SELECT lock_version FROM account_balances WHERE account_id = $1", card.id)
    checks = [{"account_id": str(card.id), "lock_version": version, "available_balance_amount": {"gte": 0}}]
    plan = await conn.fetchval(POST, tenant, uuid.uuid4(), ledger, AT, [uuid.uuid4(), uuid.uuid4()],
                               [card.id, hot.id], json.dumps(checks))
    top = json.loads(plan)[0]["Plan"]
    return top["Shared Hit Blocks"] + top["Shared Read Blocks"]


async def queue(conn: asyncpg.Connection, tenant: str, account, n: int) -> None:
    await conn.execute(f"INSERT INTO balance_effects ({EFFECT_COLUMNS})"
                       " SELECT $1, $2, gen_random_uuid(), 'entry', 0, 1, 0, 1, $3 FROM generate_series(1, $4)",
                       tenant, account.id, AT, n)


async def history(conn: asyncpg.Connection, tenant: str, account, n: int) -> None:
    """n effects applied to the account, each with its lock version (its balance row's moves on as far)."""
    await conn.execute(
        f"INSERT INTO balance_effects ({EFFECT_COLUMNS}, applied_at, lock_version, pending_debits, pending_credits,"
        " posted_debits, posted_credits)"
        " SELECT $1, $2, gen_random_uuid(), 'entry', 1, 0, 1, 0, $3, $3, b.lock_version + i, 0, 0, 0, 0"
        " FROM generate_series(1, $4) i, account_balances b WHERE b.account_id = $2", tenant, account.id, AT, n)
    await conn.execute("UPDATE account_balances SET lock_version = lock_version + $2 WHERE account_id = $1",
                       account.id, n)


@pytest.mark.parametrize("made", ["after_an_analyze_of_empty_tables", "after_an_analyze_of_queued_effects_only"])
async def test_a_sync_posting_reads_as_much_with_a_long_history_as_with_none(make_database, made):
    conn = await asyncpg.connect(make_database(f"sync_reads_{made}"))  # fresh tables; this connection's plans
    try:
        tenant, ledger = await new_ledger(conn)
        card = await new_account(conn, "debit", tenant=tenant, ledger=ledger, posted_debits=10 ** 9,
                                 pending_debits=10 ** 9)
        hot = await new_account(conn, "credit", tenant=tenant, ledger=ledger)
        other = await new_account(conn, "credit", tenant=tenant, ledger=ledger)
        if made == "after_an_analyze_of_queued_effects_only":
            await queue(conn, tenant, other, 2_000)
        await conn.execute("ANALYZE")
        await posting_buffers(conn, tenant, ledger, card, hot)  # the plans are made here
        before = await posting_buffers(conn, tenant, ledger, card, hot)
        await history(conn, tenant, card, EFFECTS)
        await queue(conn, tenant, other, EFFECTS)
        after = await posting_buffers(conn, tenant, ledger, card, hot)
        # Measured: ~100 buffers either way; a walk of one of those indexes is hundreds to thousands more.
        assert after < before + 100, (before, after)
    finally:
        await conn.close()
