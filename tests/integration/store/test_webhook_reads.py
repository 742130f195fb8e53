"""The webhook deliverer's statements read what they work on, whatever events and webhook_deliveries grow to, in the
sessions that run them (db.INDEX_PLANS): each keeps the plan its connection makes on its first runs, perhaps on a
new cell's tables analyzed while empty. Measured before: at 20,000 events and delivered rows, the poll for endpoints
behind read ~300 buffers and the claim of due deliveries ~20,000 (~60,000 with INDEX_PLANS alone), every 0.5 s."""

from __future__ import annotations

import contextlib
import json

import asyncpg
from routine_helpers import new_deliveries

from cell.store.db import INDEX_PLANS
from cell.store.queries import Q

HISTORY = 20_000  # events, each delivered to the endpoint, written after the plans are made


async def measured(conn: asyncpg.Connection, calls: dict[str, str]) -> dict[str, int]:
    out = {}
    for name, args in calls.items():
        tr = conn.transaction()
        await tr.start()
        try:
            plan = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE {name}{args}")
        finally:
            await tr.rollback()
        top = json.loads(plan)[0]["Plan"]
        out[name] = top["Shared Hit Blocks"] + top["Shared Read Blocks"]
    return out


async def test_the_deliverer_reads_as_much_after_a_long_history_as_before_any(make_database):
    conn = await asyncpg.connect(make_database("webhook_reads"), server_settings=INDEX_PLANS)
    try:
        for table in ("events", "webhook_deliveries", "webhook_endpoints"):
            await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")  # no analyze: no new plans
        await conn.execute("INSERT INTO tenants (id, name) VALUES ('t', 't')")
        endpoint = await conn.fetchval(
            "INSERT INTO webhook_endpoints (id, tenant_id, url, event_names, key, after_position)"
            " VALUES (gen_random_uuid(), 't', 'http://receiver.invalid', '{}', 'k', 0) RETURNING id")
        await conn.execute("ANALYZE")
        pending = "'00000000-0000-4000-8000-000000000000'"  # no such delivery: the outcome statements find nothing
        calls = {"webhook_endpoints_behind": "(100)", "claim_webhook_deliveries": "(100, 30)",
                 "webhook_fan_out": f"('{endpoint}', 100, 3600)", "webhook_delivered": f"({pending}, 200)",
                 "webhook_attempt_failed": f"({pending}, 500, 'x', 5)"}
        for name in calls:  # the plans are made here, on empty tables
            await conn.execute(f"PREPARE {name} AS {Q[name]}")
        for _ in range(6):
            await measured(conn, calls)
        before = await measured(conn, calls)
        await conn.execute(
            "INSERT INTO events (id, tenant_id, resource, event_name, entity_id, data, position) SELECT"
            " gen_random_uuid(), 't', 'ledger_transaction', 'ledger_transaction.created', gen_random_uuid(), '{}', g"
            " FROM generate_series(1, $1) g", HISTORY)
        await conn.execute(
            "INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id, event_position, entity_id, event_name,"
            " give_up_at, status) SELECT gen_random_uuid(), 't', $1, id, position, entity_id, event_name, now(),"
            " 'succeeded' FROM events WHERE position <= $2", endpoint, HISTORY - 10)
        await conn.execute("UPDATE webhook_endpoints SET after_position = $1", HISTORY - 10)
        after = await measured(conn, calls)
        grown = {name: after[name] - before[name] for name in calls}
        # The fan-out of the 10 events past the watermark writes their 10 deliveries: ~15 buffers each.
        assert grown["webhook_fan_out"] < 250, (before, after)
        # The others: 0-2 more (indexes a level deeper). The poll for endpoints behind read 7-49 more, varying with
        # the random entity ids, when a skip scan of events_tenant_entity served it (CI failed at 38).
        assert all(grown[name] < 10 for name in calls if name != "webhook_fan_out"), (before, after)
    finally:
        await conn.close()



SKIPPED = 20_000  # due deliveries of each kind the claim never takes


async def _endpoint(conn: asyncpg.Connection, tenant: str):
    return await conn.fetchval(
        "INSERT INTO webhook_endpoints (id, tenant_id, url, event_names, key, after_position)"
        " VALUES (gen_random_uuid(), $1, 'http://receiver.invalid', '{}', 'k', 0) RETURNING id", tenant)


@contextlib.asynccontextmanager
async def _claims_measured(make_database, name: str, tenants: tuple[str, ...], history: int):
    """A cell whose claim of due deliveries is measured (an index-only session, autovacuum off, the claim prepared),
    with `history` deliveries of the first tenant's endpoint delivered: (conn, that endpoint, grown), grown() the
    buffers a claim reads now above what it read then, the table vacuumed first (as autovacuum would)."""
    conn = await asyncpg.connect(make_database(name), server_settings=INDEX_PLANS)
    try:
        for table in ("events", "webhook_deliveries", "webhook_endpoints", "tenants"):
            await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")
        await conn.execute("INSERT INTO tenants (id, name) SELECT t, t FROM unnest($1::text[]) t", list(tenants))
        endpoint = await _endpoint(conn, tenants[0])
        await conn.execute("ANALYZE")
        calls = {"claim_webhook_deliveries": "(100, 30)"}
        await conn.execute(f"PREPARE claim_webhook_deliveries AS {Q['claim_webhook_deliveries']}")
        await new_deliveries(conn, tenants[0], endpoint, history, status="succeeded")
        await conn.execute("VACUUM webhook_deliveries")
        for _ in range(6):
            await measured(conn, calls)
        before = (await measured(conn, calls))["claim_webhook_deliveries"]

        async def grown() -> int:
            await conn.execute("VACUUM webhook_deliveries")
            return (await measured(conn, calls))["claim_webhook_deliveries"] - before

        yield conn, endpoint, grown
    finally:
        await conn.close()


async def test_a_claim_reads_no_more_for_the_due_deliveries_it_never_takes(make_database):
    """A moved-out tenant's pending deliveries (its copy kept until a purge, maybe never), an endpoint disabled with
    deliveries pending: due, at the front of the due index, never claimed here. Measured before (cell migration 0228):
    each 20,000 of them made every claim (every poll of every deliverer, whoever's webhooks it had to send) read
    120,000 more buffers. The table is vacuumed after each change, as autovacuum
    does: until then the rows held leave dead entries in the due index (~85 buffers more for 20,000)."""
    async with _claims_measured(make_database, "webhook_claim_skips", ("live", "gone"), SKIPPED) as (conn, live, now):
        grown = {}

        async def after(kind: str) -> None:
            grown[kind] = await now()

        # The tenant moved out with deliveries pending (the move copied them pending: the target delivers them).
        await new_deliveries(conn, "gone", await _endpoint(conn, "gone"), SKIPPED)
        await conn.execute("UPDATE tenants SET state = 'moved_out' WHERE id = 'gone'")
        assert await conn.fetchval("SELECT ledger_webhook_hold_tenant('gone')") == SKIPPED  # the mover's last word
        await after("moved_out")
        # An endpoint disabled (PATCH active=false) while its receiver was down.
        off = await _endpoint(conn, "live")
        await new_deliveries(conn, "live", off, SKIPPED)
        await conn.execute(Q["update_webhook_endpoint"], "live", off, None, None, False, None, None, False)
        await after("disabled")

        assert all(extra < 10 for extra in grown.values()), grown
        # What is due and claimable is claimed, past all of them.
        await new_deliveries(conn, "live", live, 10, due_since="1 minute")
        claimed = await conn.fetch(Q["claim_webhook_deliveries"], 100, 30)
        assert {row["delivery_id"] for row in claimed} == {r["id"] for r in await conn.fetch(
            "SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'pending'", live)}


WAITING = 10_000  # entities whose first delivery is in back-off, each with a later delivery due behind it


async def test_a_claim_reads_no_more_for_the_deliveries_waiting_behind_an_earlier_one(make_database):
    """An endpoint failing for hours: each entity's first delivery in back-off (its next attempt later), the entity's
    next one due but waiting for it (event order per entity). Measured before (cell migration 0229): 10,000 of them
    made every claim of every deliverer read ~30,000 more buffers. Vacuumed after the change, as in the test above."""
    async with _claims_measured(make_database, "webhook_claim_waiting", ("t",), WAITING) as (conn, endpoint, grown):
        first = await new_deliveries(conn, "t", endpoint, WAITING)
        await conn.execute(  # each attempted and failed: retried in an hour (webhook_attempt_failed)
            "UPDATE webhook_deliveries SET attempts = 1, last_attempt_at = now(), last_error = 'x', updated_at = now(),"
            " next_attempt_at = now() + interval '1 hour' WHERE id = ANY($1::uuid[])", list(first))
        # Each entity's next event, its delivery made (due at once) while the first one waits out its back-off.
        waiting = await conn.fetch(
            "WITH made AS (INSERT INTO events (id, tenant_id, resource, event_name, entity_id, data, position)"
            " SELECT gen_random_uuid(), 't', 'ledger_transaction', 'ledger_transaction.updated', d.entity_id, '{}',"
            " (SELECT max(position) FROM events) + row_number() OVER (ORDER BY d.event_position)"
            " FROM webhook_deliveries d WHERE d.id = ANY($2::uuid[]) RETURNING id, position, entity_id, event_name)"
            " INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id, event_position, entity_id,"
            " event_name, give_up_at) SELECT gen_random_uuid(), 't', $1, id, position, entity_id, event_name,"
            " now() + interval '1 day' FROM made ORDER BY position RETURNING id", endpoint, list(first))
        assert len(waiting) == WAITING
        assert await grown() < 10
        assert await conn.fetch(Q["claim_webhook_deliveries"], 100, 30) == []  # each waits: nothing to claim
