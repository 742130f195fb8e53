"""The event stream: every change writes one event in its own transaction, `data` as the API renders the object."""

from __future__ import annotations

import asyncio
import time
import uuid


from tests.integration.events.events_helpers import events_until, follow


async def test_each_change_is_one_event_in_order_with_the_object_as_rendered(api):
    ledger = await api.ledger()
    cash = await api.account(ledger["id"], "debit")
    wallet = await api.account(ledger["id"], "credit")
    r = await api.patch(f"/api/ledger_accounts/{wallet['id']}", {"metadata": {"owner": "ann"}})
    assert r.status_code == 200
    wallet_updated = r.json()
    r = await api.transfer(ledger["id"], cash["id"], wallet["id"], 500, status="pending",
                           metadata={"k": "v"})
    assert r.status_code == 201
    pending = r.json()
    r = await api.patch(f"/api/ledger_transactions/{pending['id']}", {"status": "posted"})
    assert r.status_code == 200
    posted = r.json()
    r = await api.post(f"/api/ledger_transactions/{pending['id']}/reversal", {})
    assert r.status_code == 201, r.text
    reversal = r.json()
    original_now = (await api.get(f"/api/ledger_transactions/{pending['id']}")).json()

    seen = await events_until(api, 8)
    assert seen[0]["event_name"] == "ledger.created" and seen[0]["resource"] == "ledger"
    assert seen.pop(0)["data"] == ledger
    assert [(e["event_name"], e["entity_id"]) for e in seen] == [
        ("ledger_account.created", cash["id"]), ("ledger_account.created", wallet["id"]),
        ("ledger_account.updated", wallet["id"]), ("ledger_transaction.created", pending["id"]),
        ("ledger_transaction.posted", pending["id"]), ("ledger_transaction.created", reversal["id"]),
        ("ledger_transaction.reversed", pending["id"])]
    assert all(e["object"] == "event" and e["live_mode"] is True for e in seen)
    assert [e["resource"] for e in seen] == ["ledger_account"] * 3 + ["ledger_transaction"] * 4
    # data: the object exactly as the API answered at that change
    assert seen[0]["data"] == cash and seen[2]["data"] == wallet_updated
    assert seen[3]["data"] == pending
    assert seen[4]["data"] == posted
    assert seen[5]["data"] == reversal
    assert seen[6]["data"] == original_now
    assert seen[3]["event_time"] == pending["created_at"]

    one = await api.get(f"/api/events/{seen[4]['id']}")
    assert one.status_code == 200 and one.json() == seen[4]
    only = await api.get("/api/events", params={"entity_id": pending["id"], "event_name": "ledger_transaction.posted"})
    assert [e["id"] for e in only.json()] == [seen[4]["id"]]
    txns = await api.get("/api/events", params={"resource": "ledger_transaction",
                                                "event_time_start": pending["created_at"],
                                                "event_time_end": reversal["created_at"]})
    assert [e["id"] for e in txns.json()] == [e["id"] for e in seen[3:]]


async def test_a_sync_entry_shows_its_lock_version_and_an_archived_lock_failure_is_archived(api):
    ledger = await api.ledger()
    cash = await api.account(ledger["id"], "debit")
    wallet = await api.account(ledger["id"], "credit")
    r = await api.post("/api/ledger_transactions", {"ledger_id": ledger["id"], "status": "posted", "ledger_entries": [
        {"ledger_account_id": cash["id"], "direction": "debit", "amount": 7, "lock_version": 0},
        {"ledger_account_id": wallet["id"], "direction": "credit", "amount": 7}]})
    assert r.status_code == 201, r.text
    created = r.json()
    r = await api.post("/api/ledger_transactions", {
        "ledger_id": ledger["id"], "status": "posted", "archive_on_balance_lock_failure": True, "ledger_entries": [
            {"ledger_account_id": wallet["id"], "direction": "debit", "amount": 70,
             "available_balance_amount": {"gte": 0}},
            {"ledger_account_id": cash["id"], "direction": "credit", "amount": 70}]})
    assert r.status_code == 201 and r.json()["status"] == "archived", r.text
    archived = r.json()
    seen = await events_until(api, 2, resource="ledger_transaction")
    assert seen[0]["data"] == created
    assert {e["ledger_account_lock_version"] for e in seen[0]["data"]["ledger_entries"]} == {1}
    assert seen[1]["data"] == archived and seen[1]["data"]["archived_reason"] == "balance_lock_failure"


async def test_events_roll_back_with_their_transaction(api, admin_conn):
    ledger = await api.ledger()
    cash = await api.account(ledger["id"], "debit")
    wallet = await api.account(ledger["id"], "credit")
    r = await api.post("/api/ledger_transactions", {"ledger_id": ledger["id"], "status": "posted", "ledger_entries": [
        {"ledger_account_id": wallet["id"], "direction": "debit", "amount": 5,
         "available_balance_amount": {"gte": 0}},
        {"ledger_account_id": cash["id"], "direction": "credit", "amount": 5}]})
    assert r.status_code == 422  # refused: rolled back, and its event with it
    r = await api.patch(f"/api/ledger_accounts/{uuid.uuid4()}", {"name": "x"})
    assert r.status_code == 404
    tx = admin_conn.transaction()
    await tx.start()
    await admin_conn.execute("SELECT ledger_event($1, 'ledger_account', 'ledger_account.updated', $2, '{}'::jsonb)",
                             api.tenant_id, uuid.UUID(cash["id"]))
    await tx.rollback()
    marker = await api.account(ledger["id"])  # an event after them all: once it is listed, so would they be
    seen = await events_until(api, 4)
    assert [e["entity_id"] for e in seen] == [ledger["id"], cash["id"], wallet["id"], marker["id"]]
    assert await admin_conn.fetchval("SELECT count(*) FROM events WHERE tenant_id = $1", api.tenant_id) == 4


async def test_a_consumer_following_the_cursor_sees_every_event_once_in_order(live_api):
    api = live_api
    ledger = await api.ledger()
    accounts = [await api.account(ledger["id"]) for _ in range(4)]
    writers, per_writer = 8, 15
    cursor = None
    consumed: list[dict] = []

    async def write(w: int) -> list[str]:
        ids = []
        for i in range(per_writer):
            a, b = accounts[(w + i) % 4], accounts[(w + i + 1) % 4]
            r = await api.transfer(ledger["id"], a["id"], b["id"], 1 + i, status="pending" if i % 3 == 0 else "posted")
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
            if i % 3 == 0:
                r = await api.patch(f"/api/ledger_transactions/{ids[-1]}", {"status": "posted"})
                assert r.status_code == 200, r.text
        return ids

    done = asyncio.Event()

    async def consume() -> None:
        nonlocal cursor
        while True:
            finished = done.is_set()
            page, cursor = await follow(api, cursor)
            consumed.extend(page)
            if finished and len(consumed) >= total:
                return
            await asyncio.sleep(0.02)

    total = 1 + 4 + writers * per_writer + writers * ((per_writer + 2) // 3)
    consumer = asyncio.create_task(consume())
    written = await asyncio.gather(*(write(w) for w in range(writers)))
    done.set()
    await asyncio.wait_for(consumer, 60)

    ids = [e["id"] for e in consumed]
    assert len(ids) == len(set(ids)) == total  # every event once
    everything, _ = await follow(api)
    assert [e["id"] for e in everything] == ids  # in the stream's order, whenever it was read
    created = [e["entity_id"] for e in consumed if e["event_name"] == "ledger_transaction.created"]
    assert sorted(created) == sorted(i for ids_ in written for i in ids_)
    for w in written:  # each transaction's events in the order they happened
        for txn in w:
            names = [e["event_name"] for e in consumed if e["entity_id"] == txn]
            assert names in (["ledger_transaction.created"],
                             ["ledger_transaction.created", "ledger_transaction.posted"])


async def test_a_partial_post_is_the_new_transaction_created_and_the_pending_one_archived(api):
    ledger = await api.ledger()
    cash = await api.account(ledger["id"], "debit")
    wallet = await api.account(ledger["id"], "credit")
    r = await api.transfer(ledger["id"], cash["id"], wallet["id"], 100, status="pending")
    pending = r.json()
    r = await api.post(f"/api/ledger_transactions/{pending['id']}/partial_post", {"posted_ledger_entries": [
        {"ledger_account_id": cash["id"], "direction": "debit", "amount": 60},
        {"ledger_account_id": wallet["id"], "direction": "credit", "amount": 60}]})
    assert r.status_code == 201, r.text
    partial = r.json()
    r = await api.patch(f"/api/ledger_transactions/{partial['id']}", {"description": "captured"})
    updated = r.json()
    archived = (await api.get(f"/api/ledger_transactions/{pending['id']}")).json()
    seen = await events_until(api, 4, resource="ledger_transaction")
    assert [(e["event_name"], e["entity_id"], e["data"]) for e in seen] == [
        ("ledger_transaction.created", pending["id"], pending),
        ("ledger_transaction.created", partial["id"], partial),
        ("ledger_transaction.archived", pending["id"], archived),
        ("ledger_transaction.updated", partial["id"], updated)]


async def test_after_an_idle_spell_a_change_s_event_is_listed_at_the_fast_interval(api, cell_client):
    # Idle, the API process's sequencer backs off to events_sequence_idle_s; the change's own use case nudges it,
    # so its event is listed about events_sequence_interval_s after the change, as under load.
    pacer = cell_client.app.state.sequencer_pacer
    settings = cell_client.app.state.ctx.settings
    ledger = await api.ledger()  # its ledger.created is sequenced before the idle spell
    deadline = time.monotonic() + 60
    while pacer.interval_s < settings.events_sequence_idle_s:  # the session's other tests may still be busy
        assert time.monotonic() < deadline, "the sequencer never backed off"
        await asyncio.sleep(0.05)
    account = await api.account(ledger["id"], "debit")
    assert pacer.interval_s == settings.events_sequence_interval_s  # nudged by the change
    seen = await events_until(api, 2, deadline_s=settings.events_sequence_idle_s * 10)
    assert [(e["event_name"], e["entity_id"]) for e in seen] == [("ledger.created", ledger["id"]),
                                                                   ("ledger_account.created", account["id"])]


async def test_a_pending_transactions_entries_replaced_is_one_update_with_the_transaction_as_read(api):
    ledger = await api.ledger()
    cash = await api.account(ledger["id"], "debit")
    wallet = await api.account(ledger["id"], "credit")
    pending = (await api.transfer(ledger["id"], cash["id"], wallet["id"], 100, status="pending")).json()
    r = await api.patch(f"/api/ledger_transactions/{pending['id']}", {
        "effective_at": "2026-05-01T00:00:00Z", "ledger_entries": [
        {"ledger_account_id": cash["id"], "direction": "debit", "amount": 120, "metadata": {"k": "v"}},
        {"ledger_account_id": wallet["id"], "direction": "credit", "amount": 120}]})
    assert r.status_code == 200, r.text
    replaced = r.json()
    seen = await events_until(api, 2, resource="ledger_transaction")
    assert [(e["event_name"], e["entity_id"], e["data"]) for e in seen] == [
        ("ledger_transaction.created", pending["id"], pending),
        ("ledger_transaction.updated", pending["id"], replaced)]
