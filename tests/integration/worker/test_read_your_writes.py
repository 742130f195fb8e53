"""Read-your-writes on a queued account holds while a worker applies: `balances[include_unapplied]` is one
snapshot, so an apply committed during the read can never hide the caller's own posting from it."""

from __future__ import annotations

import asyncio
import threading
import uuid

import asyncpg
from litestar.testing import TestClient

from cell.api.app import create_app
from cell.service.tenants import create_api_key, create_tenant
from cell.settings import load_settings


def test_include_unapplied_counts_a_posting_applied_during_the_read(make_database):
    url = make_database("read_your_writes")
    loop = asyncio.new_event_loop()
    admin = loop.run_until_complete(asyncpg.connect(url))
    try:
        loop.run_until_complete(create_tenant(admin, "t1", "ryw"))
        _, secret = loop.run_until_complete(create_api_key(admin, "t1"))
        auth = ("t1", secret)
        settings = load_settings(("RYW_TEST_UNUSED_",), database_url=url, posting_mode="hybrid", sqs_queue_url="")
        with TestClient(create_app(settings)) as client:
            ledger = client.post("/api/ledgers", json={"name": "l"}, auth=auth).json()["id"]
            a, b = (client.post("/api/ledger_accounts", auth=auth, json={
                "name": n, "ledger_id": ledger, "normal_balance": "credit", "currency": "USD"}).json()["id"]
                for n in "ab")
            r = client.post("/api/ledger_transactions", auth=auth, json={"ledger_id": ledger, "status": "posted",
                            "ledger_entries": [{"ledger_account_id": a, "direction": "debit", "amount": 100},
                                               {"ledger_account_id": b, "direction": "credit", "amount": 100}]})
            assert r.status_code == 201 and r.json()["ledger_entries"][1]["ledger_account_lock_version"] is None
            params = {"balances[include_unapplied]": "true"}
            quiet = client.get(f"/api/ledger_accounts/{b}", params=params, auth=auth).json()
            assert (quiet["balances"]["posted_balance"]["amount"], quiet["lock_version"]) == (100, 1)  # queued: counted

            # A worker's transaction holds the queue table, so the read waits on it; the worker applies and
            # commits while the read waits (the interleaving heavy load produces by chance).
            tx = admin.transaction()
            loop.run_until_complete(tx.start())
            loop.run_until_complete(admin.execute("LOCK TABLE balance_effects IN ACCESS EXCLUSIVE MODE"))
            out: dict = {}
            reader = threading.Thread(target=lambda: out.update(
                r=client.get(f"/api/ledger_accounts/{b}", params=params, auth=auth)))
            reader.start()

            async def read_is_waiting() -> None:
                for _ in range(500):
                    if await admin.fetchval(
                            # The statement by its opening comment: pg_stat_activity keeps a query's first 1 kB.
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                            "AND datname = current_database() "
                            "AND query LIKE '%Applied totals plus still-queued effects%'"):
                        return
                    await asyncio.sleep(0.02)
                raise AssertionError("the read never waited on the worker")

            committed = False
            try:
                loop.run_until_complete(read_is_waiting())
                loop.run_until_complete(admin.fetchrow("SELECT * FROM ledger_apply_report($1::uuid[], false)",
                                                       [uuid.UUID(a), uuid.UUID(b)]))
                loop.run_until_complete(tx.commit())
                committed = True
            finally:
                if not committed:  # whatever failed, never leave the read waiting on our lock
                    loop.run_until_complete(tx.rollback())
                reader.join(30)
            assert out["r"].status_code == 200
            assert (out["r"].json()["balances"]["posted_balance"]["amount"], out["r"].json()["lock_version"]) == (100, 1)
            assert client.get(f"/api/ledger_accounts/{b}", auth=auth).json()["lock_version"] == 1
    finally:
        loop.run_until_complete(admin.close())
        loop.close()
