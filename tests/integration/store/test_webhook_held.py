"""Deliveries the claim will never take as things stand are held out of its way (cell migration 0228), and what holds
them ending makes them due again: a paused endpoint is active again. A moved-out tenant's deliveries are its
target's: the cell it left never claims them, held there once the move is done. A move's copy is claimed once its
tenant is active, when each was due at the source. A delivery made behind an earlier pending one of its entity is
held until that one ends (0229), whichever of the two transactions commits first."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta, timezone

import asyncpg
from routine_helpers import new_deliveries

from cell.ledger.commands import WebhookEndpointUpdate
from cell.service import views, webhooks
from cell.store import webhooks as webhooks_store
from cell.store.queries import Q
from ledger_common.outbound import OutboundPolicy

DEV = OutboundPolicy(allow_http_loopback=True)
HELD = timedelta(hours=60_000_000)  # how far on a held delivery's next attempt is (cell migration 0228)


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


async def _fanned_out(conn: asyncpg.Connection, tenant: str, endpoint, entities: list) -> list:
    """One event per entity given (in that order, positioned), fanned out to `endpoint` as the deliverer does: the
    deliveries' ids in event order."""
    await conn.execute(
        "INSERT INTO events (id, tenant_id, resource, event_name, entity_id, data, position)"
        " SELECT gen_random_uuid(), $1, 'ledger_transaction', 'ledger_transaction.updated', e, '{}',"
        " coalesce((SELECT max(position) FROM events WHERE tenant_id = $1), 0) + g"
        " FROM unnest($2::uuid[]) WITH ORDINALITY AS u(e, g)", tenant, entities)
    await webhooks_store.fan_out(conn, endpoint, 1000, 3600)
    return [r["id"] for r in await conn.fetch(
        "SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY event_position", endpoint)]


async def test_a_delivery_waiting_behind_its_entitys_earlier_one_is_attempted_once_that_one_ends(make_database):
    conn = await asyncpg.connect(make_database("webhook_held_waiting"))
    try:
        await conn.execute("INSERT INTO tenants (id, name) VALUES ('t', 't')")
        endpoint = await _endpoint(conn, "t")
        x, y = uuid.uuid4(), uuid.uuid4()
        x1, y1, x2, x3 = await _fanned_out(conn, "t", endpoint, [x, y, x, x])  # one fan-out, one statement
        assert await _claimed(conn) == {x1, y1}
        assert (await _shown(conn, "t", endpoint))[x2] is None  # waiting: no attempt scheduled
        scheduled = await _scheduled(conn, {x2, x3})
        # x1 fails and waits out its back-off: x2 and x3 wait for it.
        assert await webhooks_store.attempt_failed(conn, x1, 500, "down", 60) == "pending"
        assert await _claimed(conn) == {y1}
        await webhooks_store.delivered(conn, x1, 200)
        # Due when it was: claimed at the next poll; x3 still waits for it.
        assert await _scheduled(conn, {x2}) == {x2: scheduled[x2] - HELD}
        assert await _claimed(conn) == {y1, x2}
        assert (await _shown(conn, "t", endpoint))[x3] is None
        assert await webhooks_store.attempt_failed(conn, x2, 500, "down", 10 ** 6) == "failed"  # for good
        assert await _claimed(conn) == {y1, x3}

        # Redelivered together, an entity's failed deliveries go one after another.
        z = uuid.uuid4()
        zs = await _fanned_out(conn, "t", endpoint, [z, z, z])
        zs = [d for d in zs if d not in {x1, y1, x2, x3}]
        await conn.execute("UPDATE webhook_deliveries SET status = 'failed' WHERE id = ANY($1::uuid[])", zs)
        await webhooks.redeliver_failed(conn, "t", endpoint_id=endpoint, retry_window_s=60)
        assert await _claimed(conn) == {y1, x2, zs[0]}  # x2 redelivered too: x3 waits for it again
        shown = await _shown(conn, "t", endpoint)
        assert [shown[d] is None for d in zs] == [False, True, True]
        # Paused and active again, only the first of each entity is due: the others still wait for it.
        await webhooks.update_endpoint(conn, "t", endpoint, WebhookEndpointUpdate(active=False), policy=DEV)
        await webhooks.update_endpoint(conn, "t", endpoint, WebhookEndpointUpdate(active=True), policy=DEV)
        shown = await _shown(conn, "t", endpoint)
        assert [shown[d] is None for d in zs] == [False, True, True]
        await webhooks_store.delivered(conn, zs[0], 200)
        assert await _claimed(conn) == {y1, x2, zs[1]}
        assert (await _shown(conn, "t", endpoint))[x3] is None  # held behind x2 once the endpoint was paused
        await webhooks_store.delivered(conn, x2, 200)
        assert await _claimed(conn) == {y1, x3, zs[1]}
    finally:
        await conn.close()


async def _done_or_waiting(task: asyncio.Task | None, conn: asyncpg.Connection, pid: int) -> None:
    """Until `task` (if any) is done or the session `pid` waits for a lock (read afresh each time: `conn` may be in a
    transaction, which keeps the activity it read first)."""
    deadline = time.monotonic() + 10
    while task is None or not task.done():
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        if await conn.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid):
            return
        assert time.monotonic() < deadline, ("the other transaction never waited" if task is None
                                             else "the other transaction neither ended nor waited")
        await asyncio.sleep(0.01)


async def test_a_delivery_made_while_the_one_before_it_ends_is_never_left_waiting(make_database):
    """The fan-out of an entity's next event and the end of its pending delivery, in either order of commit: the
    next one is claimable once both committed (held, the end released it; or not held at all)."""
    url = make_database("webhook_held_race")
    conn, other = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        await conn.execute("INSERT INTO tenants (id, name) VALUES ('t', 't')")
        endpoint = await _endpoint(conn, "t")
        for ends_first in (True, False):
            entity = uuid.uuid4()
            await _fanned_out(conn, "t", endpoint, [entity])
            first = await conn.fetchval("SELECT id FROM webhook_deliveries WHERE entity_id = $1", entity)
            ending, making = conn.transaction(), other.transaction()
            if ends_first:  # the fan-out waits for the end to commit: not held
                await ending.start()
                await webhooks_store.delivered(conn, first, 200)
                fan_out = asyncio.create_task(_fanned_out(other, "t", endpoint, [entity]))
                await _done_or_waiting(None, conn, other.get_server_pid())
                await ending.commit()
                await fan_out
            else:  # the end waits for the fan-out that held the next one to commit, then releases it
                await making.start()
                await _fanned_out(other, "t", endpoint, [entity])
                end = asyncio.create_task(webhooks_store.delivered(conn, first, 200))
                await _done_or_waiting(None, other, conn.get_server_pid())
                await making.commit()
                await end
            second = await conn.fetchval("SELECT id FROM webhook_deliveries WHERE entity_id = $1 AND status = 'pending'",
                                         entity)
            assert second in await _claimed(conn), ends_first
            await webhooks_store.delivered(conn, second, 200)
    finally:
        await other.close()
        await conn.close()


async def _due(conn: asyncpg.Connection, endpoint) -> set:
    """The pending deliveries of `endpoint` not held (a claim would walk over them)."""
    return {r["id"] for r in await conn.fetch(
        "SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'pending'"
        " AND next_attempt_at < '5000-01-01 00:00:00+00'", endpoint)}


async def test_a_pause_or_an_enable_racing_the_end_of_one_of_its_deliveries_never_deadlocks(make_database):
    """PATCH active (its endpoint row locked, then its deliveries held or released) and the end of a delivery of that
    endpoint (its row locked, then the next one of its entity released): in either order, both succeed (no deadlock
    detected, no 409 to retry, no outcome recorded again). Paused, every pending delivery is held; active, each entity's
    first pending one is due (the next one the end released), the others wait for it."""
    url = make_database("webhook_held_pause_race")
    conn, other = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        await conn.execute("SET deadlock_timeout = '100ms'")
        await other.execute("SET deadlock_timeout = '100ms'")
        for n, (active, change_first) in enumerate([(False, True), (False, False), (True, True), (True, False)]):
            t, case = f"t{n}", ("enable" if active else "pause", "first" if change_first else "second")
            await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, $1)", t)
            endpoint = await _endpoint(conn, t)
            x, y = uuid.uuid4(), uuid.uuid4()
            x1, y1, x2, x3 = await _fanned_out(conn, t, endpoint, [x, y, x, x])
            assert await _claimed(conn) >= {x1, y1}
            if active:  # x1 claimed before the pause, its outcome recorded while the endpoint is enabled again
                await webhooks.update_endpoint(conn, t, endpoint, WebhookEndpointUpdate(active=False), policy=DEV)
            change = lambda: webhooks.update_endpoint(other, t, endpoint,  # noqa: E731
                                                      WebhookEndpointUpdate(active=active), policy=DEV)
            changing, ending = other.transaction(), conn.transaction()
            await changing.start()
            if change_first:
                # The PATCH's UPDATE has locked its endpoint row; its trigger is about to hold or release.
                await other.execute("SELECT 1 FROM webhook_endpoints WHERE id = $1 FOR NO KEY UPDATE", endpoint)
                end = asyncio.create_task(webhooks_store.delivered(conn, x1, 200))
                await _done_or_waiting(end, other, conn.get_server_pid())
                await change()
                await changing.commit()
                await end
            else:
                # The end has locked x1 (and x2, to release it); the PATCH comes before it commits.
                await ending.start()
                await webhooks_store.delivered(conn, x1, 200)
                patch = asyncio.create_task(change())
                await _done_or_waiting(None, conn, other.get_server_pid())
                await ending.commit()
                await patch
                await changing.commit()
            assert await conn.fetchval("SELECT status FROM webhook_deliveries WHERE id = $1", x1) == "succeeded"
            if not active:
                assert await _due(conn, endpoint) == set(), case  # every pending one held
                assert set((await _shown(conn, t, endpoint)).values()) == {None}
                await webhooks.update_endpoint(conn, t, endpoint, WebhookEndpointUpdate(active=True), policy=DEV)
            assert await _due(conn, endpoint) == {y1, x2}, case  # x3 still waits for x2
    finally:
        await other.close()
        await conn.close()


async def test_a_failure_recorded_on_a_delivery_its_paused_endpoint_held_keeps_it_held(make_database):
    """The deliverer claimed a delivery, the endpoint was paused (holding it), then the attempt failed: the retry is
    held with the endpoint (shown with no next attempt, never due while it is paused), at its back-off once it is
    active again; the same whichever of the pause and the failure comes first."""
    conn = await asyncpg.connect(make_database("webhook_held_failed"))
    try:
        await conn.execute("INSERT INTO tenants (id, name) VALUES ('t', 't')")
        endpoint = await _endpoint(conn, "t")
        first, then = await new_deliveries(conn, "t", endpoint, 2)

        async def set_active(active: bool) -> None:
            await webhooks.update_endpoint(conn, "t", endpoint, WebhookEndpointUpdate(active=active), policy=DEV)

        assert await conn.fetch(Q["claim_webhook_deliveries"], 10, 30)  # both leased to the deliverer
        assert await webhooks_store.attempt_failed(conn, then, 503, "down", 60) == "pending"  # before the pause
        await set_active(False)
        assert await webhooks_store.attempt_failed(conn, first, 500, "down", 0) == "pending"  # after it: due at once
        assert await _due(conn, endpoint) == set()
        assert await _shown(conn, "t", endpoint) == {first: None, then: None}
        assert await _claimed(conn) == set()
        failed_at = await _scheduled(conn, {first, then})
        await set_active(True)
        assert await _scheduled(conn, {first, then}) == {d: at - HELD for d, at in failed_at.items()}
        assert await _claimed(conn) == {first}  # `then` waits out its 60 s back-off
    finally:
        await conn.close()


async def test_a_redelivery_of_an_entitys_earlier_delivery_holds_its_later_ones_until_it_ends(make_database):
    """POST .../redeliver of a delivery that succeeded, while a later one of its entity is pending and due: the later
    one waits for it (event order per entity), held (no next attempt shown, not walked over by every claim), and due
    when it was once the redelivered one ends."""
    conn = await asyncpg.connect(make_database("webhook_held_redelivered"))
    try:
        await conn.execute("INSERT INTO tenants (id, name) VALUES ('t', 't')")
        endpoint = await _endpoint(conn, "t")
        x, y = uuid.uuid4(), uuid.uuid4()
        x1, y1, x2, x3 = await _fanned_out(conn, "t", endpoint, [x, y, x, x])
        await webhooks_store.delivered(conn, x1, 200)
        await webhooks_store.delivered(conn, y1, 200)
        assert await _claimed(conn) == {x2}
        scheduled = await _scheduled(conn, {x2})
        await webhooks.redeliver(conn, "t", x1, retry_window_s=60)
        assert await _due(conn, endpoint) == {x1}  # x2 (and x3 behind it) held
        assert (await _shown(conn, "t", endpoint))[x2] is None
        assert await _claimed(conn) == {x1}
        await webhooks_store.delivered(conn, x1, 200)
        assert await _scheduled(conn, {x2}) == scheduled  # due when it was
        assert await _claimed(conn) == {x2}
        # Failed ones redelivered together with the later one pending: the same.
        await conn.execute("UPDATE webhook_deliveries SET status = 'failed' WHERE id = ANY($1::uuid[])", [x1, y1])
        assert await webhooks.redeliver_failed(conn, "t", endpoint_id=endpoint, retry_window_s=60) == 2
        assert await _due(conn, endpoint) == {x1, y1}
        assert await _claimed(conn) == {x1, y1}
    finally:
        await conn.close()


async def test_a_pending_delivery_redelivered_while_it_waits_stays_held(make_database):
    """POST .../redeliver of a delivery still pending and held (its endpoint paused; an earlier pending one of its
    entity before it): pending again now, still held (no next attempt shown, not walked over by every claim), due at
    the redelivery once what held it ends. Found by tests/property/test_webhook_hold_model.py: it was made due."""
    conn = await asyncpg.connect(make_database("webhook_held_pending_redelivered"))
    try:
        await conn.execute("INSERT INTO tenants (id, name) VALUES ('t', 't')")
        endpoint = await _endpoint(conn, "t")
        x = uuid.uuid4()
        x1, x2 = await _fanned_out(conn, "t", endpoint, [x, x])
        assert await _claimed(conn) == {x1}
        before = await conn.fetchval("SELECT now()")
        await webhooks.redeliver(conn, "t", x2, retry_window_s=60)  # behind x1, still pending
        after = await conn.fetchval("SELECT now()")
        assert await _due(conn, endpoint) == {x1}
        assert (await _shown(conn, "t", endpoint))[x2] is None
        await webhooks_store.delivered(conn, x1, 200)
        assert before <= (await _shown(conn, "t", endpoint))[x2] <= after  # due at the redelivery
        assert await _claimed(conn) == {x2}

        await webhooks.update_endpoint(conn, "t", endpoint, WebhookEndpointUpdate(active=False), policy=DEV)
        await webhooks.redeliver(conn, "t", x2, retry_window_s=60)  # its endpoint paused, still pending
        assert await _due(conn, endpoint) == set()
        assert (await _shown(conn, "t", endpoint))[x2] is None
        await webhooks.update_endpoint(conn, "t", endpoint, WebhookEndpointUpdate(active=True), policy=DEV)
        assert await _claimed(conn) == {x2}
    finally:
        await conn.close()


async def test_a_redelivery_racing_the_end_of_the_next_delivery_of_its_entity_holds_the_one_that_end_released(
        make_database):
    """x1 redelivered while x2 (the next one of its entity) ends, x3 waiting behind x2: the end releases x3, the
    redelivery holds it again (x3 waits for x1), whichever commits first."""
    url = make_database("webhook_held_redelivery_race")
    conn, other = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        for n, end_first in enumerate((True, False)):
            t = f"t{n}"
            await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, $1)", t)
            endpoint = await _endpoint(conn, t)
            x = uuid.uuid4()
            x1, x2, x3 = await _fanned_out(conn, t, endpoint, [x, x, x])
            await webhooks_store.delivered(conn, x1, 200)
            assert await _claimed(conn) >= {x2}
            ending = conn.transaction()
            if end_first:  # the end has locked x2 and released x3; the redelivery comes before it commits
                await ending.start()
                await webhooks_store.delivered(conn, x2, 200)
                redelivery = asyncio.create_task(webhooks.redeliver(other, t, x1, retry_window_s=60))
                await _done_or_waiting(None, conn, other.get_server_pid())
                await ending.commit()
                await redelivery
                assert await _due(conn, endpoint) == {x1}, end_first  # x3 waits for x1
            else:  # the redelivery has held x2; the end of x2 comes before it commits
                redelivering = other.transaction()
                await redelivering.start()
                await webhooks.redeliver(other, t, x1, retry_window_s=60)
                end = asyncio.create_task(webhooks_store.delivered(conn, x2, 200))
                await _done_or_waiting(None, other, conn.get_server_pid())
                await redelivering.commit()
                await end
                assert await _due(conn, endpoint) == {x1}, end_first  # x3 still waits behind x2, then x1
            await webhooks_store.delivered(conn, x1, 200)
            assert await _due(conn, endpoint) == {x3}, end_first
    finally:
        await other.close()
        await conn.close()


async def test_a_redelivery_racing_a_pause_or_an_enable_of_its_endpoint_is_held_while_paused_and_due_while_active(
        make_database):
    """POST .../redeliver (or the CLI's redeliver of every failed one) while PATCH active=false (or true) of its
    endpoint is in flight, in either order of commit: once both committed, the redelivered delivery is held if the
    endpoint is paused (no next attempt shown, not walked over by every claim) and due if it is active (never left
    held: it would never be delivered). Paused, it is due once the endpoint is active again."""
    url = make_database("webhook_held_redelivery_pause_race")
    conn, other = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        await conn.execute("SET deadlock_timeout = '100ms'")
        await other.execute("SET deadlock_timeout = '100ms'")
        cases = [(active, change_first, one) for active in (False, True) for change_first in (True, False)
                 for one in (True, False)]
        for n, (active, change_first, one) in enumerate(cases):
            t = f"t{n}"
            case = ("enable" if active else "pause", "first" if change_first else "second",
                    "redeliver" if one else "redeliver_failed")
            await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, $1)", t)
            endpoint = await _endpoint(conn, t, active=not active)
            (failed,) = await new_deliveries(conn, t, endpoint, 1, status="failed")

            def redeliver():
                if one:
                    return webhooks.redeliver(conn, t, failed, retry_window_s=60)
                return webhooks.redeliver_failed(conn, t, endpoint_id=endpoint, retry_window_s=60)

            changing, redelivering = other.transaction(), conn.transaction()
            if change_first:  # the PATCH has held or released the endpoint's deliveries; the redelivery comes
                await changing.start()
                await webhooks.update_endpoint(other, t, endpoint, WebhookEndpointUpdate(active=active), policy=DEV)
                redelivery = asyncio.create_task(redeliver())
                await _done_or_waiting(redelivery, other, conn.get_server_pid())
                await changing.commit()
                await redelivery
            else:  # the redelivery has made it pending; the PATCH comes before it commits
                await redelivering.start()
                await redeliver()
                patch = asyncio.create_task(webhooks.update_endpoint(
                    other, t, endpoint, WebhookEndpointUpdate(active=active), policy=DEV))
                await _done_or_waiting(patch, conn, other.get_server_pid())
                await redelivering.commit()
                await patch
            assert await conn.fetchval("SELECT status FROM webhook_deliveries WHERE id = $1", failed) == "pending"
            if not active:
                assert await _due(conn, endpoint) == set(), case
                assert await _shown(conn, t, endpoint) == {failed: None}, case
                await webhooks.update_endpoint(conn, t, endpoint, WebhookEndpointUpdate(active=True), policy=DEV)
            assert await _due(conn, endpoint) == {failed}, case
            assert failed in await _claimed(conn), case
            await webhooks_store.delivered(conn, failed, 200)
    finally:
        await other.close()
        await conn.close()


async def test_a_delivery_made_while_its_entitys_earlier_one_is_redelivered_waits_for_it(make_database):
    """The fan-out of an entity's next event and POST .../redeliver of its earlier delivery, in either order of commit:
    once both committed (and the deliverer's next round fanned out what it skipped), the new delivery waits for the
    redelivered one (held: no next attempt shown), due once that one ended."""
    url = make_database("webhook_held_redelivery_fan_out_race")
    conn, other = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        for n, redelivery_first in enumerate((True, False)):
            t = f"t{n}"
            await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, $1)", t)
            endpoint = await _endpoint(conn, t)
            x = uuid.uuid4()
            (x1,) = await _fanned_out(conn, t, endpoint, [x])
            await webhooks_store.delivered(conn, x1, 200)
            redelivering, making = conn.transaction(), other.transaction()
            if redelivery_first:  # x1 pending again; the next event is fanned out before that commits
                await redelivering.start()
                await webhooks.redeliver(conn, t, x1, retry_window_s=60)
                fan_out = asyncio.create_task(_fanned_out(other, t, endpoint, [x]))
                await _done_or_waiting(fan_out, conn, other.get_server_pid())
                await redelivering.commit()
                await fan_out
            else:  # the next one made; x1 redelivered before that commits
                await making.start()
                await _fanned_out(other, t, endpoint, [x])
                redelivery = asyncio.create_task(webhooks.redeliver(conn, t, x1, retry_window_s=60))
                await _done_or_waiting(redelivery, other, conn.get_server_pid())
                await making.commit()
                await redelivery
            await webhooks_store.fan_out(conn, endpoint, 1000, 3600)  # the deliverer's next round
            (x2,) = [d for d in await _fanned_out(conn, t, endpoint, []) if d != x1]
            assert await _due(conn, endpoint) == {x1}, redelivery_first
            assert (await _shown(conn, t, endpoint))[x2] is None, redelivery_first
            await webhooks_store.delivered(conn, x1, 200)
            assert await _due(conn, endpoint) == {x2}, redelivery_first
    finally:
        await other.close()
        await conn.close()
