"""Integration fixtures: one cell app on the session's PostgreSQL; each test gets fresh tenants, and the
invariants of DESIGN.md section 8 are verified for them after the test."""

from __future__ import annotations

import contextlib
import uuid

import asyncpg
import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient

from cell.api.app import create_app
from cell.service.tenants import create_api_key, create_tenant
from cell.settings import load_settings
from cell.store.verify import verify


class Api:
    """An HTTP client bound to one tenant's credentials."""

    def __init__(self, client: AsyncTestClient, tenant_id: str, api_key: str) -> None:
        self.client = client
        self.tenant_id = tenant_id
        self.api_key = api_key
        self.auth = (tenant_id, api_key)

    async def request(self, method: str, path: str, **kw):
        kw.setdefault("auth", self.auth)
        return await self.client.request(method, path, **kw)

    async def get(self, path: str, **kw):
        return await self.request("GET", path, **kw)

    async def post(self, path: str, json=None, **kw):
        return await self.request("POST", path, json=json, **kw)

    async def patch(self, path: str, json=None, **kw):
        return await self.request("PATCH", path, json=json, **kw)

    # Shortcuts used across tests.
    async def ledger(self, name: str = "main") -> dict:
        r = await self.post("/api/ledgers", {"name": name})
        assert r.status_code == 201, r.text
        return r.json()

    async def account(self, ledger_id: str, normal_balance: str = "credit", currency: str = "USD", **extra) -> dict:
        r = await self.post("/api/ledger_accounts", {"name": f"acct-{uuid.uuid4().hex[:6]}", "ledger_id": ledger_id,
                                                     "normal_balance": normal_balance, "currency": currency, **extra})
        assert r.status_code == 201, r.text
        return r.json()

    async def transfer(self, ledger_id: str, debit: str, credit: str, amount: int, status: str = "posted",
                       **extra):
        return await self.post("/api/ledger_transactions", {
            "ledger_id": ledger_id, "status": status, "ledger_entries": [
                {"ledger_account_id": debit, "direction": "debit", "amount": amount},
                {"ledger_account_id": credit, "direction": "credit", "amount": amount}], **extra})

    async def balances(self, account_id: str, **params) -> dict:
        r = await self.get(f"/api/ledger_accounts/{account_id}", params=params)
        assert r.status_code == 200, r.text
        return r.json()["balances"]


def cell_settings(database_url: str, **overrides):
    # The cell API's own tests run in sync mode (every balance exact at once); tests/integration/worker
    # covers hybrid mode with real workers.
    overrides.setdefault("posting_mode", "sync")
    return load_settings(("CELL_TEST_UNUSED_",), database_url=database_url, db_pool_min=2, db_pool_max=16,
                         api_key_cache_ttl_s=0.5, **overrides)


@pytest_asyncio.fixture(scope="session")
async def cell_client(cell_database_url):
    app = create_app(cell_settings(cell_database_url))
    async with AsyncTestClient(app) as client:
        yield client


@pytest_asyncio.fixture(scope="session")
async def admin_conn(cell_database_url):
    conn = await asyncpg.connect(cell_database_url)
    yield conn
    await conn.close()


@pytest.fixture
def tenants_created():
    return []


@pytest_asyncio.fixture
async def new_tenant(cell_client, admin_conn, tenants_created):
    """Factory: a fresh tenant with an API key, as an Api client."""

    async def make(client=None) -> Api:
        tenant_id = f"t-{uuid.uuid4().hex[:12]}"
        await create_tenant(admin_conn, tenant_id, "test")
        _, secret = await create_api_key(admin_conn, tenant_id)
        tenants_created.append(tenant_id)
        return Api(client or cell_client, tenant_id, secret)

    yield make
    for tenant_id in tenants_created:
        problems = await verify(admin_conn, tenant_id)
        assert problems == [], f"invariants violated for {tenant_id}: {problems}"


@pytest_asyncio.fixture
async def api(new_tenant) -> Api:
    return await new_tenant()


@pytest_asyncio.fixture
async def books(api):
    """The `api` tenant's ledger with a debit-normal and a credit-normal account: (ledger, debit, credit)."""
    ledger = await api.ledger()
    return ledger, await api.account(ledger["id"], "debit"), await api.account(ledger["id"], "credit")


def start_cell_process(database_url: str, stderr=None, **env: str):
    """A real cell server process (`python -m cell`) on `database_url`, CELL_<NAME> settings from `env`, its log to
    `stderr` (a file; the test's own by default): (the process, its URL) once its /readyz is 200."""
    import os
    import subprocess
    import sys
    import time

    import httpx

    from control_plane.devstack import free_port

    port = free_port()
    env = {**os.environ, "CELL_DATABASE_URL": database_url, "CELL_PORT": str(port),
           **{f"CELL_{name.upper()}": value for name, value in env.items()}}
    proc = subprocess.Popen([sys.executable, "-m", "cell"], env=env, start_new_session=True, stderr=stderr)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError("the live cell did not start")
        time.sleep(0.1)


@contextlib.contextmanager
def cell_process(database_url: str, **env: str):
    """A real cell server process (`python -m cell`) on `database_url`, CELL_<NAME> settings from `env`: its URL once
    its /readyz is 200; stopped after."""
    import subprocess

    proc, url = start_cell_process(database_url, **env)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def live_cell_url(cell_database_url):
    """A real cell server process (uvicorn), for tests that need true concurrency over HTTP."""
    with cell_process(cell_database_url, name="live-test", db_pool_max="16", api_key_cache_ttl_s="0.5",
                      posting_mode="sync") as url:
        yield url


@pytest_asyncio.fixture
async def live_api(live_cell_url, new_tenant):
    import httpx

    async with httpx.AsyncClient(base_url=live_cell_url, timeout=30,
                                 limits=httpx.Limits(max_connections=100)) as client:
        yield await new_tenant(client)
