"""Webhooks delivered by real worker processes to a receiver the test runs (the customer's server): signed as the
official SDK checks, at least once through a receiver that is down then up, the same X-Webhook-ID on every
attempt, in event order per entity, failed for good after the retry window and then redelivered."""

from __future__ import annotations

import json
import uuid

import pytest
from webhook_receiver import Receiver
from worker_helpers import end_listening_session, new_book, wait_until

from cell.ledger.commands import WebhookEndpointCreate
from cell.service import webhooks
from control_plane.devstack import free_port
from ledger_common.outbound import OutboundPolicy

DEV = OutboundPolicy(allow_http_loopback=True)
FAST_RETRIES = {"webhook_allow_http_loopback": "true", "webhook_backoff_base_s": "0.2", "webhook_backoff_cap_s": "1",
                "webhook_poll_s": "0.1", "webhook_run_s": "3", "concurrency": "4"}


async def _endpoint(pool, tenant: str, url: str, event_names: list[str] = ()):
    async with pool.acquire() as conn:
        return await webhooks.create_endpoint(conn, tenant, WebhookEndpointCreate(url=url, event_names=list(event_names)),
                                              policy=DEV, endpoints_max=32)


async def _events(pool, tenant: str, events: list[tuple[uuid.UUID, str]]) -> None:
    """Events as a write path emits them (ledger_event, one transaction each), then positioned by the sequencer."""
    async with pool.acquire() as conn:
        for entity, name in events:
            await conn.execute("SELECT ledger_event($1, 'ledger_transaction', $2, $3, $4::jsonb)", tenant, name,
                               entity, json.dumps({"id": str(entity), "object": "ledger_transaction"}))
        while await conn.fetchval("SELECT ledger_sequence_events()"):
            pass


async def _event_ids(pool, tenant: str) -> list[str]:
    rows = await pool.fetch("SELECT id FROM events WHERE tenant_id = $1 ORDER BY position", tenant)
    return [str(r["id"]) for r in rows]


async def _deliveries(pool, tenant: str) -> dict[str, dict]:
    async with pool.acquire() as conn:
        rows = await webhooks.list_deliveries(conn, tenant, limit=1000)
    return {str(r["event_id"]): dict(r) for r in rows}


@pytest.fixture
async def book(pool):
    async with pool.acquire() as conn:
        return await new_book(conn, {"cash": "debit"})


async def test_a_receiver_down_then_up_gets_every_event_signed_in_order_per_entity(pool, book, sqs_queue,
                                                                                  worker_process):
    receiver = Receiver(port=free_port())  # not listening yet: the customer's server is down
    endpoint = await _endpoint(pool, book.tenant, receiver.url)
    receiver.key = endpoint.webhook_key
    entities = [uuid.uuid4() for _ in range(3)]
    await _events(pool, book.tenant, [(e, name) for name in ("ledger_transaction.created", "ledger_transaction.posted")
                                      for e in entities])
    ids = await _event_ids(pool, book.tenant)
    worker_process(sqs_queue, **FAST_RETRIES)

    async def failed_attempts():
        return [d for d in (await _deliveries(pool, book.tenant)).values() if d["attempts"] >= 1]

    await wait_until(failed_attempts, 60, what="attempts against the receiver while it is down")
    receiver.start()
    try:
        await wait_until(lambda: _all_succeeded(pool, book.tenant, ids), 60, what="every delivery succeeded")
        got = receiver.delivered()
        assert set(got) == set(ids)
        assert all(r.signed for r in receiver.snapshot())
        deliveries = await _deliveries(pool, book.tenant)
        assert {e: r.webhook_id for e, r in got.items()} == {e: str(d["id"]) for e, d in deliveries.items()}
        body = got[ids[0]].event
        assert body["object"] == "event" and body["live_mode"] is True and body["resource"] == "ledger_transaction"
        assert set(body) >= {"id", "object", "live_mode", "resource", "event_name", "event_time", "entity_id", "data"}
        # In event order per entity: an entity's `posted` never arrives before its `created` was delivered.
        for entity in map(str, entities):
            mine = [r for r in receiver.snapshot() if r.event["entity_id"] == entity]
            names = [r.event["event_name"] for r in mine]
            assert names.index("ledger_transaction.posted") > names.index("ledger_transaction.created")
    finally:
        receiver.stop()


async def _all_succeeded(pool, tenant: str, ids: list[str]) -> bool:
    deliveries = await _deliveries(pool, tenant)
    return set(deliveries) == set(ids) and all(d["status"] == "succeeded" for d in deliveries.values())


async def test_a_retried_delivery_carries_the_same_webhook_id_and_waits_for_the_entitys_earlier_event(
        pool, book, sqs_queue, worker_process):
    receiver = Receiver().start()
    attempts: dict[str, int] = {}

    def answer(event: dict) -> int:
        # The first two attempts of every `created` fail (as a receiver that processed it but crashed before
        # answering): those events arrive more than once.
        attempts[event["id"]] = attempts.get(event["id"], 0) + 1
        return 500 if event["event_name"].endswith("created") and attempts[event["id"]] <= 2 else 200

    receiver.answer = answer
    try:
        endpoint = await _endpoint(pool, book.tenant, receiver.url)
        receiver.key = endpoint.webhook_key
        entity = uuid.uuid4()
        await _events(pool, book.tenant, [(entity, "ledger_transaction.created"),
                                          (entity, "ledger_transaction.posted")])
        ids = await _event_ids(pool, book.tenant)
        worker_process(sqs_queue, **FAST_RETRIES)
        await wait_until(lambda: _all_succeeded(pool, book.tenant, ids), 60, what="both deliveries succeeded")
        seen = receiver.snapshot()
        created = [r for r in seen if r.event["id"] == ids[0]]
        assert len(created) == 3 and len({r.webhook_id for r in created}) == 1
        assert [r.answered for r in created] == [500, 500, 200]
        posted = [r for r in seen if r.event["id"] == ids[1]]
        assert posted[0].at >= created[-1].at  # not delivered before the earlier event of its entity succeeded
        assert all(r.signed for r in seen)
    finally:
        receiver.stop()


async def test_only_the_wanted_events_and_failed_for_good_after_the_window_then_redelivered(pool, book, sqs_queue,
                                                                                           worker_process):
    receiver = Receiver().start()
    receiver.answer = lambda event: 503
    try:
        # A token in the URL's query (some receivers authenticate so) is the tenant's secret: not in the logs.
        endpoint = await _endpoint(pool, book.tenant, receiver.url + "?token=tok-s3cret",
                                   ["ledger_transaction.posted"])
        receiver.key = endpoint.webhook_key
        await _events(pool, book.tenant, [(uuid.uuid4(), "ledger_transaction.created"),
                                          (uuid.uuid4(), "ledger_transaction.posted")])
        worker = worker_process(sqs_queue, **FAST_RETRIES, webhook_retry_window_s="2")

        async def failed():
            ds = await _deliveries(pool, book.tenant)
            return len(ds) == 1 and all(d["status"] == "failed" for d in ds.values()) and ds

        deliveries = await wait_until(failed, 60, what="the delivery failed for good")
        (event_id, delivery), = deliveries.items()
        assert delivery["event_name"] == "ledger_transaction.posted" and delivery["attempts"] >= 2
        assert delivery["last_status_code"] == 503 and "503" in delivery["last_error"]

        async def logged() -> bool:
            return "failed for good" in worker.log()

        await wait_until(logged, 30, what="the failure logged")
        assert "tok-s3cret" not in worker.log() and receiver.url.split("//", 1)[1] in worker.log()
        receiver.answer = lambda event: 200
        async with pool.acquire() as conn:
            again = await webhooks.redeliver(conn, book.tenant, delivery["id"], retry_window_s=3600)
        assert again.status == "pending" and again.id == delivery["id"]
        await wait_until(lambda: _all_succeeded(pool, book.tenant, [event_id]), 60, what="the redelivery")
        assert {r.webhook_id for r in receiver.snapshot()} == {str(delivery["id"])}
    finally:
        receiver.stop()


async def test_redirects_are_not_followed_and_a_huge_answer_is_read_only_in_part(pool, book, sqs_queue,
                                                                               worker_process):
    receiver = Receiver().start()
    huge = b"x" * (8 * 1024 * 1024)
    receiver.answer = lambda event: ((302, {"Location": receiver.url + "/elsewhere"}, b"")
                                     if event["event_name"].endswith("created") else (200, {}, huge))
    try:
        endpoint = await _endpoint(pool, book.tenant, receiver.url)
        receiver.key = endpoint.webhook_key
        await _events(pool, book.tenant, [(uuid.uuid4(), "ledger_transaction.created"),
                                          (uuid.uuid4(), "ledger_transaction.posted")])
        ids = await _event_ids(pool, book.tenant)
        worker_process(sqs_queue, **FAST_RETRIES)

        async def settled():
            ds = await _deliveries(pool, book.tenant)
            return (len(ds) == 2 and ds[ids[1]]["status"] == "succeeded" and ds[ids[0]]["attempts"] >= 2) and ds

        deliveries = await wait_until(settled, 60, what="a redirect retried and a huge answer taken")
        redirected = deliveries[ids[0]]
        assert redirected["status"] == "pending" and redirected["last_status_code"] == 302
        assert "redirect" in redirected["last_error"]
        assert receiver.gets == []  # the Location was never requested
    finally:
        receiver.stop()


async def test_an_address_refused_at_delivery_is_a_failed_attempt_not_a_call(pool, book, sqs_queue, worker_process):
    """Registered while http to loopback was allowed, delivered by a worker that does not allow it: refused."""
    receiver = Receiver().start()
    try:
        endpoint = await _endpoint(pool, book.tenant, receiver.url)
        receiver.key = endpoint.webhook_key
        await _events(pool, book.tenant, [(uuid.uuid4(), "ledger_account.created")])
        worker_process(sqs_queue, **(FAST_RETRIES | {"webhook_allow_http_loopback": "false"}))

        async def refused():
            ds = list((await _deliveries(pool, book.tenant)).values())
            return ds and ds[0]["attempts"] >= 1 and ds[0]

        delivery = await wait_until(refused, 60, what="an attempt")
        assert delivery["last_error"].startswith("refused: ") and "https" in delivery["last_error"]
        assert receiver.snapshot() == []
    finally:
        receiver.stop()


async def test_an_event_positioned_while_the_deliverer_idles_is_sent_at_once_not_at_its_next_poll(
        pool, book, worker_database_url):
    """An idle deliverer polls only every webhook_poll_idle_s, but listens for events positioned: one positioned
    meanwhile (by any sequencer of the cell) is sent at once (here the idle poll is ten minutes away)."""
    import asyncio

    import asyncpg

    from cell.store import events as store_events
    from ledger_common.pacing import AsyncPacer
    from worker import webhooks as worker_webhooks
    from worker.settings import load_settings as load_worker_settings

    receiver = Receiver().start()
    try:
        endpoint = await _endpoint(pool, book.tenant, receiver.url)
        receiver.key = endpoint.webhook_key
        settings = load_worker_settings({}, database_url=worker_database_url, webhook_allow_http_loopback=True,
                                        webhook_poll_s=0.05, webhook_poll_idle_s=600)
        pacer = AsyncPacer(settings.webhook_poll_s, settings.webhook_poll_idle_s)
        while pacer.after(False) < settings.webhook_poll_idle_s:  # a long idle spell
            pass
        since = await pool.fetchval("SELECT clock_timestamp()")  # what pooled sessions did before is not its
        delivering = asyncio.create_task(worker_webhooks.deliver_for(pool, settings, 600, pacer))

        async def idle(query: str) -> bool:
            admin = await asyncpg.connect(worker_database_url)  # the app role does not see others' sessions
            try:
                return bool(await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE state = 'idle'"
                                                 " AND datname = current_database() AND pid <> pg_backend_pid()"
                                                 " AND query LIKE $1 AND state_change > $2", query, since))
            finally:
                await admin.close()

        try:
            await wait_until(lambda: idle("LISTEN%ledger_events_positioned%"), what="the deliverer listening")
            await wait_until(lambda: idle("%FROM webhook_deliveries%"), what="its first round done")
            entity = uuid.uuid4()
            async with pool.acquire() as conn:
                await conn.execute("SELECT ledger_event($1, 'ledger_transaction', 'ledger_transaction.created', $2,"
                                   " '{}'::jsonb)", book.tenant, entity)
                assert await store_events.sequence(conn) >= 1  # as a sequencer positions it: with its notification
            ids = await _event_ids(pool, book.tenant)

            async def sent():
                return set(receiver.delivered()) == set(ids)

            await wait_until(sent, 60, what="the event sent")  # far below the idle poll's 600 s
        finally:
            delivering.cancel()
            await asyncio.gather(delivering, return_exceptions=True)
    finally:
        receiver.stop()


async def test_a_deliverer_whose_listening_session_ends_finishes_its_run_and_still_delivers(
        pool, book, worker_database_url):
    """PostgreSQL ends the session the deliverer listens on (a restart, a terminated backend): the run goes on by its
    polls, an event positioned afterwards is still sent, and the run ends as usual, not with an InterfaceError from
    removing the listener of a connection asyncpg already took back."""
    import asyncio
    import time

    import asyncpg

    from cell.store import events as store_events
    from worker import webhooks as worker_webhooks
    from worker.settings import load_settings as load_worker_settings

    receiver = Receiver().start()
    admin = await asyncpg.connect(worker_database_url)  # the app role does not see others' sessions
    try:
        endpoint = await _endpoint(pool, book.tenant, receiver.url)
        receiver.key = endpoint.webhook_key
        settings = load_worker_settings({}, database_url=worker_database_url, webhook_allow_http_loopback=True,
                                        webhook_poll_s=0.05, webhook_poll_idle_s=0.2)
        started = time.monotonic()
        delivering = asyncio.create_task(worker_webhooks.deliver_for(pool, settings, 5))
        try:
            await end_listening_session(admin, store_events.POSITIONED_CHANNEL, "the deliverer listening")
            async with pool.acquire() as conn:
                await conn.execute("SELECT ledger_event($1, 'ledger_transaction', 'ledger_transaction.created', $2,"
                                   " '{}'::jsonb)", book.tenant, uuid.uuid4())
                assert await store_events.sequence(conn) >= 1
            ids = await _event_ids(pool, book.tenant)

            async def sent():
                return set(receiver.delivered()) == set(ids)

            await wait_until(sent, 60, what="the event sent by the deliverer's polls")
            outcome = await asyncio.wait_for(delivering, 60)
            assert outcome.succeeded == 1 and time.monotonic() - started >= 5
        finally:
            delivering.cancel()
            await asyncio.gather(delivering, return_exceptions=True)
    finally:
        await admin.close()
        receiver.stop()


async def test_an_endpoint_url_the_client_cannot_encode_is_a_refused_attempt_and_other_tenants_still_get_theirs(
        pool, book, worker_database_url):
    """An endpoint registered before its URL's host was checked as the worker's client encodes it (the resolver read
    the full-width digits as 93.184.216.34, the client cannot encode them): its delivery is a failed attempt that
    says why, and the batch it was claimed with (another tenant's delivery here) is delivered and recorded."""
    from cell.ledger.webhooks import new_key
    from cell.store import webhooks as store_webhooks
    from worker import webhooks as worker_webhooks
    from worker.settings import load_settings as load_worker_settings

    receiver = Receiver().start()
    try:
        endpoint = await _endpoint(pool, book.tenant, receiver.url)
        receiver.key = endpoint.webhook_key
        async with pool.acquire() as conn:
            other = await new_book(conn, {"cash": "debit"})
            full_width = "https://\uff19\uff13.\uff11\uff18\uff14.\uff12\uff11\uff16.\uff13\uff14/hooks"
            await store_webhooks.insert_endpoint(conn, uuid.uuid4(), other.tenant, url=full_width, event_names=[],
                                                 description=None, metadata={}, key=new_key())
        await _events(pool, book.tenant, [(uuid.uuid4(), "ledger_account.created")])
        await _events(pool, other.tenant, [(uuid.uuid4(), "ledger_account.created")])
        settings = load_worker_settings({}, database_url=worker_database_url, webhook_allow_http_loopback=True)
        await worker_webhooks.fan_out(pool, settings)
        async with worker_webhooks.http_client(settings) as client:
            await worker_webhooks.deliver_due(pool, client, settings)
        (good,) = (await _deliveries(pool, book.tenant)).values()
        (bad,) = (await _deliveries(pool, other.tenant)).values()
        assert good["status"] == "succeeded" and set(receiver.delivered()) == set(await _event_ids(pool, book.tenant))
        assert bad["status"] == "pending" and bad["attempts"] == 1 and bad["last_error"].startswith("refused: ")
    finally:
        receiver.stop()


async def test_a_receiver_that_hangs_does_not_fail_another_tenants_attempts_that_wait_for_a_connection(
        pool, book, worker_database_url):
    """One tenant's receiver hangs on as many deliveries as the deliverer has connections: another tenant's delivery
    in the same batch waits for a connection, then is sent and succeeds; its time to answer starts when it is sent,
    not when the batch began (it was recorded as its receiver's failure to answer, never sent)."""
    import time

    from cell.store import webhooks as store_webhooks
    from worker import webhooks as worker_webhooks
    from worker.settings import load_settings as load_worker_settings

    hanging, fast = Receiver().start(), Receiver().start()
    hanging.answer = lambda event: time.sleep(3) or 200
    try:
        slow_endpoint = await _endpoint(pool, book.tenant, hanging.url)
        async with pool.acquire() as conn:
            other = await new_book(conn, {"cash": "debit"})
        fast_endpoint = await _endpoint(pool, other.tenant, fast.url)
        fast.key = fast_endpoint.webhook_key
        await _events(pool, book.tenant, [(uuid.uuid4(), "ledger_account.created") for _ in range(2)])
        await _events(pool, other.tenant, [(uuid.uuid4(), "ledger_account.created")])
        async with pool.acquire() as conn:  # the hanging receiver's deliveries first in line
            for endpoint in (slow_endpoint, fast_endpoint):
                async with conn.transaction():
                    await store_webhooks.fan_out(conn, endpoint.id, 100, 3600)
        settings = load_worker_settings({}, database_url=worker_database_url, webhook_allow_http_loopback=True,
                                        webhook_concurrency_max=2, webhook_timeout_s=1)
        async with worker_webhooks.http_client(settings) as client:
            await worker_webhooks.deliver_due(pool, client, settings)
        (delivery,) = (await _deliveries(pool, other.tenant)).values()
        assert delivery["status"] == "succeeded", delivery["last_error"]
        assert set(fast.delivered()) == set(await _event_ids(pool, other.tenant))
        assert {d["status"] for d in (await _deliveries(pool, book.tenant)).values()} == {"pending"}
    finally:
        hanging.stop()
        fast.stop()


async def test_a_paused_endpoint_hears_nothing_until_active_again_then_every_event_it_missed(pool, book, sqs_queue,
                                                                                         worker_process):
    """`active: false` pauses an endpoint (README): the events of the pause wait and are delivered when it is back,
    while another endpoint of the tenant hears them at once."""
    from cell.ledger.commands import WebhookEndpointUpdate

    paused, live = Receiver().start(), Receiver().start()
    try:
        endpoint = await _endpoint(pool, book.tenant, paused.url)
        paused.key = endpoint.webhook_key
        live.key = (await _endpoint(pool, book.tenant, live.url)).webhook_key

        async def set_active(active: bool) -> None:
            async with pool.acquire() as conn:
                await webhooks.update_endpoint(conn, book.tenant, endpoint.id, WebhookEndpointUpdate(active=active),
                                               policy=DEV)

        await set_active(False)
        await _events(pool, book.tenant, [(uuid.uuid4(), "ledger_transaction.created") for _ in range(3)])
        ids = await _event_ids(pool, book.tenant)
        worker_process(sqs_queue, **FAST_RETRIES)
        async def heard(receiver: Receiver) -> bool:
            return set(receiver.delivered()) == set(ids)

        await wait_until(lambda: heard(live), 60, what="the live endpoint heard every event")
        assert paused.delivered() == {}
        async with pool.acquire() as conn:
            assert await webhooks.list_deliveries(conn, book.tenant, endpoint_id=endpoint.id) == []
        await set_active(True)
        await wait_until(lambda: heard(paused), 60, what="the paused endpoint's events")
        assert all(r.signed for r in paused.snapshot())
    finally:
        paused.stop()
        live.stop()
