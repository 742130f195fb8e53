"""Categories over accounts whose entries are still queued (hybrid mode): a category's balances count what its
accounts' balances count (applied effects), the invariants hold while effects wait, and once a worker applies
them the category shows them."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from litestar.testing import TestClient

from cell.api.app import create_app
from cell.service.tenants import create_api_key, create_tenant
from cell.settings import load_settings
from cell.store.verify import verify


def test_a_category_counts_queued_entries_once_they_are_applied(make_database):
    url = make_database("categories_queued")
    loop = asyncio.new_event_loop()
    admin = loop.run_until_complete(asyncpg.connect(url))
    try:
        loop.run_until_complete(create_tenant(admin, "t1", "queued"))
        _, secret = loop.run_until_complete(create_api_key(admin, "t1"))
        auth = ("t1", secret)
        settings = load_settings(("CATQ_TEST_UNUSED_",), database_url=url, posting_mode="hybrid", sqs_queue_url="")
        with TestClient(create_app(settings)) as client:
            ledger = client.post("/api/ledgers", json={"name": "l"}, auth=auth).json()["id"]
            category = client.post("/api/ledger_account_categories", auth=auth, json={
                "name": "c", "ledger_id": ledger, "normal_balance": "credit", "currency": "USD"}).json()["id"]
            cash, wallet = (client.post("/api/ledger_accounts", auth=auth, json={
                "name": n, "ledger_id": ledger, "normal_balance": n, "currency": "USD",
                "ledger_account_category_ids": [category] if n == "credit" else []}).json()["id"]
                for n in ("debit", "credit"))
            r = client.post("/api/ledger_transactions", auth=auth, json={
                "ledger_id": ledger, "status": "posted", "effective_at": "2024-02-01T00:00:00Z", "ledger_entries": [
                    {"ledger_account_id": cash, "direction": "debit", "amount": 250},
                    {"ledger_account_id": wallet, "direction": "credit", "amount": 250}]})
            assert r.status_code == 201 and r.json()["ledger_entries"][1]["ledger_account_lock_version"] is None

            def posted(**params) -> int:
                got = client.get(f"/api/ledger_account_categories/{category}", params=params, auth=auth)
                assert got.status_code == 200, got.text
                return got.json()["balances"]["posted_balance"]["amount"]

            assert posted() == 0  # queued: like the account's own balances, not counted before it is applied
            assert loop.run_until_complete(verify(admin, "t1")) == []
            loop.run_until_complete(admin.fetchrow("SELECT * FROM ledger_apply_report($1::uuid[], false)",
                                                   [uuid.UUID(cash), uuid.UUID(wallet)]))
            assert posted() == 250
            assert posted(**{"balances[effective_at]": "2024-02-01T00:00:00Z"}) == 250
            assert posted(**{"balances[effective_at]": "2024-01-31T23:59:59Z"}) == 0
            assert loop.run_until_complete(verify(admin, "t1")) == []
    finally:
        loop.run_until_complete(admin.close())
        loop.close()
