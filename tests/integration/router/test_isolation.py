"""Tenant isolation through the router with real cells: another tenant's ids are 404, another tenant's key
is 401, never data, whether the other tenant lives in the same cell or another one."""

from __future__ import annotations

import uuid

import httpx
import pytest

from router.app import UNAUTHORIZED_BODY


class Client:
    def __init__(self, base_url: str, tenant_id: str, secret: str) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, auth=(tenant_id, secret))
        self.tenant_id = tenant_id

    async def ok(self, method: str, path: str, json=None, status: int = 200) -> dict:
        response = await self.http.request(method, path, json=json)
        assert response.status_code == status, response.text
        return response.json()


async def _world(client: Client) -> dict:
    """A ledger, two accounts, a pending transaction (reversible once posted), as one tenant sees them."""
    ledger = await client.ok("POST", "/api/ledgers", {"name": "main"}, 201)
    debit = await client.ok("POST", "/api/ledger_accounts", {"name": "cash", "ledger_id": ledger["id"],
                                                              "normal_balance": "debit", "currency": "USD"}, 201)
    credit = await client.ok("POST", "/api/ledger_accounts", {"name": "rev", "ledger_id": ledger["id"],
                                                               "normal_balance": "credit", "currency": "USD"}, 201)
    txn = await client.ok("POST", "/api/ledger_transactions", {
        "ledger_id": ledger["id"], "status": "posted", "ledger_entries": [
            {"ledger_account_id": debit["id"], "direction": "debit", "amount": 700},
            {"ledger_account_id": credit["id"], "direction": "credit", "amount": 700}]}, 201)
    return {"ledger": ledger["id"], "debit": debit["id"], "credit": credit["id"], "txn": txn["id"],
            "entry": txn["ledger_entries"][0]["id"]}


def _reads(w: dict) -> list[str]:
    return [f"/api/ledgers/{w['ledger']}", f"/api/ledger_accounts/{w['debit']}",
            f"/api/ledger_transactions/{w['txn']}", f"/api/ledger_transactions/{w['txn']}/versions",
            f"/api/ledger_entries/{w['entry']}"]


def _lists(w: dict) -> list[str]:
    return [f"/api/ledger_accounts?ledger_id={w['ledger']}", f"/api/ledger_transactions?ledger_id={w['ledger']}",
            f"/api/ledger_entries?ledger_account_id={w['debit']}",
            f"/api/ledger_transactions?ledger_account_id={w['debit']}"]


def _writes(w: dict) -> list[tuple[str, str, dict]]:
    return [
        ("PATCH", f"/api/ledgers/{w['ledger']}", {"description": "mine now"}),
        ("PATCH", f"/api/ledger_accounts/{w['debit']}", {"description": "mine now"}),
        ("PATCH", f"/api/ledger_transactions/{w['txn']}", {"description": "mine now"}),
        ("POST", f"/api/ledger_transactions/{w['txn']}/reversal", {}),
        # Bodies that name the other tenant's objects.
        ("POST", "/api/ledger_accounts", {"name": "x", "ledger_id": w["ledger"], "normal_balance": "debit",
                                          "currency": "USD"}),
        ("POST", "/api/ledger_transactions", {"ledger_id": w["ledger"], "status": "posted", "ledger_entries": [
            {"ledger_account_id": w["debit"], "direction": "debit", "amount": 1},
            {"ledger_account_id": w["credit"], "direction": "credit", "amount": 1}]}),
    ]


def _no_leak(response: httpx.Response, victim: dict) -> None:
    """The answer names none of the victim's objects except those the request itself named."""
    asked = str(response.request.url) + response.request.content.decode()
    for value in victim.values():
        if value not in asked:
            assert value not in response.text, response.text
    assert '"amount":700' not in response.text.replace(" ", "")


@pytest.mark.parametrize("same_cell", [False, True], ids=["other-cell", "same-cell"])
async def test_another_tenants_ids_are_404_never_data(cells_platform, same_cell):
    victim_id, victim_key = await cells_platform.tenant("cell-2", "victim")
    thief_id, thief_key = await cells_platform.tenant("cell-2" if same_cell else "cell-1", "thief")
    victim = Client(cells_platform.router.url, victim_id, victim_key)
    thief = Client(cells_platform.router.url, thief_id, thief_key)
    world = await _world(victim)
    await _world(thief)  # the thief has data of its own, so "empty" is not an accident

    for path in _reads(world):
        response = await thief.http.get(path)
        assert response.status_code == 404, (path, response.text)
        _no_leak(response, world)
    for path in _lists(world):
        response = await thief.http.get(path)
        assert response.status_code in (200, 404), (path, response.text)
        if response.status_code == 200:
            assert response.json() == [], path
        _no_leak(response, world)
    for method, path, body in _writes(world):
        response = await thief.http.request(method, path, json=body)
        assert response.status_code in (404, 422), (method, path, response.text)
        _no_leak(response, world)
    # Nothing changed on the victim's side.
    txn = await victim.ok("GET", f"/api/ledger_transactions/{world['txn']}")
    assert txn["description"] is None and txn.get("reversed_by_id") in (None, "")
    balances = (await victim.ok("GET", f"/api/ledger_accounts/{world['debit']}"))["balances"]
    assert balances["posted_balance"]["amount"] == 700


@pytest.mark.parametrize("same_cell", [False, True], ids=["other-cell", "same-cell"])
async def test_another_tenants_key_is_401(cells_platform, same_cell):
    a_id, a_key = await cells_platform.tenant("cell-1", "a")
    b_id, b_key = await cells_platform.tenant("cell-1" if same_cell else "cell-2", "b")
    async with httpx.AsyncClient(base_url=cells_platform.router.url) as http:
        for auth in ((a_id, b_key), (b_id, a_key), (a_id, "lk_wrong"), (f"nobody-{uuid.uuid4().hex[:6]}", a_key)):
            response = await http.get("/api/ledgers", auth=auth)
            assert response.status_code == 401
            # A cell's 401 and the router's 401 (unknown tenant) are the same answer.
            assert response.content == UNAUTHORIZED_BODY
            assert response.headers["content-type"] == "application/problem+json"


async def test_a_revoked_key_stops_working_within_seconds(cells_platform):
    from control_plane import operations
    from router_rig import eventually

    tenant_id, secret = await cells_platform.tenant("cell-1")
    async with httpx.AsyncClient(base_url=cells_platform.router.url, auth=(tenant_id, secret)) as http:
        assert (await http.get("/api/ledgers")).status_code == 200
        [key] = await operations.list_keys(cells_platform.conn, tenant_id)
        await operations.revoke_key(cells_platform.conn, cells_platform.settings, tenant_id, str(key["id"]))

        async def refused():
            return (await http.get("/api/ledgers")).status_code == 401

        assert await eventually(refused, 5)  # the cells cache keys for api_key_cache_ttl_s (0.5 s here)
