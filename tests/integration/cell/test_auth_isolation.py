"""Credentials and tenancy: a bad key reveals nothing; another tenant's ids are 404, never data."""

import asyncio
import time

import pytest
from litestar.testing import AsyncTestClient

from cell.api.app import create_app
from cell.service.tenants import list_api_keys, revoke_api_key
from cell.settings import load_settings


async def test_missing_or_wrong_credentials_are_401(api, cell_client):
    for auth in (None, (api.tenant_id, "lk_wrong"), ("someone-else", api.api_key), (api.tenant_id, "")):
        r = await cell_client.get("/api/ledgers", auth=auth) if auth else await cell_client.get("/api/ledgers")
        assert r.status_code == 401, auth
        assert r.json()["code"] == "unauthorized"
        assert "www-authenticate" in r.headers
    r = await cell_client.get("/api/ledgers", headers={"authorization": "Basic %%%"})
    assert r.status_code == 401


async def test_a_revoked_key_is_refused_within_a_second_at_the_default_settings(api, admin_conn, cell_database_url):
    # A cell of its own with the production defaults (the shared test cell sets its own key-cache TTL).
    app = create_app(load_settings(("CELL_TEST_UNUSED_",), database_url=cell_database_url, db_pool_min=1,
                                   db_pool_max=2))
    async with AsyncTestClient(app) as client:
        assert (await client.get("/api/ledgers", auth=api.auth)).status_code == 200  # the key is now cached
        (key,) = await list_api_keys(admin_conn, api.tenant_id)
        await revoke_api_key(admin_conn, api.tenant_id, key["id"])
        revoked = time.monotonic()
        while (status := (await client.get("/api/ledgers", auth=api.auth)).status_code) != 401:
            assert status == 200
            assert time.monotonic() - revoked < 1.0, "a revoked key still works 1 s after its revocation"
            await asyncio.sleep(0.02)  # polling until the deadline


@pytest.fixture
async def two_tenants(new_tenant):
    a, b = await new_tenant(), await new_tenant()
    ledger = await b.ledger()
    x = await b.account(ledger["id"], "debit")
    y = await b.account(ledger["id"], "credit")
    txn = (await b.transfer(ledger["id"], x["id"], y["id"], 700, status="pending")).json()
    return a, b, ledger, x, y, txn


async def test_another_tenants_ids_are_404_on_every_endpoint(two_tenants):
    a, b, ledger, x, y, txn = two_tenants
    entry = txn["ledger_entries"][0]["id"]
    for method, path, body in [
        ("GET", f"/api/ledgers/{ledger['id']}", None),
        ("PATCH", f"/api/ledgers/{ledger['id']}", {"name": "mine now"}),
        ("GET", f"/api/ledger_accounts/{x['id']}", None),
        ("PATCH", f"/api/ledger_accounts/{x['id']}", {"name": "mine now"}),
        ("GET", f"/api/ledger_transactions/{txn['id']}", None),
        ("PATCH", f"/api/ledger_transactions/{txn['id']}", {"status": "archived"}),
        ("POST", f"/api/ledger_transactions/{txn['id']}/reversal", {}),
        ("GET", f"/api/ledger_transactions/{txn['id']}/versions", None),
        ("GET", f"/api/ledger_entries/{entry}", None),
    ]:
        r = await a.request(method, path, json=body)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["code"] == "not_found"
    # Lists filtered by another tenant's ids are simply empty.
    for path, params in [("/api/ledger_accounts", {"ledger_id": ledger["id"]}),
                         ("/api/ledger_transactions", {"ledger_account_id": x["id"]}),
                         ("/api/ledger_entries", {"ledger_transaction_id": txn["id"]})]:
        r = await a.get(path, params=params)
        assert r.status_code == 200 and r.json() == [], path
    # And tenant B's data is untouched.
    assert (await b.get(f"/api/ledger_transactions/{txn['id']}")).json()["status"] == "pending"
    assert (await b.get(f"/api/ledgers/{ledger['id']}")).json()["name"] == "main"


async def test_a_body_naming_another_tenants_ledger_or_account_is_refused(two_tenants):
    a, b, ledger, x, y, _ = two_tenants
    r = await a.transfer(ledger["id"], x["id"], y["id"], 5)
    assert r.status_code == 422 and r.json()["code"] in ("ledger_not_found", "ledger_account_not_found")
    own = await a.ledger()
    mine = await a.account(own["id"], "debit")
    r = await a.transfer(own["id"], mine["id"], y["id"], 5)
    assert r.status_code == 422 and r.json()["code"] == "ledger_account_not_found"
    r = await a.post("/api/ledger_accounts", {"ledger_id": ledger["id"], "name": "n", "normal_balance": "credit",
                                              "currency": "USD"})
    assert r.status_code == 422 and r.json()["code"] == "ledger_not_found"
    assert (await b.balances(y["id"]))["pending_balance"]["amount"] == 700


class CountingPool:
    """The cell's real pool, counting the key lookups sent through it."""

    def __init__(self, pool) -> None:
        self.pool, self.lookups = pool, 0

    async def fetchrow(self, *args):
        self.lookups += 1
        return await self.pool.fetchrow(*args)


async def test_requests_that_miss_the_key_cache_together_share_one_lookup(api, cell_database_url):
    """When a busy client's cached key expires, its connections' requests wait for one query, not one each."""
    from cell.service.tenants import KeyCache
    from cell.store.db import create_pool

    real = await create_pool(cell_database_url, min_size=1, max_size=4, role="ledger_app")
    try:
        keys, pool = KeyCache(ttl_s=60), CountingPool(real)
        found = await asyncio.gather(*(keys.lookup(pool, api.api_key) for _ in range(50)))
        assert found == [(api.tenant_id, "active")] * 50 and pool.lookups == 1
        assert await asyncio.gather(*(keys.lookup(pool, "lk_wrong") for _ in range(5))) == [None] * 5
        assert pool.lookups == 2
    finally:
        await real.close()


async def test_a_tenant_a_move_is_copying_here_is_answered_421_then_served_at_once_from_its_flip(
        new_tenant, admin_conn, cell_database_url):
    """A move's copy of a tenant on its target ('arriving', cell migration 0225) is no one's books yet: its reads and
    writes are answered 421 tenant_moved (a stale router follows the route). The key's answer is not remembered, so
    that the target serves the tenant from the moment the move makes it frozen, not a key-cache TTL later."""
    tenant = await new_tenant()
    ledger = await tenant.ledger()
    app = create_app(load_settings(("CELL_TEST_UNUSED_",), database_url=cell_database_url, db_pool_min=1,
                                   db_pool_max=2, api_key_cache_ttl_s=60))
    await admin_conn.execute("UPDATE tenants SET state = 'arriving' WHERE id = $1", tenant.tenant_id)
    try:
        async with AsyncTestClient(app) as client:
            for answer in (await client.get(f"/api/ledgers/{ledger['id']}", auth=tenant.auth),
                           await client.post("/api/ledgers", json={"name": "x"}, auth=tenant.auth)):
                assert answer.status_code == 421, answer.text
                assert answer.headers["content-type"].startswith("application/problem+json")
                assert answer.json()["code"] == "tenant_moved"
            await admin_conn.execute("UPDATE tenants SET state = 'frozen' WHERE id = $1", tenant.tenant_id)
            read = await client.get(f"/api/ledgers/{ledger['id']}", auth=tenant.auth)
            assert read.status_code == 200 and read.json()["id"] == ledger["id"], read.text
    finally:
        await admin_conn.execute("UPDATE tenants SET state = 'active' WHERE id = $1", tenant.tenant_id)
