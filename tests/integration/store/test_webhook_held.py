"""Deliveries the claim will never take as things stand are held out of its way (cell migration 0228), and what holds
them ending makes them due again: a paused endpoint is active again. A moved-out tenant's deliveries are its
target's: the cell it left never claims them, held there once the move is done. A move's copy is claimed once its
tenant is active, when each was due at the source."""

from __future__ import annotations

from datetime import datetime, timezone

import asyncpg
from routine_helpers import new_deliveries

from cell.ledger.commands import WebhookEndpointUpdate
from cell.service import views, webhooks
from cell.store.queries import Q
from ledger_common.outbound import OutboundPolicy

DEV = OutboundPolicy(allow_http_loopback=True)


async def _endpoint(conn: asyncpg.Connection, tenant: str, active: bool = True):
    return await conn.fetchval(
        "INSERT INTO webhook_endpoints (id, tenant_id, url, event_names, key, active)"
        " VALUES (gen_random_uuid(), $1, 'http://127.0.0.1:9/hook', '{}', 'k', $2) RETURNING id", tenant, active)


async def _claimed(conn: asyncpg.Connection) -> set:
    """What a claim takes now; given back (lease undone) so that the next claim sees the same."""
    async with conn.transaction():
        rows = await conn.fetch(Q["claim_webhook_deliveries"], 1000, 30)
        await conn.execute("UPDATE webhook_deliveries SET next_attempt_at = now() - interval '1 second'"
                           " WHERE id = ANY($1::uuid[])", [r["delivery_id"] for r in rows])
    return {r["delivery_id"] for r in rows}


async def _scheduled(conn: asyncpg.Connection, ids: set) -> dict:
    return {r["id"]: r["next_attempt_at"] for r in await conn.fetch(
        "SELECT id, next_attempt_at FROM webhook_deliveries WHERE id = ANY($1::uuid[])", list(ids))}


async def _next_attempts(conn: asyncpg.Connection, ids: set) -> set:
    return set((await _scheduled(conn, ids)).values())


async def _shown(conn: asyncpg.Connection, tenant: str, endpoint) -> dict:
    """next_attempt_at of each pending delivery of `endpoint`, as the API shows it."""
    rows = await webhooks.list_deliveries(conn, tenant, endpoint_id=endpoint, status="pending")
    return {r["id"]: views.webhook_delivery(r).next_attempt_at for r in rows}


async def test_a_moves_copy_is_claimed_once_its_tenant_is_active_and_never_where_it_moved_out(make_database):
    conn = await asyncpg.connect(make_database("webhook_held_moves"))
    try:
        # The target: the copy arrives (tenant row first, cell migration 0225), with an endpoint paused at the source
        # (its deliveries held there, copied held).
        await conn.execute("INSERT INTO tenants (id, name, state) VALUES ('copy', 'copy', 'arriving')")
        live, paused = await _endpoint(conn, "copy"), await _endpoint(conn, "copy", active=False)
        copied, paused_copied = await new_deliveries(conn, "copy", live, 3), await new_deliveries(conn, "copy", paused, 2)
        await conn.execute("UPDATE webhook_deliveries SET next_attempt_at = next_attempt_at + interval '60000000 hours'"
                           " WHERE id = ANY($1::uuid[])", list(paused_copied))
        # A later round upserts the rows again with the source's next attempt (the mover's ON CONFLICT DO UPDATE).
        await conn.execute("UPDATE webhook_deliveries SET next_attempt_at = '2020-01-01 00:00:00+00'"
                           " WHERE id = ANY($1::uuid[])", list(copied))
        assert await _claimed(conn) == set()
        await conn.execute("UPDATE tenants SET state = 'frozen' WHERE id = 'copy'")  # the flip
        assert await _next_attempts(conn, copied) == {datetime(2020, 1, 1, tzinfo=timezone.utc)}  # as the source's
        assert await _claimed(conn) == set()  # frozen: not yet (the claim takes active tenants)
        await conn.execute("UPDATE tenants SET state = 'active' WHERE id = 'copy'")  # the unfreeze
        assert await _claimed(conn) == copied
        # The endpoint paused at the source stays paused here: its deliveries wait for it.
        assert set((await _shown(conn, "copy", paused)).values()) == {None}
        await webhooks.update_endpoint(conn, "copy", paused, WebhookEndpointUpdate(active=True), policy=DEV)
        assert await _claimed(conn) == copied | paused_copied
        assert None not in (await _shown(conn, "copy", paused)).values()

        # The source: the tenant moved out with deliveries pending (the target's now); a purge may never come.
        await conn.execute("INSERT INTO tenants (id, name) VALUES ('left', 'left')")
        left = await new_deliveries(conn, "left", await _endpoint(conn, "left"), 3)
        assert await _claimed(conn) >= left
        assert await conn.fetchval("SELECT ledger_webhook_hold_tenant('left')") == 0  # served here: nothing held
        await conn.execute("UPDATE tenants SET state = 'frozen' WHERE id = 'left'")  # the freeze
        await conn.execute("UPDATE tenants SET state = 'moved_out' WHERE id = 'left'")
        assert not await _claimed(conn) & left
        assert await conn.fetchval("SELECT ledger_webhook_hold_tenant('left')") == 3  # after the target's unfreeze
        assert await conn.fetchval("SELECT ledger_webhook_hold_tenant('left')") == 0  # run again: nothing more
        assert set((await _shown(conn, "left", None)).values()) == {None}
        assert not await _claimed(conn) & left
    finally:
        await conn.close()


async def test_a_paused_endpoints_pending_deliveries_wait_and_resume_when_it_is_active_again(make_database):
    conn = await asyncpg.connect(make_database("webhook_held_paused"))
    try:
        await conn.execute("INSERT INTO tenants (id, name) VALUES ('t', 't')")
        endpoint = await _endpoint(conn, "t")
        pending = await new_deliveries(conn, "t", endpoint, 3)
        failed = await new_deliveries(conn, "t", endpoint, 2, status="failed")
        assert await _claimed(conn) == pending
        await conn.execute("UPDATE webhook_deliveries SET next_attempt_at = now() + interval '1 minute'"
                           " WHERE id = $1", min(pending))  # a retry waiting out its back-off
        scheduled = await _scheduled(conn, pending)

        async def set_active(active: bool) -> None:
            await webhooks.update_endpoint(conn, "t", endpoint, WebhookEndpointUpdate(active=active), policy=DEV)

        await set_active(False)
        assert await _claimed(conn) == set()
        assert await _shown(conn, "t", endpoint) == dict.fromkeys(pending)  # no attempt scheduled while paused
        # Failed ones redelivered while it is paused wait for it too.
        assert await webhooks.redeliver_failed(conn, "t", endpoint_id=endpoint, retry_window_s=60) == 2
        assert await _claimed(conn) == set()
        await set_active(True)
        assert await _scheduled(conn, pending) == scheduled  # each attempt when it was due
        assert await _claimed(conn) == (pending - {min(pending)}) | failed
        assert None not in (await _shown(conn, "t", endpoint)).values()
    finally:
        await conn.close()
