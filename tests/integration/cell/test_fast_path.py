"""cell.api.fast answers its two routes exactly as Litestar's handlers do: the same status, headers and bytes for
valid, invalid, unauthorized, not found and replayed requests, and the same request metrics. Every other test of
the cell goes through the fast path too (it is on by default); here a second app with it off answers beside it."""

from __future__ import annotations

import json
import uuid

import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY

from tests.integration.conftest import Api, cell_settings
from cell.api.app import create_app


@pytest_asyncio.fixture(scope="session")
async def litestar_client(cell_database_url):
    app = create_app(cell_settings(cell_database_url, fast_path=False, name="cell-litestar"))
    async with AsyncTestClient(app) as client:
        yield client


@pytest.fixture
async def both(api, litestar_client):
    """(fast, litestar): the same tenant through either app, and its books."""
    slow = Api(litestar_client, api.tenant_id, api.api_key)
    ledger = await api.ledger()
    return api, slow, ledger, await api.account(ledger["id"], "debit"), await api.account(ledger["id"], "credit")


def transfer(ledger, a, b, amount=250, **extra) -> dict:
    return {"ledger_id": ledger["id"], "status": "posted", "ledger_entries": [
        {"ledger_account_id": a["id"], "direction": "debit", "amount": amount},
        {"ledger_account_id": b["id"], "direction": "credit", "amount": amount}], **extra}


def answer(r) -> tuple:
    return r.status_code, r.headers.multi_items(), r.content


async def same(fast: Api, slow: Api, method: str, path: str, **kw) -> tuple:
    a = await fast.request(method, path, **kw)
    b = await slow.request(method, path, **kw)
    assert answer(a) == answer(b)
    return answer(a)


async def test_balance_reads_are_the_same_bytes(both):
    fast, slow, ledger, a, b = both
    await fast.post("/api/ledger_transactions", transfer(ledger, a, b))
    status, headers, body = await same(fast, slow, "GET", f"/api/ledger_accounts/{a['id']}")
    assert status == 200 and ("content-type", "application/json") in headers
    assert json.loads(body)["balances"]["posted_balance"]["amount"] == 250


@pytest.mark.parametrize("account_id",  # ids fixed at collection: pytest-xdist's workers must collect the same
                         ["nope", "5b0d6f2e-8c4a-4f5e-9d1b-2a7c3e9f4b61", "00000000-0000-0000-0000-00000000000x"])
async def test_unknown_accounts_are_the_same_404(both, account_id):
    fast, slow, *_ = both
    status, headers, body = await same(fast, slow, "GET", f"/api/ledger_accounts/{account_id}")
    assert status == 404 and json.loads(body)["code"] == "not_found"


async def test_another_tenants_account_is_the_same_404(both, new_tenant, litestar_client):
    fast, slow, ledger, a, b = both
    other = await new_tenant()
    status, *_ = await same(other, Api(litestar_client, other.tenant_id, other.api_key), "GET",
                            f"/api/ledger_accounts/{a['id']}")
    assert status == 404


@pytest.mark.parametrize("auth", [None, ("x", "y"), "wrong key"])
@pytest.mark.parametrize("method, path", [("GET", "/api/ledger_accounts/{a}"), ("POST", "/api/ledger_transactions")])
async def test_bad_credentials_are_the_same_401(both, auth, method, path):
    fast, slow, ledger, a, b = both
    credentials = (fast.tenant_id, "lk_wrong") if auth == "wrong key" else auth
    status, headers, _ = await same(fast, slow, method, path.format(a=a["id"]), json=transfer(ledger, a, b),
                                    auth=credentials)
    assert status == 401 and ("www-authenticate", 'Basic realm="ledger"') in headers


@pytest.mark.parametrize("content, headers, status", [
    (b"{", {"Content-Type": "application/json"}, 400),  # malformed JSON
    (b'{"ledger_entries": "x"}', {"Content-Type": "application/json"}, 400),  # invalid body
    (b'{"ledger_entries": []}', {"Content-Type": "application/json; charset=latin-1"}, 415),
    (b'{"ledger_entries": []}', {"Content-Type": "text/plain"}, 415),
    (b"\xff\xfe", {"Content-Type": "application/json"}, 400),  # not UTF-8
    (b"", {}, 400),  # no body: {} lacks the entries
    (b"x" * 1_048_577, {"Content-Type": "application/json"}, 413),
])
async def test_bad_bodies_are_the_same_problems(both, content, headers, status):
    fast, slow, *_ = both
    got, _, body = await same(fast, slow, "POST", "/api/ledger_transactions", content=content, headers=headers)
    assert got == status and json.loads(body)["status"] == status


async def test_rejected_postings_are_the_same_422(both):
    fast, slow, ledger, a, b = both
    unbalanced = transfer(ledger, a, b)
    unbalanced["ledger_entries"][1]["amount"] = 1
    for body in (unbalanced, transfer(ledger, a, {"id": str(uuid.uuid4())}), transfer({"id": str(uuid.uuid4())}, a, b)):
        status, _, problem = await same(fast, slow, "POST", "/api/ledger_transactions", json=body)
        assert status == 422, problem


async def test_idempotency_keys_replay_across_both_paths(both):
    fast, slow, ledger, a, b = both
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = await fast.post("/api/ledger_transactions", transfer(ledger, a, b), headers=key)
    assert first.status_code == 201
    # The fast path's answer replayed by Litestar's handler and by itself, byte for byte.
    assert answer(await slow.post("/api/ledger_transactions", transfer(ledger, a, b), headers=key)) == answer(first)
    assert answer(await fast.post("/api/ledger_transactions", transfer(ledger, a, b), headers=key)) == answer(first)
    # And the other way round.
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = await slow.post("/api/ledger_transactions", transfer(ledger, a, b, 7), headers=key)
    assert answer(await fast.post("/api/ledger_transactions", transfer(ledger, a, b, 7), headers=key)) == answer(first)
    # A key reused with another body, and a key too long: the same problems.
    status, _, _ = await same(fast, slow, "POST", "/api/ledger_transactions", json=transfer(ledger, a, b, 8),
                              headers=key)
    assert status == 422
    status, _, _ = await same(fast, slow, "POST", "/api/ledger_transactions", json=transfer(ledger, a, b),
                              headers={"Idempotency-Key": "k" * 256})
    assert status == 400


async def test_new_transactions_are_answered_alike(both):
    """Two postings have their own ids and times: the same answer otherwise."""
    fast, slow, ledger, a, b = both
    body = transfer(ledger, a, b, metadata={"k": "v"}, description="d")
    body["ledger_entries"][0]["show_resulting_ledger_account_balances"] = True
    x, y = (await fast.post("/api/ledger_transactions", body)), (await slow.post("/api/ledger_transactions", body))
    assert x.status_code == y.status_code == 201
    assert x.headers.multi_items()[0] == y.headers.multi_items()[0] == ("content-type", "application/json")

    def shape(r) -> dict:
        t = r.json()
        volatile = {"id", "created_at", "updated_at", "posted_at", "effective_at", "effective_date",
                    "ledger_account_lock_version"}  # sync mode: each posting moves its accounts on
        t = {k: v for k, v in t.items() if k not in volatile}
        t["ledger_entries"] = [{k: v for k, v in e.items() if k not in volatile | {"ledger_transaction_id"}
                                and k != "resulting_ledger_account_balances"} for e in t["ledger_entries"]]
        return t

    assert shape(x) == shape(y)


def requests_served(cell: str, path: str, status: str, method: str) -> float:
    return REGISTRY.get_sample_value("ledger_requests_total", {
        "method": method, "path": path, "status_code": status, "app_name": "cell", "cell": cell}) or 0.0


async def test_the_fast_path_counts_requests_under_litestars_route_names(both, cell_client):
    fast, slow, ledger, a, b = both
    cell = cell_client.app.state.ctx.settings.name
    reads = requests_served(cell, "/api/ledger_accounts/{account_id}", "200", "GET")
    writes = requests_served(cell, "/api/ledger_transactions", "201", "POST")
    missing = requests_served(cell, "/api/ledger_accounts/{account_id}", "404", "GET")
    await fast.get(f"/api/ledger_accounts/{a['id']}")
    await fast.get("/api/ledger_accounts/nope")
    await fast.post("/api/ledger_transactions", transfer(ledger, a, b))
    assert requests_served(cell, "/api/ledger_accounts/{account_id}", "200", "GET") == reads + 1
    assert requests_served(cell, "/api/ledger_accounts/{account_id}", "404", "GET") == missing + 1
    assert requests_served(cell, "/api/ledger_transactions", "201", "POST") == writes + 1
    for method, path in (("GET", "/api/ledger_accounts/{account_id}"), ("POST", "/api/ledger_transactions")):
        assert REGISTRY.get_sample_value("ledger_requests_in_progress", {  # each request counted out again
            "method": method, "path": path, "status_code": "200", "app_name": "cell", "cell": cell}) == 0
    # Litestar names the same routes the same way.
    before = requests_served("cell-litestar", "/api/ledger_accounts/{account_id}", "200", "GET")
    await slow.get(f"/api/ledger_accounts/{a['id']}")
    assert requests_served("cell-litestar", "/api/ledger_accounts/{account_id}", "200", "GET") == before + 1


async def test_what_the_fast_path_does_not_take_goes_to_litestar(both):
    """A balance read with a query, and the routes' neighbours, are Litestar's (and still the same answers)."""
    fast, slow, ledger, a, b = both
    await fast.post("/api/ledger_transactions", transfer(ledger, a, b))
    for path in (f"/api/ledger_accounts/{a['id']}?balances[include_unapplied]=true",
                 f"/api/ledger_accounts/{a['id']}?nope=1", f"/api/ledger_accounts/{a['id']}/",
                 "/api/ledger_transactions/", "/api/ledger_accounts/"):
        await same(fast, slow, "GET", path)
    await same(fast, slow, "PUT", "/api/ledger_transactions", json={})
    await same(fast, slow, "HEAD", f"/api/ledger_accounts/{a['id']}")
