"""Idempotency-Key: same key + same body replays the first answer; another body is 422; in flight is 409."""

import asyncio
import uuid


def body(ledger, a, b, amount=250):
    return {"ledger_id": ledger["id"], "status": "posted", "ledger_entries": [
        {"ledger_account_id": a["id"], "direction": "debit", "amount": amount},
        {"ledger_account_id": b["id"], "direction": "credit", "amount": amount}]}


async def count_transactions(api, ledger):
    return len((await api.get("/api/ledger_transactions", params={"ledger_id": ledger["id"], "per_page": 100})).json())


async def test_same_key_same_body_replays_the_first_response(api, books):
    ledger, a, b = books
    first = await api.post("/api/ledger_transactions", body(ledger, a, b), headers={"Idempotency-Key": "k1"})
    again = await api.post("/api/ledger_transactions", body(ledger, a, b), headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 201
    assert first.content == again.content
    assert await count_transactions(api, ledger) == 1
    assert (await api.balances(a["id"]))["posted_balance"]["amount"] == 250


async def test_same_key_other_body_is_422_and_writes_nothing(api, books):
    ledger, a, b = books
    await api.post("/api/ledger_transactions", body(ledger, a, b), headers={"Idempotency-Key": "k2"})
    r = await api.post("/api/ledger_transactions", body(ledger, a, b, 999), headers={"Idempotency-Key": "k2"})
    assert r.status_code == 422 and r.json()["code"] == "idempotency_key_reused"
    r = await api.post("/api/ledger_accounts", {"ledger_id": ledger["id"], "name": "x", "normal_balance": "debit",
                                                "currency": "USD"}, headers={"Idempotency-Key": "k2"})
    assert r.status_code == 422 and r.json()["code"] == "idempotency_key_reused"
    assert await count_transactions(api, ledger) == 1


async def test_a_failed_posting_does_not_burn_the_key(api, books):
    ledger, a, b = books
    locked = body(ledger, a, b)
    locked["ledger_entries"][1]["available_balance_amount"] = {"gte": 10_000}
    r = await api.post("/api/ledger_transactions", locked, headers={"Idempotency-Key": "k3"})
    assert r.status_code == 422 and r.json()["code"] == "balance_lock_failed"
    r = await api.post("/api/ledger_transactions", body(ledger, a, b), headers={"Idempotency-Key": "k3"})
    assert r.status_code == 201


async def test_sixteen_concurrent_retries_make_one_posting(live_api):
    api = live_api
    ledger = await api.ledger()
    a, b = await api.account(ledger["id"], "debit"), await api.account(ledger["id"], "credit")
    responses = await asyncio.gather(*[
        api.post("/api/ledger_transactions", body(ledger, a, b), headers={"Idempotency-Key": "k-concurrent"})
        for _ in range(16)])
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, statuses
    assert statuses.count(201) >= 1
    created = {r.json()["id"] for r in responses if r.status_code == 201}
    assert len(created) == 1
    for r in responses:
        if r.status_code == 409:
            assert r.json()["code"] == "idempotency_key_in_flight"
    assert await count_transactions(api, ledger) == 1
    assert (await api.balances(a["id"]))["posted_balance"]["amount"] == 250


async def test_concurrent_postings_under_distinct_keys_each_replay_their_own_first_answer(live_api):
    # Concurrent postings each keep their first answer in their own transaction: each key must keep its own.
    api = live_api
    ledger = await api.ledger()
    a, b = await api.account(ledger["id"], "debit"), await api.account(ledger["id"], "credit")
    keys = [f"k-distinct-{i}" for i in range(24)]

    async def post(key, amount):
        return await api.post("/api/ledger_transactions", body(ledger, a, b, amount), headers={"Idempotency-Key": key})

    firsts = await asyncio.gather(*[post(k, 100 + i) for i, k in enumerate(keys)])
    assert {r.status_code for r in firsts} == {201}
    agains = await asyncio.gather(*[post(k, 100 + i) for i, k in enumerate(keys)])
    for first, again in zip(firsts, agains):
        assert again.status_code == 201 and again.content == first.content
    assert len({r.json()["id"] for r in firsts}) == len(keys)
    assert await count_transactions(api, ledger) == len(keys)


async def test_the_same_key_under_another_tenant_is_unrelated(new_tenant):
    results = []
    for _ in range(2):
        t = await new_tenant()
        ledger = await t.ledger()
        a, b = await t.account(ledger["id"], "debit"), await t.account(ledger["id"], "credit")
        r = await t.post("/api/ledger_transactions", body(ledger, a, b), headers={"Idempotency-Key": "shared"})
        assert r.status_code == 201
        results.append(r.json()["id"])
    assert results[0] != results[1]


async def test_ledgers_accounts_and_reversals_are_idempotent_too(api, books):
    ledger, a, b = books
    r1 = await api.post("/api/ledgers", {"name": "L"}, headers={"Idempotency-Key": "L1"})
    r2 = await api.post("/api/ledgers", {"name": "L"}, headers={"Idempotency-Key": "L1"})
    assert r1.status_code == r2.status_code == 201 and r1.content == r2.content
    txn = (await api.post("/api/ledger_transactions", body(ledger, a, b))).json()
    rv1 = await api.post(f"/api/ledger_transactions/{txn['id']}/reversal", {}, headers={"Idempotency-Key": "R1"})
    rv2 = await api.post(f"/api/ledger_transactions/{txn['id']}/reversal", {}, headers={"Idempotency-Key": "R1"})
    assert rv1.status_code == rv2.status_code == 201 and rv1.content == rv2.content
    assert (await api.balances(a["id"]))["posted_balance"]["amount"] == 0


async def test_bad_idempotency_keys_are_400(api, books):
    ledger, a, b = books
    r = await api.post("/api/ledger_transactions", body(ledger, a, b), headers={"Idempotency-Key": "x" * 300})
    assert r.status_code == 400 and r.json()["code"] == "invalid_idempotency_key"


async def test_a_resource_keeps_its_key_and_first_answer_in_its_own_database_transaction(api, admin_conn):
    """A ledger's key and first answer are written by the transaction that creates the ledger, not stored after its
    commit: nothing is ever a key awaiting its answer (a tenant move could copy it without one)."""
    r = await api.post("/api/ledgers", {"name": "kept"}, headers={"Idempotency-Key": "one-transaction"})
    assert r.status_code == 201
    row = await admin_conn.fetchrow(
        "SELECT k.xmin::text = l.xmin::text AS same_transaction, k.status_code, k.response "
        "FROM idempotency_keys k JOIN ledgers l ON l.id = k.resource_id "
        "WHERE k.tenant_id = $1 AND k.key = 'one-transaction'", api.tenant_id)
    assert (row["same_transaction"], row["status_code"]) == (True, 201)
    assert bytes(row["response"]) == r.content
    again = await api.post("/api/ledgers", {"name": "kept"}, headers={"Idempotency-Key": "one-transaction"})
    assert (again.status_code, again.content) == (201, r.content)


async def test_a_posting_keeps_its_key_and_first_answer_in_its_own_database_transaction(api, books, admin_conn):
    """The key and its answer are written by the posting's own call (ledger_post), not stored after its commit: the
    key's row is one row version, of the transaction that wrote the posting."""
    ledger, a, b = books
    r = await api.post("/api/ledger_transactions", body(ledger, a, b), headers={"Idempotency-Key": "one-statement"})
    assert r.status_code == 201
    row = await admin_conn.fetchrow(
        "SELECT k.xmin::text = v.xmin::text AS same_transaction, k.status_code, k.response IS NOT NULL AS kept "
        "FROM idempotency_keys k JOIN ledger_transaction_versions v ON v.transaction_id = k.resource_id "
        "WHERE k.tenant_id = $1 AND k.key = 'one-statement' AND v.version = 1", api.tenant_id)
    assert dict(row) == {"same_transaction": True, "status_code": 201, "kept": True}


async def test_replays_are_the_first_answer_with_its_resulting_balances_and_archive(api, books):
    """What only the database knew at the posting (its time, the resulting balances shown, an archive on a failed
    balance lock) is replayed as it was then, byte for byte, after the balances moved on."""
    ledger, a, b = books
    shown = body(ledger, a, b, 300)
    for e in shown["ledger_entries"]:
        e["show_resulting_ledger_account_balances"] = True
    archived = body(ledger, a, b, 10_000)
    archived["ledger_entries"][1]["available_balance_amount"] = {"lte": 0}
    archived["archive_on_balance_lock_failure"] = True
    firsts = {}
    for key, request in (("shown", shown), ("archived", archived)):
        firsts[key] = await api.post("/api/ledger_transactions", request, headers={"Idempotency-Key": key})
        assert firsts[key].status_code == 201
    assert firsts["archived"].json()["archived_reason"] == "balance_lock_failure"
    assert firsts["shown"].json()["ledger_entries"][0]["resulting_ledger_account_balances"]["posted_balance"][
        "amount"] == 300
    await api.post("/api/ledger_transactions", body(ledger, a, b, 7))  # the balances move on
    for key, request in (("shown", shown), ("archived", archived)):
        again = await api.post("/api/ledger_transactions", request, headers={"Idempotency-Key": key})
        assert again.status_code == 201 and again.content == firsts[key].content


async def test_a_webhook_endpoint_registered_again_under_its_key_is_the_first_one(api):
    """A registration retried with its Idempotency-Key (its answer was lost) replays the first answer, key and all,
    and registers no second endpoint (which would get every event twice); another body under the key is 422."""
    endpoint = {"url": "https://93.184.216.34/hooks", "event_names": ["ledger_transaction.posted"]}
    first = await api.post("/api/webhook_endpoints", endpoint, headers={"Idempotency-Key": "hook-1"})
    again = await api.post("/api/webhook_endpoints", endpoint, headers={"Idempotency-Key": "hook-1"})
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content and first.json()["webhook_key"].startswith("whk_")
    assert [e["id"] for e in (await api.get("/api/webhook_endpoints")).json()] == [first.json()["id"]]
    r = await api.post("/api/webhook_endpoints", {**endpoint, "event_names": []}, headers={"Idempotency-Key": "hook-1"})
    assert r.status_code == 422 and r.json()["code"] == "idempotency_key_reused"
    r = await api.post("/api/webhook_endpoints", endpoint, headers={"Idempotency-Key": "x" * 300})
    assert r.status_code == 400 and r.json()["code"] == "invalid_idempotency_key"
    assert len((await api.get("/api/webhook_endpoints")).json()) == 1


async def test_a_key_rotation_or_redelivery_retried_under_its_key_replays_the_first_answer(api, admin_conn):
    """rotate_key and redeliver are POSTs too: a retry under the same Idempotency-Key is the first answer (the key the
    endpoint signs with, not a third one nobody was shown), another body under it is 422, a bad key 400."""
    from cell.store import events as store_events
    from cell.store import webhooks as store_webhooks

    made = (await api.post("/api/webhook_endpoints", {"url": "https://93.184.216.34/hooks"})).json()
    rotate = f"/api/webhook_endpoints/{made['id']}/rotate_key"
    first = await api.post(rotate, headers={"Idempotency-Key": "rotate-1"})
    again = await api.post(rotate, headers={"Idempotency-Key": "rotate-1"})
    assert (first.status_code, again.status_code) == (200, 200) and again.content == first.content
    assert first.json()["webhook_key"] not in (None, made["webhook_key"])
    assert await admin_conn.fetchval("SELECT key FROM webhook_endpoints WHERE id = $1",
                                     uuid.UUID(made["id"])) == first.json()["webhook_key"]
    r = await api.post(rotate, headers={"Idempotency-Key": "x" * 300})
    assert r.status_code == 400 and r.json()["code"] == "invalid_idempotency_key"

    await api.ledger()  # an event, fanned out to the endpoint as the worker does
    while await store_events.sequence(admin_conn):
        pass
    await store_webhooks.fan_out(admin_conn, uuid.UUID(made["id"]), 100, 3600)
    (delivery,) = (await api.get("/api/webhook_deliveries")).json()
    redeliver = f"/api/webhook_deliveries/{delivery['id']}/redeliver"
    first = await api.post(redeliver, headers={"Idempotency-Key": "redeliver-1"})
    again = await api.post(redeliver, headers={"Idempotency-Key": "redeliver-1"})
    assert (first.status_code, again.status_code) == (200, 200) and again.content == first.content
    r = await api.post(redeliver, headers={"Idempotency-Key": "rotate-1"})
    assert r.status_code == 422 and r.json()["code"] == "idempotency_key_reused"
