"""Statements and settlements as an account's history grows, in one run: the time to create a statement and a
settlement over an account holding few and many unsettled posted entries, and the ratios between them.

A statement reads two balances from the effective-time cache (ledger_balance_at): whole UTC days from their
buckets, plus the effects of the bound's own day one by one. Every entry here is effective today, the worst case:
the statement's cost grows with the entries of that one day, never with the account's older history. A settlement
claims every entry it settles, one row each: work in proportion to them (the cost per entry is what to watch). In-process cell (sync mode) on an embedded PostgreSQL, fsync on.

    python -m loadtests.settlements --entries 100,5000 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg
from litestar.testing import AsyncTestClient

from cell.api.app import create_app
from cell.service.tenants import create_api_key, create_tenant
from cell.settings import load_settings
from cell.store.migrate import migrate
from cell.store.transactions import pgbench_post_sql
from control_plane.devstack import EmbeddedPostgres, remove_tree
from loadtests import httpload

TENANT = "settle-bench"
UPPER = "2100-01-01T00:00:00Z"


async def _books(http, url: str, auth, entries: int) -> tuple[str, str]:
    """A wallet holding `entries` posted credits (written by ledger_post in one statement), and a contra account."""
    ledger = (await http.post("/api/ledgers", json={"name": f"n{entries}"}, auth=auth)).json()["id"]
    ids = [(await http.post("/api/ledger_accounts", auth=auth, json={
        "name": name, "ledger_id": ledger, "normal_balance": normal, "currency": "USD"})).json()["id"]
        for name, normal in (("wallet", "credit"), ("cash", "debit"), ("payouts", "debit"))]
    wallet, cash, payouts = ids
    conn = await asyncpg.connect(url)
    try:
        one = pgbench_post_sql(TENANT, ledger, f"'{cash}'::uuid", f"'{wallet}'::uuid",
                               f"ARRAY['{cash}', '{wallet}']::uuid[]").rstrip().rstrip(";")
        await conn.execute(f"{one} FROM generate_series(1, {int(entries)})")
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return wallet, payouts


async def _timed(call) -> tuple[float, dict]:
    started = time.perf_counter()
    r = await call()
    assert r.status_code in (200, 201), r.text
    return (time.perf_counter() - started) * 1000, r.json()


async def _measure(http, auth, wallet: str, payouts: str, entries: int, repeat: int) -> dict:
    statement_ms, settlement_ms = [], []
    await http.get(f"/api/ledger_accounts/{wallet}", auth=auth)  # warm: connections, caches, plans
    for _ in range(repeat):
        ms, _ = await _timed(lambda: http.post("/api/ledger_account_statements", auth=auth, json={
            "ledger_account_id": wallet, "effective_at_lower_bound": "2000-01-01T00:00:00Z",
            "effective_at_upper_bound": UPPER}))
        statement_ms.append(ms)
        ms, s = await _timed(lambda: http.post("/api/ledger_account_settlements", auth=auth, json={
            "settled_ledger_account_id": wallet, "contra_ledger_account_id": payouts,
            "effective_at_upper_bound": UPPER}))
        assert s["amount"] == 100 * entries, s
        settlement_ms.append(ms)
        # Archived: its entries are released, so the next round settles the same ones again.
        await _timed(lambda: http.patch(f"/api/ledger_account_settlements/{s['id']}", auth=auth,
                                        json={"status": "archived"}))
    return {"entries": entries, "statement_ms": statistics.median(statement_ms),
            "settlement_ms": statistics.median(settlement_ms)}


async def measure(sizes: list[int], repeat: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="ledger-settle-bench-"))
    pg = EmbeddedPostgres(workdir / "pg").start()
    try:
        url = pg.create_database("settle")
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
            await create_tenant(conn, TENANT, "benchmark")
            _, secret = await create_api_key(conn, TENANT)
        finally:
            await conn.close()
        auth = (TENANT, secret)
        settings = load_settings(("SETTLE_BENCH_UNUSED_",), database_url=url, posting_mode="sync", sqs_queue_url="",
                                 db_pool_min=1, db_pool_max=4, statement_ms_max=120_000)
        rows = []
        async with AsyncTestClient(create_app(settings), timeout=300) as http:
            for n in sizes:
                wallet, payouts = await _books(http, url, auth, n)
                rows.append(await _measure(http, auth, wallet, payouts, n, repeat))
                print(f"{n:8d} entries: statement {rows[-1]['statement_ms']:8.1f} ms   "
                      f"settlement {rows[-1]['settlement_ms']:8.1f} ms "
                      f"({rows[-1]['settlement_ms'] * 1000 / n:.1f} us per settled entry)")
        small, large = rows[0], rows[-1]
        ratios = {"statement_large_over_small": large["statement_ms"] / small["statement_ms"],
                  "settlement_large_over_small": large["settlement_ms"] / small["settlement_ms"],
                  "entries_large_over_small": large["entries"] / small["entries"]}
        print(f"# ratios (same run): statement {ratios['statement_large_over_small']:.2f}x, settlement "
              f"{ratios['settlement_large_over_small']:.1f}x for {ratios['entries_large_over_small']:.0f}x the entries")
        return {"sizes": rows, "ratios": ratios}
    finally:
        pg.stop()
        remove_tree(workdir)


async def run(duration_s: float, concurrency: int) -> dict:
    """make bench's entry: duration and concurrency do not apply (one request at a time, sizes fixed)."""
    return await measure([100, 5_000], repeat=3)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", default="100,5000", help="comma-separated sizes, smallest first")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    httpload.run(measure([int(n) for n in args.entries.split(",")], args.repeat), loop_factory=None)
