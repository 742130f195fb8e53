"""The property tests' harness: a cell app driven through litestar's sync TestClient, plus an admin connection
on a private event loop (no pytest-asyncio loop involved: hypothesis runs the examples synchronously)."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

import asyncpg
from hypothesis.stateful import RuleBasedStateMachine
from litestar.testing import TestClient

from cell.api.app import create_app
from cell.service.tenants import create_api_key, create_tenant
from cell.store.verify import verify
from cell.settings import load_settings
from cell.store.db import INDEX_PLANS, create_pool
from worker.settings import load_settings as load_worker_settings


@dataclass
class Cell:
    """The app under test and a way to run admin coroutines (tenants, verify) against its database."""

    client: TestClient
    loop: asyncio.AbstractEventLoop
    admin: asyncpg.Connection
    tenant_prefix: str = "p"

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def new_tenant(self) -> tuple[str, tuple[str, str]]:
        """A fresh tenant with an API key: (tenant_id, basic-auth pair). Each example gets its own books."""
        tenant_id = f"{self.tenant_prefix}-{uuid.uuid4().hex[:12]}"
        self.run(create_tenant(self.admin, tenant_id, "property"))
        _, secret = self.run(create_api_key(self.admin, tenant_id))
        return tenant_id, (tenant_id, secret)

    def verify(self, tenant_id: str) -> list[str]:
        return self.run(verify(self.admin, tenant_id))

    def apply(self, account_ids: list[str]) -> int:
        """A worker step: fold every queued effect of these accounts (on a connection of its own)."""
        row = self.run(self.admin.fetchrow("SELECT * FROM ledger_apply_report($1::uuid[], false)",
                                           [uuid.UUID(a) for a in account_ids]))
        assert row["skipped"] == [], f"accounts skipped without skip_locked: {row['skipped']}"
        return row["applied"]


@contextmanager
def open_cell(database_url: str, *, posting_mode: str, tenant_prefix: str = "p", **cell: object):
    """The app in `posting_mode` (no queue: nothing queued is applied but by `Cell.apply`), reading no
    CELL_/LEDGER_ environment that could change it (`cell`: settings of its own, e.g. webhook_allow_http_loopback)."""
    settings = load_settings(("CELL_PROPERTY_TEST_UNUSED_",), database_url=database_url, posting_mode=posting_mode,
                             sqs_queue_url="", db_pool_min=1, db_pool_max=4, api_key_cache_ttl_s=60.0, **cell)
    # A private loop, never installed as the thread's current loop, so pytest-asyncio's session loop is untouched.
    loop = asyncio.new_event_loop()
    admin = loop.run_until_complete(asyncpg.connect(database_url))
    try:
        with TestClient(create_app(settings)) as client:
            yield Cell(client, loop, admin, tenant_prefix)
    finally:
        loop.run_until_complete(admin.close())
        loop.close()


@contextmanager
def open_worked_cell(database_url: str, *, posting_mode: str, tenant_prefix: str, pool_max: int,
                     cell_settings: dict | None = None, **worker: object):
    """open_cell, with what a model needs to step the workers' own code itself: a pool on the cell's loop and the
    workers' settings in the same posting mode (`worker`: settings of theirs, e.g. bulk_chunk_size; `cell_settings`:
    the app's own)."""
    with open_cell(database_url, posting_mode=posting_mode, tenant_prefix=tenant_prefix,
                   **(cell_settings or {})) as cell:
        async def new_pool():  # made on the cell's private loop (create_pool reads the running one)
            return await create_pool(database_url, min_size=1, max_size=pool_max, server_settings=INDEX_PLANS)

        pool = cell.run(new_pool())
        try:
            yield cell, pool, load_worker_settings({}, database_url=database_url, posting_mode=posting_mode, **worker)
        finally:
            cell.run(pool.close())


def run_plan(bench, plan: list) -> None:
    """Each step of `plan` (the name of a `bench` method, then its arguments), `bench.observe()` after it; a failure
    names the steps that led there (shrunk as hypothesis shrinks the plan)."""
    for n, step in enumerate(plan):
        try:
            getattr(bench, step[0])(*step[1:])
            bench.observe()
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nsteps={plan[:n + 1]}") from None


def every_page(call, path: str, **params: str) -> list[dict]:
    """What GET `path` lists under `params`, every page (after_cursor) read through `call` (a machine's: no 5xx)."""
    listed, cursor = [], None
    while True:
        r = call("GET", path, params={**params, **({"after_cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        listed += r.json()
        cursor = r.headers.get("x-after-cursor")
        if not cursor:
            return listed


class ApiMachine(RuleBasedStateMachine):
    """What every model machine does over HTTP: requests as one tenant (never a 5xx), account reads, and an
    account's whole entry list with resulting balances, page by page."""

    per_page = 100

    def __init__(self, cell: Cell) -> None:
        super().__init__()
        self.cell = cell
        self.tenant, self.auth = cell.new_tenant()

    def call(self, method: str, path: str, json=None, params=None):
        r = self.cell.client.request(method, path, json=json, params=params, auth=self.auth)
        assert r.status_code < 500, f"{method} {path}: {r.status_code} {r.text}"
        return r

    def read_account(self, a, params=None) -> dict:
        r = self.call("GET", f"/api/ledger_accounts/{a.id}", params=params)
        assert r.status_code == 200, r.text
        return r.json()

    def list_entries(self, a, **extra: str) -> list[dict]:
        return self.entries_listed(ledger_account_id=a.id, show_balances="true", **extra)

    def entry_ids(self, **filters: str) -> list[str]:
        """The ids of the entries GET /api/ledger_entries lists under `filters` (a statement's, a settlement's), sorted."""
        return sorted(e["id"] for e in self.entries_listed(**filters))

    def entries_listed(self, **filters: str) -> list[dict]:
        return every_page(self.call, "/api/ledger_entries", per_page=str(self.per_page), **filters)
