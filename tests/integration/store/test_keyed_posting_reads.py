"""A posting with an Idempotency-Key probes its key by the primary key, whatever the tenant's keys grow to: the probe
keeps the one generic plan ledger_post makes on a connection's first call, perhaps while idempotency_keys is still
empty, and no such plan may walk the tenant's keys (0170_key_probe_by_pkey.sql). So does a group of keyed async
postings, written set-wise (routines/post_queued_group.sql: the keys' probe of the whole group)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from routine_helpers import new_account, new_ledger

AT = datetime(2026, 3, 1, 12, tzinfo=UTC)
KEYS = 20_000  # of the tenant, added after the plans are made

POST = ("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT ledger_post($1, $2, '\\x00', $3, $4, 'd', 'posted', $5, NULL,"
        " '{}', NULL, $6, $7, ARRAY['debit', 'credit'], ARRAY[5, 5]::bigint[], '{}'::uuid[], '[]', '{}')")


async def posting_buffers(conn: asyncpg.Connection, tenant: str, ledger: uuid.UUID, accounts: list) -> int:
    """Shared buffers one async posting with a new Idempotency-Key touches, every statement under it included."""
    plan = await conn.fetchval(POST, tenant, uuid.uuid4().hex, uuid.uuid4(), ledger, AT, [uuid.uuid4(), uuid.uuid4()],
                               [a.id for a in accounts])
    top = json.loads(plan)[0]["Plan"]
    return top["Shared Hit Blocks"] + top["Shared Read Blocks"]


GROUP = ("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT ledger_post_queued_group($1, $2, $3, ARRAY['d', 'd'],"
         " ARRAY['posted', 'posted'], ARRAY[$4, $4]::timestamptz[], ARRAY[NULL, NULL]::text[], '[{}, {}]',"
         " ARRAY[NULL, NULL]::text[], ARRAY[NULL, NULL]::text[], '[{}, {}]', NULL, $5,"
         " ARRAY['\\x00', '\\x00']::bytea[],"
         " ARRAY[NULL, NULL]::bytea[], ARRAY[1, 1, 2, 2], $6, $7, ARRAY['debit', 'credit', 'debit', 'credit'],"
         " ARRAY[5, 5, 5, 5]::bigint[], NULL)")


async def group_buffers(conn: asyncpg.Connection, tenant: str, ledger: uuid.UUID, accounts: list) -> int:
    """Shared buffers a group of two async postings with new Idempotency-Keys touches, every statement under it."""
    ids = [a.id for a in accounts]
    plan = await conn.fetchval(GROUP, tenant, [uuid.uuid4(), uuid.uuid4()], [ledger, ledger], AT,
                               [uuid.uuid4().hex, uuid.uuid4().hex], [uuid.uuid4() for _ in range(4)], ids + ids)
    top = json.loads(plan)[0]["Plan"]
    return top["Shared Hit Blocks"] + top["Shared Read Blocks"]


@pytest.mark.parametrize("write", [posting_buffers, group_buffers], ids=["alone", "group"])
@pytest.mark.parametrize("made", ["on_tables_never_analyzed", "after_an_analyze_of_empty_tables"])
async def test_a_keyed_posting_reads_as_much_with_many_keys_as_with_none(make_database, made, write):
    # Fresh tables; this connection's plans.
    conn = await asyncpg.connect(make_database(f"keyed_reads_{made}_{write.__name__}"))
    try:
        tenant, ledger = await new_ledger(conn)
        accounts = [await new_account(conn, "debit", tenant=tenant, ledger=ledger),
                    await new_account(conn, "credit", tenant=tenant, ledger=ledger)]
        if made == "after_an_analyze_of_empty_tables":
            await conn.execute("ANALYZE")
        await write(conn, tenant, ledger, accounts)  # the plans are made here
        before = await write(conn, tenant, ledger, accounts)
        await conn.execute("INSERT INTO idempotency_keys (tenant_id, key, request_hash, resource_type, resource_id,"
                           " status_code) SELECT $1, 'k' || g, '\\x00', 'ledger_transaction', gen_random_uuid(), 201"
                           " FROM generate_series(1, $2) g", tenant, KEYS)
        after = await write(conn, tenant, ledger, accounts)
        # Measured: a few buffers more (the primary key one level deeper); a walk of the tenant's keys is hundreds.
        assert after < before + 30, (before, after)
    finally:
        await conn.close()
