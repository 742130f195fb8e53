"""Bulk requests through the cell's HTTP API, processed by real worker processes: mixed valid and invalid
resources (one result each), a worker killed mid-request and another taking over (every resource processed
exactly once), updates committed with their results (a fault between them, a worker stalled past its lease), a
retried request (its Idempotency-Key answers the same request), the completion event."""

from __future__ import annotations

import uuid

import pytest
from litestar.testing import AsyncTestClient
from worker_helpers import api_book, end_listening_session, wait_until

from cell.api.app import create_app
from cell.ledger.errors import IdempotencyKeyReused
from cell.settings import load_settings
from cell.store.verify import verify

BOOK = {"cash": "debit", "wallet": "credit"}
FAST = {"bulk_poll_s": "0.1", "bulk_run_s": "3", "concurrency": "4", "bulk_lease_s": "3"}


@pytest.fixture
async def client(worker_database_url):
    settings = load_settings(("CELL_TEST_UNUSED_",), database_url=worker_database_url, posting_mode="hybrid",
                             db_pool_min=1, db_pool_max=4, sweep_interval_s=0)
    async with AsyncTestClient(create_app(settings)) as c:
        yield c


def _txn(ids: dict, amount: int, **extra) -> dict:
    return {"status": "posted", "ledger_entries": [
        {"ledger_account_id": ids["cash"], "direction": "debit", "amount": amount},
        {"ledger_account_id": ids["wallet"], "direction": "credit", "amount": amount}], **extra}


async def _completed(client, auth, request_id: str):
    body = (await client.get(f"/api/bulk_requests/{request_id}", auth=auth)).json()
    return body if body["status"] == "completed" else None


async def _results(client, auth, request_id: str, **params) -> list[dict]:
    found, cursor = [], None
    while True:
        query = {"request_id": request_id, "per_page": 100, **params, **({"after_cursor": cursor} if cursor else {})}
        r = await client.get("/api/bulk_results", auth=auth, params=query)
        assert r.status_code == 200, r.text
        found += r.json()
        cursor = r.headers.get("x-after-cursor")
        if not cursor:
            return found


# Another worker's claim of the request (claim_bulk_request's, of this request only, whatever its lease): the test
# stands in for a lease that ran out.
_TAKE_OVER = ("UPDATE bulk_requests SET status = 'processing', lease_token = gen_random_uuid(), "
              "attempts = attempts + 1, lease_until = now() + interval '60 seconds' WHERE id = $1 RETURNING *")


async def _fail_successful_results(admin, request_id: uuid.UUID) -> str:
    """A fault injected in the test's PostgreSQL: writing a successful result of the request raises (as a worker that
    dies between an update and its result would never write it). Returns the trigger's name (and its function's)."""
    fn = f"fault_{uuid.uuid4().hex[:12]}"
    await admin.execute(f"""
        CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.request_id = '{request_id}' AND NEW.status = 'successful' THEN
                RAISE EXCEPTION 'injected fault' USING ERRCODE = 'XX000';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER {fn} BEFORE INSERT ON bulk_results FOR EACH ROW EXECUTE FUNCTION {fn}();""")
    return fn


async def _attempt_failing_at_its_results(pool, worker_database_url: str, rid: uuid.UUID):
    """An attempt at the request (a claim of it, as another worker's) whose successful results cannot be written
    (_fail_successful_results): it fails with the injected fault. Returns the cell context it ran with."""
    import asyncpg

    from cell.service import bulk as bulk_service
    from worker import bulk as worker_bulk
    from worker.settings import load_settings as load_worker_settings

    ctx = worker_bulk.cell_context(pool, load_worker_settings({}, database_url=worker_database_url,
                                                              posting_mode="hybrid"))
    admin = await asyncpg.connect(worker_database_url)
    fn = await _fail_successful_results(admin, rid)
    try:
        with pytest.raises(asyncpg.PostgresError, match="injected fault"):
            await bulk_service.process(ctx, await pool.fetchrow(_TAKE_OVER, rid), chunk_size=10, chunks_at_once=1,
                                       lease_s=60)
    finally:
        await admin.execute(f"DROP TRIGGER {fn} ON bulk_results; DROP FUNCTION {fn}();")
        await admin.close()
    return ctx


async def _pending_update_request(client, auth, ids, resource: dict) -> tuple[str, uuid.UUID]:
    """A pending transaction (5 from cash to wallet) and a bulk request of one update of it: their ids."""
    txn = (await client.post("/api/ledger_transactions", auth=auth, json=_txn(ids, 5) | {"status": "pending"})).json()
    request = (await client.post("/api/bulk_requests", auth=auth, json={
        "action_type": "update", "resource_type": "ledger_transaction",
        "resources": [{"id": txn["id"], **resource}]})).json()
    return txn["id"], uuid.UUID(request["id"])


async def test_mixed_valid_and_invalid_resources_get_one_result_each(client, pool, sqs_queue, worker_process):
    auth, ids = await api_book(client, pool, "bulk", BOOK)
    resources = [_txn(ids, 10, external_id="ok-1"), _txn(ids, 0), {"ledger_entries": "nope"},
                 _txn(ids, 20, description="unbalanced") | {"ledger_entries": [
                     {"ledger_account_id": ids["cash"], "direction": "debit", "amount": 20}]},
                 _txn(ids, 30, external_id="ok-1"),  # the external_id is taken (by resource 0): refused alone
                 _txn(ids, 40, metadata={"n": "5"})]
    r = await client.post("/api/bulk_requests", auth=auth, json={
        "action_type": "create", "resource_type": "ledger_transaction", "resources": resources,
        "metadata": {"batch": "1"}})
    assert r.status_code == 201, r.text
    request = r.json()
    assert request["status"] == "pending" and request["total_resource_count"] == 6
    assert request["object"] == "bulk_request" and request["metadata"] == {"batch": "1"}
    worker_process(sqs_queue, **FAST)
    done = await wait_until(lambda: _completed(client, auth, request["id"]), 60, what="the bulk request completed")
    assert (done["success_result_count"], done["failed_result_count"]) == (2, 4)

    results = await _results(client, auth, request["id"])
    assert len(results) == 6
    by_params = {r["request_params"].get("external_id"): r for r in results if r["status"] == "successful"}
    assert by_params["ok-1"]["entity_type"] == "ledger_transaction"
    assert by_params["ok-1"]["entity"]["id"] == by_params["ok-1"]["entity_id"]
    failed = await _results(client, auth, request["id"], status="failed")
    assert len(failed) == 4 and all(f["entity_type"] == "bulk_error" for f in failed)
    codes = sorted(f["entity"]["request_errors"][0]["code"] for f in failed)
    assert codes == ["entries_required", "external_id_taken", "invalid_request", "invalid_request"], codes
    shape = next(f for f in failed if f["request_params"] == {"ledger_entries": "nope"})
    assert shape["entity"]["request_errors"][0]["parameter"] == "ledger_entries"
    assert len(await _results(client, auth, request["id"], entity_type="bulk_error")) == 4
    one = (await client.get(f"/api/bulk_results/{failed[0]['id']}", auth=auth)).json()
    assert one["entity"]["object"] == "bulk_error" and one["request_type"] == "bulk_request"

    # The successful transactions exist, as GET renders them, and their balances are applied by the worker.
    txn = (await client.get(f"/api/ledger_transactions/{by_params['ok-1']['entity_id']}", auth=auth)).json()
    assert txn == by_params["ok-1"]["entity"] | {"ledger_entries": txn["ledger_entries"],
                                                 "updated_at": txn["updated_at"]}

    async def applied():
        body = (await client.get(f"/api/ledger_accounts/{ids['wallet']}", auth=auth)).json()
        return body["balances"]["posted_balance"]["amount"] == 50

    await wait_until(applied, 30, what="the bulk transactions applied")
    event = await pool.fetchrow("SELECT event_name, resource, data FROM events WHERE tenant_id = $1 AND entity_id = $2",
                                auth[0], uuid.UUID(request["id"]))
    assert event["event_name"] == "bulk_request.completed" and event["resource"] == "bulk_request"
    assert event["data"]["status"] == "completed" and event["data"]["failed_result_count"] == 4
    async with pool.acquire() as conn:
        assert await verify(conn, auth[0]) == []


async def test_balance_locks_refuse_the_request_and_a_retried_request_is_the_same_request(client, pool):
    auth, ids = await api_book(client, pool, "bulk", BOOK)
    locked = _txn(ids, 5)
    locked["ledger_entries"][0]["available_balance_amount"] = {"gte": 0}
    for bad in (locked, _txn(ids, 5) | {"ledger_entries": [
            {"ledger_account_id": ids["cash"], "direction": "debit", "amount": 5, "lock_version": 1},
            {"ledger_account_id": ids["wallet"], "direction": "credit", "amount": 5,
             "show_resulting_ledger_account_balances": True}]},
                _txn(ids, 5) | {"ledger_entries": [  # a lock on version 0 (an account never touched) is a lock too
                    {"ledger_account_id": ids["cash"], "direction": "debit", "amount": 5, "lock_version": 0},
                    {"ledger_account_id": ids["wallet"], "direction": "credit", "amount": 5}]}):
        r = await client.post("/api/bulk_requests", auth=auth, json={
            "action_type": "create", "resource_type": "ledger_transaction", "resources": [_txn(ids, 1), bad]})
        assert r.status_code == 422 and r.json()["code"] == "bulk_balance_locks_not_allowed", r.text
        assert "resources[1]" in r.json()["detail"]
    body = {"action_type": "create", "resource_type": "ledger_transaction", "resources": [_txn(ids, 1)]}
    first = await client.post("/api/bulk_requests", auth=auth, json=body, headers={"Idempotency-Key": "batch-7"})
    again = await client.post("/api/bulk_requests", auth=auth, json=body, headers={"Idempotency-Key": "batch-7"})
    assert first.status_code == again.status_code == 201 and first.json()["id"] == again.json()["id"]
    listed = (await client.get("/api/bulk_requests", auth=auth)).json()
    assert [b["id"] for b in listed] == [first.json()["id"]]
    too_many = await client.post("/api/bulk_requests", auth=auth, json=body | {"resources": [_txn(ids, 1)] * 1001})
    assert too_many.status_code == 400
    assert (await client.post("/api/bulk_requests", auth=auth, json=body | {"action_type": "delete"})).status_code == 400


async def test_a_worker_killed_mid_request_leaves_every_resource_processed_exactly_once(client, pool, sqs_queue,
                                                                                      worker_process):
    auth, ids = await api_book(client, pool, "bulk", BOOK)
    total = 120
    r = await client.post("/api/bulk_requests", auth=auth, json={
        "action_type": "create", "resource_type": "ledger_transaction",
        "resources": [_txn(ids, 1, external_id=f"k-{i}") for i in range(total)]})
    request = r.json()
    slow = worker_process(sqs_queue, **FAST, bulk_chunk_size="10", fault_pause_between_bulk_chunks_s="0.5")

    async def some_results():
        n = await pool.fetchval("SELECT count(*) FROM bulk_results WHERE request_id = $1", uuid.UUID(request["id"]))
        return 20 <= n < total and n

    await wait_until(some_results, 60, what="part of the request processed")
    slow.kill()
    worker_process(sqs_queue, **FAST)
    done = await wait_until(lambda: _completed(client, auth, request["id"]), 60, what="completed by another worker")
    assert (done["success_result_count"], done["failed_result_count"]) == (total, 0)
    results = await _results(client, auth, request["id"])
    assert len(results) == total
    assert sorted(r["request_params"]["external_id"] for r in results) == sorted(f"k-{i}" for i in range(total))
    made = await pool.fetchval("SELECT count(*) FROM ledger_transactions WHERE tenant_id = $1", auth[0])
    assert made == total  # never twice
    assert len({r["entity_id"] for r in results}) == total


async def test_bulk_accounts_created_then_updated(client, pool, sqs_queue, worker_process):
    auth, ids = await api_book(client, pool, "bulk", BOOK)
    worker_process(sqs_queue, **FAST)
    r = await client.post("/api/bulk_requests", auth=auth, json={
        "action_type": "create", "resource_type": "ledger_account", "resources": [
            {"name": f"a{i}", "ledger_id": ids["ledger"], "normal_balance": "credit", "currency": "USD"}
            for i in range(3)] + [{"name": "no-ledger", "normal_balance": "credit", "currency": "USD"}]})
    created = await wait_until(lambda: _completed(client, auth, r.json()["id"]), 60, what="accounts created")
    assert (created["success_result_count"], created["failed_result_count"]) == (3, 1)
    accounts = [x["entity"] for x in await _results(client, auth, created["id"], entity_type="ledger_account")]
    r = await client.post("/api/bulk_requests", auth=auth, json={
        "action_type": "update", "resource_type": "ledger_account",
        "resources": [{"id": a["id"], "description": "renamed", "metadata": {"k": "v"}} for a in accounts]
        + [{"description": "no id"}, {"id": str(uuid.uuid4()), "description": "unknown"}]})
    updated = await wait_until(lambda: _completed(client, auth, r.json()["id"]), 60, what="accounts updated")
    assert (updated["success_result_count"], updated["failed_result_count"]) == (3, 2)
    for a in accounts:
        shown = (await client.get(f"/api/ledger_accounts/{a['id']}", auth=auth)).json()
        assert shown["description"] == "renamed" and shown["metadata"] == {"k": "v"}
    codes = {x["entity"]["request_errors"][0]["code"] for x in await _results(client, auth, updated["id"],
                                                                              status="failed")}
    assert codes == {"id_required", "not_found"}


async def test_bulk_transaction_updates_post_pending_ones_and_refuse_what_a_patch_refuses(client, pool, sqs_queue,
                                                                                        worker_process):
    auth, ids = await api_book(client, pool, "bulk", BOOK)
    pending = []
    for amount in (5, 6, 7):
        r = await client.post("/api/ledger_transactions", auth=auth, json=_txn(ids, amount) | {"status": "pending"})
        pending.append(r.json()["id"])
    worker_process(sqs_queue, **FAST)
    r = await client.post("/api/bulk_requests", auth=auth, json={
        "action_type": "update", "resource_type": "ledger_transaction", "resources": [
            {"id": pending[0], "status": "posted", "metadata": {"via": "bulk"}},
            {"id": pending[1], "status": "archived"},
            {"id": pending[1], "status": "posted"},  # archived by the resource before: not any more pending
            {"id": pending[2], "ledger_entries": _txn(ids, 8)["ledger_entries"]},  # a pending one's entries replaced
            {"id": pending[0], "ledger_entries": []}]})  # a transaction has at least one entry
    done = await wait_until(lambda: _completed(client, auth, r.json()["id"]), 60, what="updates processed")
    assert (done["success_result_count"], done["failed_result_count"]) == (3, 2)
    first = (await client.get(f"/api/ledger_transactions/{pending[0]}", auth=auth)).json()
    assert first["status"] == "posted" and first["metadata"] == {"via": "bulk"}
    assert (await client.get(f"/api/ledger_transactions/{pending[1]}", auth=auth)).json()["status"] == "archived"
    third = (await client.get(f"/api/ledger_transactions/{pending[2]}", auth=auth)).json()
    assert (third["status"], third["version"], {e["amount"] for e in third["ledger_entries"]}) == ("pending", 2, {8})
    codes = sorted(x["entity"]["request_errors"][0]["code"] for x in await _results(client, auth, done["id"],
                                                                                   status="failed"))
    assert codes == ["invalid_request", "invalid_status_transition"]


async def test_a_resource_posted_alone_before_a_crash_is_answered_not_posted_again(client, pool, worker_database_url):
    """The fallback posts a resource alone (its key claimed) and may die before writing its result: the resumed
    request finds the key and answers with what it made."""
    from cell.ledger.commands import TransactionCreate
    from cell.service import bulk as bulk_service
    from cell.service import transactions
    from worker import bulk as worker_bulk
    from worker.settings import load_settings as load_worker_settings

    auth, ids = await api_book(client, pool, "bulk", BOOK)
    resources = [_txn(ids, 7, external_id=f"alone-{i}") for i in range(3)]
    request = (await client.post("/api/bulk_requests", auth=auth, json={
        "action_type": "create", "resource_type": "ledger_transaction", "resources": resources})).json()
    settings = load_worker_settings({}, database_url=worker_database_url, posting_mode="hybrid", bulk_poll_s=0.05)
    ctx = worker_bulk.cell_context(pool, settings)
    stored = (await pool.fetchval("SELECT resources FROM bulk_requests WHERE id = $1", uuid.UUID(request["id"])))[1]
    alone = await transactions.create_transaction(  # the resource as the worker reads it (its key's hash is of that)
        ctx, auth[0], bulk_service._decode(stored, TransactionCreate),
        bulk_service.resource_idempotency(uuid.UUID(request["id"]), 1, stored))
    await worker_bulk.process_for(pool, settings, 0.5)
    done = await _completed(client, auth, request["id"])
    assert done is not None and done["success_result_count"] == 3
    results = {r["request_params"]["external_id"]: r for r in await _results(client, auth, request["id"])}
    assert results["alone-1"]["entity_id"] == str(alone.id)
    assert await pool.fetchval("SELECT count(*) FROM ledger_transactions WHERE tenant_id = $1", auth[0]) == 3


async def test_a_request_created_while_the_worker_idles_is_started_at_once_not_at_its_next_poll(client, pool,
                                                                                                 worker_database_url):
    """An idle worker polls for bulk requests only every bulk_poll_idle_s, but listens for new ones: a request
    created meanwhile is claimed at once (here the idle poll is ten minutes away)."""
    import asyncio
    import time

    import asyncpg

    from cell.store import bulk as store_bulk
    from ledger_common.pacing import AsyncPacer
    from worker import bulk as worker_bulk
    from worker.settings import load_settings as load_worker_settings

    auth, ids = await api_book(client, pool, "bulk", BOOK)
    settings = load_worker_settings({}, database_url=worker_database_url, posting_mode="hybrid", bulk_poll_s=0.05,
                                    bulk_poll_idle_s=600)
    # Requests earlier tests left open (no worker ran after them) are out of the way, claimed for as long as the idle
    # poll's wait: else the worker's first claim takes one of them and it never idles.
    # (On a session of its own, left out of `listening` below: it is not the worker's.)
    drain = await asyncpg.connect(worker_database_url)
    try:
        while await store_bulk.claim_request(drain, settings.bulk_poll_idle_s) is not None:
            pass
        drain_pid = drain.get_server_pid()
    finally:
        await drain.close()
    pacer = AsyncPacer(settings.bulk_poll_s, settings.bulk_poll_idle_s)
    while pacer.after(False) < settings.bulk_poll_idle_s:  # a long idle spell
        pass
    since = await pool.fetchval("SELECT clock_timestamp()")  # a claim a pooled session made before is not this one
    waiting = asyncio.create_task(worker_bulk.next_request(pool, settings, time.monotonic() + 600, pacer))

    async def listening() -> bool:  # its first claim found nothing: it waits, listening
        admin = await asyncpg.connect(worker_database_url)  # the app role does not see others' sessions
        try:
            return bool(await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle' AND pid <> pg_backend_pid() AND pid <> $1"
                " AND datname = current_database() AND query LIKE '%UPDATE bulk_requests SET status = ''processing''%'"
                " AND state_change > $2", drain_pid, since))
        finally:
            await admin.close()

    try:
        await wait_until(listening, what="the worker waiting for bulk requests")
        request = (await client.post("/api/bulk_requests", auth=auth, json={
            "action_type": "create", "resource_type": "ledger_transaction", "resources": [_txn(ids, 3)]})).json()
        claimed = await asyncio.wait_for(waiting, 60)  # far below the idle poll's 600 s
        assert str(claimed["id"]) == request["id"]
        body = (await client.get(f"/api/bulk_requests/{request['id']}", auth=auth)).json()
        assert body["status"] == "processing"
    finally:
        waiting.cancel()
    from cell.service import bulk as bulk_service

    await bulk_service.process(worker_bulk.cell_context(pool, settings), claimed, chunk_size=10, chunks_at_once=1,
                               lease_s=settings.bulk_lease_s)
    assert await _completed(client, auth, request["id"])


async def test_a_claimer_whose_listening_session_ends_still_claims_by_its_polls(client, pool, worker_database_url):
    """PostgreSQL ends the session the bulk claimer listens on (a restart, a terminated backend): its claims run on
    connections of their own, so a request created afterwards is still claimed, by the next poll, and not lost to an
    InterfaceError of a connection asyncpg already took back."""
    import asyncio
    import time

    import asyncpg

    from cell.store import bulk as store_bulk
    from ledger_common.pacing import AsyncPacer
    from worker import bulk as worker_bulk
    from worker.settings import load_settings as load_worker_settings

    auth, ids = await api_book(client, pool, "bulk", BOOK)
    settings = load_worker_settings({}, database_url=worker_database_url, posting_mode="hybrid", bulk_poll_s=0.05,
                                    bulk_poll_idle_s=0.2)
    admin = await asyncpg.connect(worker_database_url)  # the app role does not see others' sessions
    waiting = asyncio.create_task(worker_bulk.next_request(pool, settings, time.monotonic() + 600,
                                                           AsyncPacer(settings.bulk_poll_s, settings.bulk_poll_idle_s)))
    try:
        await end_listening_session(admin, store_bulk.NEW_REQUEST_CHANNEL, "the claimer listening")
        request = (await client.post("/api/bulk_requests", auth=auth, json={
            "action_type": "create", "resource_type": "ledger_transaction", "resources": [_txn(ids, 4)]})).json()
        claimed = await asyncio.wait_for(waiting, 60)
        assert str(claimed["id"]) == request["id"]
    finally:
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        await admin.close()


async def test_a_transaction_update_whose_result_was_not_written_replaces_entries_once_when_resumed(
        client, pool, worker_database_url):
    """Updates commit with their results: an attempt that fails between the two (here writing a result raises, a
    fault injected in the database) leaves neither, and the resumed request applies each then: entries replaced once
    (no entries discarded twice), a pending transaction posted by its update answered as done, not a bulk_error."""
    from cell.service import bulk as bulk_service

    auth, ids = await api_book(client, pool, "bulk", BOOK)
    pending = []
    for amount in (5, 6):
        r = await client.post("/api/ledger_transactions", auth=auth, json=_txn(ids, amount) | {"status": "pending"})
        pending.append(r.json()["id"])
    resources = [{"id": pending[0], "ledger_entries": _txn(ids, 8)["ledger_entries"]},
                 {"id": pending[1], "status": "posted", "ledger_entries": _txn(ids, 9)["ledger_entries"]}]
    request = (await client.post("/api/bulk_requests", auth=auth, json={
        "action_type": "update", "resource_type": "ledger_transaction", "resources": resources})).json()
    rid = uuid.UUID(request["id"])
    ctx = await _attempt_failing_at_its_results(pool, worker_database_url, rid)
    for txn_id, amount in zip(pending, (5, 6)):
        now = (await client.get(f"/api/ledger_transactions/{txn_id}", auth=auth)).json()
        assert (now["version"], now["status"], {e["amount"] for e in now["ledger_entries"]}) == (1, "pending", {amount})
    done = await bulk_service.process(ctx, await pool.fetchrow(_TAKE_OVER, rid), chunk_size=10, chunks_at_once=1,
                                      lease_s=60)
    assert done is not None and (done.success_result_count, done.failed_result_count) == (2, 0), \
        [r["entity"] for r in await _results(client, auth, request["id"])]
    results = {r["entity_id"]: r["entity"] for r in await _results(client, auth, request["id"])}
    for txn_id, amount, status in zip(pending, (8, 9), ("pending", "posted")):
        now = (await client.get(f"/api/ledger_transactions/{txn_id}", auth=auth)).json()
        # (the result renders it as of its commit: its async entries applied after it, their lock versions unset)
        assert results[txn_id] | {"ledger_entries": now["ledger_entries"]} == now and now["status"] == status
        assert [e["id"] for e in results[txn_id]["ledger_entries"]] == [e["id"] for e in now["ledger_entries"]]
        assert {e["amount"] for e in now["ledger_entries"]} == {amount}
        discarded = (await client.get("/api/ledger_entries", auth=auth, params={
            "ledger_transaction_id": txn_id, "show_deleted": "true"})).json()
        assert len(discarded) == 4  # the first entries and their one replacement
    async with pool.acquire() as conn:
        assert await verify(conn, auth[0]) == []


async def test_a_worker_that_lost_its_claim_applies_no_further_update(client, pool, worker_database_url):
    """A worker stalled past its lease (here paused between chunks) has lost the request to another, which finished
    it: waking, it applies none of the updates it had not done, since an update it applied again after the other's
    later ones would undo them (the account's metadata is the last resource's, as the results say)."""
    import asyncio

    from cell.service import bulk as bulk_service
    from worker import bulk as worker_bulk
    from worker.settings import load_settings as load_worker_settings

    auth, ids = await api_book(client, pool, "bulk", BOOK)
    resources = [{"id": ids["cash"], "metadata": {"k": str(n)}} for n in (1, 2, 3)]
    request = (await client.post("/api/bulk_requests", auth=auth, json={
        "action_type": "update", "resource_type": "ledger_account", "resources": resources})).json()
    settings = load_worker_settings({}, database_url=worker_database_url, posting_mode="hybrid")
    claim = ("UPDATE bulk_requests SET status = 'processing', lease_token = gen_random_uuid(), "
             "lease_until = now() + interval '1 second' WHERE id = $1 AND (lease_until IS NULL OR lease_until < now()) "
             "RETURNING *")  # claim_bulk_request's claim, of this request only
    first = await pool.fetchrow(claim, uuid.UUID(request["id"]))
    stalled = asyncio.create_task(bulk_service.process(
        worker_bulk.cell_context(pool, settings), first, chunk_size=1, chunks_at_once=1, lease_s=1,
        pause_between_chunks_s=5))
    try:
        second = await wait_until(lambda: pool.fetchrow(claim, uuid.UUID(request["id"])), 30,
                                  what="the stalled worker's lease over, the request claimed again")
        done = await bulk_service.process(worker_bulk.cell_context(pool, settings), second, chunk_size=1,
                                          chunks_at_once=1, lease_s=30)
        assert done is not None and done.success_result_count == 3
        assert await asyncio.wait_for(stalled, 60) is None  # its claim lost: not completed by it
    finally:
        stalled.cancel()
        await asyncio.gather(stalled, return_exceptions=True)
    shown = (await client.get(f"/api/ledger_accounts/{ids['cash']}", auth=auth)).json()
    assert shown["metadata"] == {"k": "3"}


async def test_a_resource_key_taken_by_another_request_fails_that_resource_not_the_whole_request(client, pool,
                                                                                              worker_database_url):
    """A resource's key (bulk:<request>:<index>) is an Idempotency-Key a client may send too: taken by another
    request (here a ledger's), the resource is refused as a request reusing a key is (idempotency_key_reused), as
    it is when posted alone, never answered with what the other request made nor left failing the whole request."""
    from worker import bulk as worker_bulk
    from worker.settings import load_settings as load_worker_settings

    auth, ids = await api_book(client, pool, "bulk", BOOK)
    request = (await client.post("/api/bulk_requests", auth=auth, json={
        "action_type": "create", "resource_type": "ledger_transaction",
        "resources": [_txn(ids, 1, external_id="taken-key"), _txn(ids, 2, external_id="own-key")]})).json()
    r = await client.post("/api/ledgers", auth=auth, json={"name": "other"},
                          headers={"Idempotency-Key": f"bulk:{request['id']}:0"})
    assert r.status_code == 201, r.text
    settings = load_worker_settings({}, database_url=worker_database_url, posting_mode="hybrid", bulk_poll_s=0.05)
    await worker_bulk.process_for(pool, settings, 0.5)
    done = await _completed(client, auth, request["id"])
    assert done is not None and (done["success_result_count"], done["failed_result_count"]) == (1, 1)
    results = {r["request_params"]["external_id"]: r for r in await _results(client, auth, request["id"])}
    assert results["taken-key"]["entity"]["request_errors"][0]["code"] == "idempotency_key_reused"
    assert results["own-key"]["entity"]["ledger_entries"][0]["amount"] == 2


async def test_a_resource_posted_alone_by_a_stalled_worker_while_another_writes_its_chunk_is_not_posted_twice(
        client, pool, worker_database_url):
    """A worker that lost its claim may still be posting a resource alone (the chunk fallback, its key claimed in
    its own database transaction) while the worker that took the request over writes that resource's chunk: the
    chunk finds the key claimed only when the other commits. It answers with what the other made, never posts the
    resource a second time."""
    import asyncio

    import asyncpg

    from cell.service import bulk as bulk_service
    from worker import bulk as worker_bulk
    from worker.settings import load_settings as load_worker_settings

    auth, ids = await api_book(client, pool, "bulk", BOOK)
    request = (await client.post("/api/bulk_requests", auth=auth, json={
        "action_type": "create", "resource_type": "ledger_transaction",
        "resources": [_txn(ids, 3), _txn(ids, 4)]})).json()  # no external_id: its uniqueness would catch it
    rid = uuid.UUID(request["id"])
    stored = (await pool.fetchval("SELECT resources FROM bulk_requests WHERE id = $1", rid))[0]
    key = bulk_service.resource_idempotency(rid, 0, stored)
    first = (await client.post("/api/ledger_transactions", auth=auth, json=stored)).json()  # the stalled one's post
    settings = load_worker_settings({}, database_url=worker_database_url, posting_mode="hybrid")
    claimed = await pool.fetchrow("UPDATE bulk_requests SET status = 'processing', lease_token = gen_random_uuid(), "
                                  "lease_until = now() + interval '60 seconds' WHERE id = $1 RETURNING *", rid)
    admin = await asyncpg.connect(worker_database_url)
    stalled = admin.transaction()
    await stalled.start()
    try:  # the stalled worker's key claimed, its transaction not committed yet
        await admin.execute("INSERT INTO idempotency_keys (tenant_id, key, request_hash, resource_type, resource_id, "
                            "status_code) VALUES ($1, $2, $3, 'ledger_transaction', $4, 201)", auth[0], key.key,
                            key.request_hash, uuid.UUID(first["id"]))
        processing = asyncio.create_task(bulk_service.process(
            worker_bulk.cell_context(pool, settings), claimed, chunk_size=10, chunks_at_once=1, lease_s=60))

        async def waiting_for_the_key() -> bool:
            return bool(await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'transactionid' "
                "AND pid <> pg_backend_pid() AND datname = current_database()"))  # (its query is shown late)

        await wait_until(waiting_for_the_key, 30, what="the chunk waiting on the claimed key")
        await stalled.commit()
        done = await asyncio.wait_for(processing, 60)
    finally:
        await admin.close()  # a transaction still open (a wait that failed) rolled back
    assert done is not None and (done.success_result_count, done.failed_result_count) == (2, 0)
    results = {r["request_params"]["ledger_entries"][0]["amount"]: r for r in await _results(client, auth,
                                                                                            request["id"])}
    assert results[3]["entity_id"] == first["id"]
    assert await pool.fetchval("SELECT count(*) FROM ledger_transactions WHERE tenant_id = $1", auth[0]) == 2


async def test_a_tenants_open_requests_are_bounded_and_one_more_waits_for_a_completion(worker_database_url, pool,
                                                                                    sqs_queue, worker_process):
    """The workers take requests oldest first: a tenant's backlog (bulk_requests_open_max, 2 here) delays another
    tenant's request by at most so many. A retried request (its Idempotency-Key) is answered, not counted again."""
    settings = load_settings(("CELL_TEST_UNUSED_",), database_url=worker_database_url, posting_mode="hybrid",
                             db_pool_min=1, db_pool_max=4, sweep_interval_s=0, bulk_requests_open_max=2)
    async with AsyncTestClient(create_app(settings)) as client:
        auth, ids = await api_book(client, pool, "bulk", BOOK)
        body = {"action_type": "create", "resource_type": "ledger_transaction", "resources": [_txn(ids, 1)]}
        made = [await client.post("/api/bulk_requests", auth=auth, json=body, headers={"Idempotency-Key": f"b{i}"})
                for i in range(2)]
        assert [r.status_code for r in made] == [201, 201]
        refused = await client.post("/api/bulk_requests", auth=auth, json=body)
        assert refused.status_code == 422 and refused.json()["code"] == "too_many_open_bulk_requests", refused.text
        again = await client.post("/api/bulk_requests", auth=auth, json=body, headers={"Idempotency-Key": "b1"})
        assert again.status_code == 201 and again.json()["id"] == made[1].json()["id"]
        other_auth, other_ids = await api_book(client, pool, "bulk", BOOK)  # another tenant: its own bound
        assert (await client.post("/api/bulk_requests", auth=other_auth, json={
            **body, "resources": [_txn(other_ids, 1)]})).status_code == 201
        worker_process(sqs_queue, **FAST)
        for r in made:
            await wait_until(lambda r=r: _completed(client, auth, r.json()["id"]), 60, what="a request completed")
        assert (await client.post("/api/bulk_requests", auth=auth, json=body)).status_code == 201
        async with pool.acquire() as conn:
            for tenant in (auth[0], other_auth[0]):
                assert await verify(conn, tenant) == []


async def test_a_request_that_fails_at_every_attempt_ends_completed_telling_the_truth_per_resource(
        client, pool, sqs_queue, worker_process, worker_database_url):
    """A request whose processing fails for a reason that is no refusal of one resource (here a fault injected in
    the database: inserting one of its transactions raises) is attempted bulk_attempts_max times, not forever: it
    then ends `completed` (so it no longer counts among the tenant's open requests), the resources already applied
    with their results (one posted alone before a crash too, found by its key), every other one failed with
    `bulk_attempts_exhausted`; nothing is applied twice, nothing after it ended (a stalled worker posting a failed
    resource alone finds its key taken); the worker logs each failed attempt and the give-up."""
    import asyncpg

    from cell.ledger.commands import TransactionCreate
    from cell.service import bulk as bulk_service
    from cell.service import transactions
    from worker import bulk as worker_bulk
    from worker.settings import load_settings as load_worker_settings

    auth, ids = await api_book(client, pool, "bulk", BOOK)
    poison = f"poison-{uuid.uuid4().hex[:12]}"
    names = ["b-0", "b-1", poison, "b-3", "b-4", "b-5"]
    request = (await client.post("/api/bulk_requests", auth=auth, json={
        "action_type": "create", "resource_type": "ledger_transaction",
        "resources": [_txn(ids, n + 1, external_id=name) for n, name in enumerate(names)]})).json()
    rid = uuid.UUID(request["id"])
    settings = load_worker_settings({}, database_url=worker_database_url, posting_mode="hybrid")
    stored = await pool.fetchval("SELECT resources FROM bulk_requests WHERE id = $1", rid)  # as the workers read it
    alone = await transactions.create_transaction(  # resource 5, posted alone by a worker that died before its result
        worker_bulk.cell_context(pool, settings), auth[0], bulk_service._decode(stored[5], TransactionCreate),
        bulk_service.resource_idempotency(rid, 5, stored[5]))
    admin = await asyncpg.connect(worker_database_url)
    fn = f"fault_{uuid.uuid4().hex[:12]}"
    await admin.execute(f"""
        CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.external_id = '{poison}' THEN RAISE EXCEPTION 'injected fault' USING ERRCODE = 'XX000'; END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER {fn} BEFORE INSERT ON ledger_transactions FOR EACH ROW EXECUTE FUNCTION {fn}();""")
    try:
        worker = worker_process(sqs_queue, **FAST, bulk_chunk_size="2", bulk_chunks_at_once="1",
                                bulk_attempts_max="2")
        done = await wait_until(lambda: _completed(client, auth, request["id"]), 60,
                                what="the request ended after its attempts")
    finally:
        await admin.execute(f"DROP TRIGGER {fn} ON ledger_transactions; DROP FUNCTION {fn}();")
        await admin.close()
    assert (done["success_result_count"], done["failed_result_count"]) == (3, 3)
    results = {r["request_params"]["external_id"]: r for r in await _results(client, auth, request["id"])}
    assert {name for name, r in results.items() if r["status"] == "successful"} == {"b-0", "b-1", "b-5"}
    assert results["b-5"]["entity_id"] == str(alone.id) and results["b-5"]["entity"]["id"] == str(alone.id)
    for name in (poison, "b-3", "b-4"):
        assert results[name]["entity_type"] == "bulk_error"
        assert [e["code"] for e in results[name]["entity"]["request_errors"]] == ["bulk_attempts_exhausted"]
    await worker_bulk.process_for(pool, settings, 0.5)  # the fault gone: nothing more is applied
    # nor by a worker that stalled mid-attempt and wakes to post a resource alone (the chunk fallback): its key is
    # taken by the give-up, so it is refused as a reused key, never made.
    with pytest.raises(IdempotencyKeyReused):
        await transactions.create_transaction(
            worker_bulk.cell_context(pool, settings), auth[0], bulk_service._decode(stored[3], TransactionCreate),
            bulk_service.resource_idempotency(rid, 3, stored[3]))
    made = await pool.fetch("SELECT external_id FROM ledger_transactions WHERE tenant_id = $1", auth[0])
    assert sorted(r["external_id"] for r in made) == ["b-0", "b-1", "b-5"]
    event = await pool.fetchrow("SELECT data FROM events WHERE tenant_id = $1 AND entity_id = $2", auth[0], rid)
    assert event["data"]["status"] == "completed" and event["data"]["failed_result_count"] == 3
    log = worker.log()
    assert "injected fault" in log and f"bulk request {rid} of tenant {auth[0]}: attempt 2 of 2 failed" in log
    assert f"bulk request {rid} of tenant {auth[0]} given up after 2 failed attempts" in log
    async with pool.acquire() as conn:
        assert await verify(conn, auth[0]) == []



async def test_an_update_whose_result_was_not_written_is_not_applied_and_the_give_up_tells_the_truth(
        client, pool, worker_database_url):
    """An update commits with its result: an attempt that fails between the two (here writing the result raises, a
    fault injected in the database) leaves neither, so the request given up afterwards reports it
    `bulk_attempts_exhausted` (not applied) truly: the transaction is still pending, its balances untouched, no
    version or event written for it."""
    from cell.service import bulk as bulk_service

    auth, ids = await api_book(client, pool, "bulk", BOOK)
    txn_id, rid = await _pending_update_request(client, auth, ids, {"status": "posted"})
    ctx = await _attempt_failing_at_its_results(pool, worker_database_url, rid)
    shown = (await client.get(f"/api/ledger_transactions/{txn_id}", auth=auth)).json()
    assert (shown["status"], shown["version"]) == ("pending", 1)

    last = await pool.fetchrow(_TAKE_OVER, rid)
    assert bulk_service.attempts_exhausted(last, 1)
    done = await bulk_service.give_up(ctx, last, 1)
    assert done is not None and (done.success_result_count, done.failed_result_count) == (0, 1)
    [result] = await _results(client, auth, str(rid))
    assert [e["code"] for e in result["entity"]["request_errors"]] == [bulk_service.ATTEMPTS_EXHAUSTED]
    shown = (await client.get(f"/api/ledger_transactions/{txn_id}", auth=auth)).json()
    assert (shown["status"], shown["version"]) == ("pending", 1)
    assert {e["status"] for e in shown["ledger_entries"]} == {"pending"}
    assert await pool.fetchval("SELECT count(*) FROM events WHERE tenant_id = $1 AND event_name = "
                               "'ledger_transaction.posted'", auth[0]) == 0
    async with pool.acquire() as conn:
        assert await verify(conn, auth[0]) == []


async def test_an_update_whose_result_was_not_written_is_applied_once_when_the_request_resumes(
        client, pool, worker_database_url):
    """An attempt that fails between an update and its result leaves neither: the resumed request applies the update
    then, once. A change made meanwhile by a PATCH of the same field comes before it, never after a second
    application of it (the versions: created, the PATCH's, the bulk update's)."""
    from cell.service import bulk as bulk_service

    auth, ids = await api_book(client, pool, "bulk", BOOK)
    txn_id, rid = await _pending_update_request(client, auth, ids, {"metadata": {"k": "bulk"}})
    ctx = await _attempt_failing_at_its_results(pool, worker_database_url, rid)
    r = await client.patch(f"/api/ledger_transactions/{txn_id}", auth=auth, json={"metadata": {"k": "user"}})
    assert r.status_code == 200, r.text
    done = await bulk_service.process(ctx, await pool.fetchrow(_TAKE_OVER, rid), chunk_size=10, chunks_at_once=1,
                                      lease_s=60)
    assert done is not None and (done.success_result_count, done.failed_result_count) == (1, 0)
    versions = (await client.get(f"/api/ledger_transactions/{txn_id}/versions", auth=auth)).json()
    assert [v["metadata"] for v in versions] == [{}, {"k": "user"}, {"k": "bulk"}]
    [result] = await _results(client, auth, str(rid))
    shown = (await client.get(f"/api/ledger_transactions/{txn_id}", auth=auth)).json()
    assert result["entity"] == shown and shown["version"] == 3


async def test_a_worker_stalled_past_its_lease_while_applying_an_update_applies_nothing(client, pool,
                                                                                      worker_database_url):
    """A worker that checked its claim, then stalled (here waiting for the tenant's write fence, which the test holds
    as a tenant move does) while its lease ran out and another worker took the request over, applies nothing when it
    wakes: an update commits only with its result, under the claim. The other worker applies it, once."""
    import asyncio

    import asyncpg

    from cell.service import bulk as bulk_service
    from worker import bulk as worker_bulk
    from worker.settings import load_settings as load_worker_settings

    auth, ids = await api_book(client, pool, "bulk", BOOK)
    txn_id, rid = await _pending_update_request(client, auth, ids, {"status": "posted"})
    ctx = worker_bulk.cell_context(pool, load_worker_settings({}, database_url=worker_database_url,
                                                              posting_mode="hybrid"))
    first = await pool.fetchrow(_TAKE_OVER, rid)
    admin = await asyncpg.connect(worker_database_url)
    fence = admin.transaction()
    await fence.start()
    stalled = None
    try:
        await admin.execute("SELECT pg_advisory_xact_lock(ledger_fence_key($1))", auth[0])
        stalled = asyncio.create_task(bulk_service.process(ctx, first, chunk_size=10, chunks_at_once=1, lease_s=60))

        async def waiting_for_the_fence() -> bool:
            return bool(await admin.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                             "AND NOT granted AND database = (SELECT oid FROM pg_database "
                                             "WHERE datname = current_database())"))

        await wait_until(waiting_for_the_fence, 30, what="the worker waiting for the tenant's write fence")
        second = await pool.fetchrow(_TAKE_OVER, rid)
        await fence.commit()
        assert await asyncio.wait_for(stalled, 60) is None  # its claim lost
    finally:
        await admin.close()  # the fence released (a wait that failed rolled back)
        if stalled is not None:
            stalled.cancel()
            await asyncio.gather(stalled, return_exceptions=True)
    shown = (await client.get(f"/api/ledger_transactions/{txn_id}", auth=auth)).json()
    assert (shown["status"], shown["version"]) == ("pending", 1)
    assert await _results(client, auth, str(rid)) == []

    done = await bulk_service.process(ctx, second, chunk_size=10, chunks_at_once=1, lease_s=60)
    assert done is not None and (done.success_result_count, done.failed_result_count) == (1, 0)
    shown = (await client.get(f"/api/ledger_transactions/{txn_id}", auth=auth)).json()
    assert (shown["status"], shown["version"]) == ("posted", 2)
