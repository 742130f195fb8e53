"""The category benchmark: a ledger account category over 10,000 accounts (ten nested categories of 1,000),
read through the cell's HTTP API, current and as of an effective time, next to a single account's read.

The books: every account carries entries on three of sixty effective days. One nested category gets its 1,000
accounts by PUT (the API's own path, timed); the nine others by the same closure routine the API calls, in bulk
(ten thousand PUTs would only slow the set-up); then the ten are nested in the top category by PUT (each moves
1,000 accounts into its closure, timed). Prints the median and p90 of each read through HTTP and of the same
read's SQL alone (one connection), its throughput on `concurrency` connections, and the ratios to the account
read. Goal: a category over 10,000 accounts reads in under 50 ms.

    python -m loadtests.bench_categories --duration 10 --concurrency 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import httpx

from cell.store import categories as store_categories
from control_plane.devstack import EmbeddedPostgres, remove_tree
from loadtests.bench import TENANT, account_uuid, setup_books
from loadtests.hot_account import start_cell
from loadtests import httpload
from loadtests.httpload import run_load

ACCOUNTS = 10_000
NESTED = 10
DAYS = 60
ENTRIES_PER_TRANSACTION = 500
START = datetime(2024, 1, 1, tzinfo=timezone.utc)
READ_AT = START + timedelta(days=DAYS // 2, hours=12)  # half the history before it, half after
SQL_READS = 200


async def post_history(http: httpx.AsyncClient, ledger_id: str) -> None:
    """Every account gets three entries, on three of DAYS effective days: pairs (debit 2j-1, credit 2j)."""
    pairs = [(account_uuid(i), account_uuid(i + 1)) for i in range(1, ACCOUNTS, 2)]
    per_txn = ENTRIES_PER_TRANSACTION // 2
    batches = [pairs[k:k + per_txn] for k in range(0, len(pairs), per_txn)]
    day = 0
    for round_ in range(3):
        for batch in batches:
            entries = []
            for debit, credit in batch:
                amount = 100 + round_
                entries += [{"ledger_account_id": debit, "direction": "debit", "amount": amount},
                            {"ledger_account_id": credit, "direction": "credit", "amount": amount}]
            r = await http.post("/api/ledger_transactions", json={
                "ledger_id": ledger_id, "status": "posted", "ledger_entries": entries,
                "effective_at": (START + timedelta(days=day % DAYS, hours=round_)).isoformat()})
            r.raise_for_status()
            day += 1


async def build_category(http: httpx.AsyncClient, url: str, ledger_id: str) -> tuple[str, dict]:
    """The top category over NESTED categories of ACCOUNTS / NESTED accounts each; the set-up's own timings."""
    async def create(name: str) -> str:
        r = await http.post("/api/ledger_account_categories", json={
            "name": name, "ledger_id": ledger_id, "normal_balance": "debit", "currency": "USD"})
        r.raise_for_status()
        return r.json()["id"]

    top = await create("all accounts")
    nested = [await create(f"group {g}") for g in range(NESTED)]
    size = ACCOUNTS // NESTED
    members = {g: [account_uuid(i) for i in range(g * size + 1, (g + 1) * size + 1)] for g in range(NESTED)}
    put_ms = []
    for account in members[0]:
        t0 = time.perf_counter()
        r = await http.put(f"/api/ledger_account_categories/{nested[0]}/ledger_accounts/{account}")
        put_ms.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
    conn = await asyncpg.connect(url)
    try:
        for g in range(1, NESTED):
            ids = [uuid.UUID(a) for a in members[g]]
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "ledger_account_category_members", columns=["category_id", "account_id", "tenant_id"],
                    records=[(uuid.UUID(nested[g]), a, TENANT) for a in ids])
                await store_categories.refresh(conn, TENANT, [uuid.UUID(nested[g])], ids)
        nest_ms = []
        for child in nested:
            t0 = time.perf_counter()
            r = await http.put(f"/api/ledger_account_categories/{top}/ledger_account_categories/{child}")
            nest_ms.append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
        await conn.execute("ANALYZE")
        reached = await conn.fetchval("SELECT count(*) FROM ledger_account_category_closure "
                                      "WHERE category_id = $1 AND reachable", uuid.UUID(top))
    finally:
        await conn.close()
    assert reached == ACCOUNTS, reached
    return top, {"put_account_p50_ms": statistics.median(put_ms),
                 "nest_1000_accounts_p50_ms": statistics.median(nest_ms)}


async def sql_medians(url: str, top: str, account: str) -> dict:
    """The reads' SQL alone (the store functions the API calls), one after the other: median and p90 in ms."""
    conn = await asyncpg.connect(url)
    try:
        from cell.store import accounts as store_accounts

        reads = {
            "account": lambda: store_accounts.fetch(conn, TENANT, uuid.UUID(account)),
            "category_current": lambda: store_categories.fetch(conn, TENANT, uuid.UUID(top)),
            "category_effective_at": lambda: store_categories.fetch(conn, TENANT, uuid.UUID(top), at=READ_AT),
        }
        out = {}
        for name, read in reads.items():
            times = []
            for _ in range(SQL_READS):
                t0 = time.perf_counter()
                await read()
                times.append((time.perf_counter() - t0) * 1000)
            times.sort()
            out[name] = {"p50_ms": times[len(times) // 2], "p90_ms": times[int(len(times) * 0.9)]}
        return out
    finally:
        await conn.close()


async def run(duration_s: float = 10.0, concurrency: int = 4, **_ignored) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="ledger-categories-"))
    pg = EmbeddedPostgres(workdir / "pg").start()
    results: dict = {"accounts": ACCOUNTS, "nested_categories": NESTED, "days": DAYS, "duration_s": duration_s,
                     "concurrency": concurrency}
    try:
        url = pg.create_database("categories")
        ledger_id, secret = await setup_books(url, ACCOUNTS)
        cell, port = start_cell(url, "sync", workdir)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", auth=(TENANT, secret),
                                         timeout=120) as http:
                t0 = time.perf_counter()
                await post_history(http, ledger_id)
                results["history_s"] = time.perf_counter() - t0
                top, results["setup"] = await build_category(http, url, ledger_id)
                expected = (await http.get(f"/api/ledger_account_categories/{top}")).json()["balances"]
                assert expected["posted_balance"]["debits"] == expected["posted_balance"]["credits"] > 0, expected
            print(f"# categories: one category over {ACCOUNTS} accounts ({NESTED} nested categories), entries on "
                  f"{DAYS} effective days; 1 then {concurrency} connections, {duration_s / 6:.1f}s per phase")
            account = account_uuid(1)
            at = READ_AT.isoformat().replace("+00:00", "Z")
            paths = {"account": f"/api/ledger_accounts/{account}",
                     "category_current": f"/api/ledger_account_categories/{top}",
                     "category_effective_at": f"/api/ledger_account_categories/{top}?balances%5Beffective_at%5D={at}"}
            # Per read: its latency on one connection (the read time), then its throughput on `concurrency`.
            results["http"], results["http_loaded"] = {}, {}
            phase_s = duration_s / 6
            for name, path in paths.items():
                for key, connections in (("http", 1), ("http_loaded", concurrency)):
                    stats = await run_load("127.0.0.1", port, (TENANT, secret), duration_s=phase_s,
                                           workers=[(name, connections)],
                                           make_request={name: lambda path=path: ("GET", path, b"")})
                    results[key][name] = stats[name].summary(phase_s)
                    print(f"http {name:22s} {connections:3d} conn {_fmt(results[key][name])}")
            results["sql"] = await sql_medians(url, top, account)
            for name, row in results["sql"].items():
                print(f"sql  {name:22s} p50 {row['p50_ms']:6.2f} ms  p90 {row['p90_ms']:6.2f} ms")
        finally:
            cell.stop()
        base_http, base_sql = results["http"]["account"]["p50_ms"], results["sql"]["account"]["p50_ms"]
        results["ratios"] = {
            f"{kind}_vs_account_{via}": round(results[via][kind]["p50_ms"] / base, 2)
            for kind in ("category_current", "category_effective_at")
            for via, base in (("http", base_http), ("sql", base_sql))}
        results["goal_50ms_met"] = all(results["http"][k]["p50_ms"] < 50
                                       for k in ("category_current", "category_effective_at"))
        print(f"setup: PUT an account p50 {results['setup']['put_account_p50_ms']:.1f} ms, nest a 1,000-account "
              f"category p50 {results['setup']['nest_1000_accounts_p50_ms']:.1f} ms; "
              f"history {results['history_s']:.1f}s")
        print("ratios (p50, category over 10,000 accounts / one account): "
              + ", ".join(f"{k} {v}x" for k, v in results["ratios"].items()))
        print(f"goal: category reads p50 < 50 ms through HTTP, one connection: "
              f"{'met' if results['goal_50ms_met'] else 'NOT met'}")
        return results
    finally:
        pg.stop()
        remove_tree(workdir)


def _fmt(row: dict) -> str:
    return (f"{row['per_s']:7.0f} reads/s  p50 {row['p50_ms']:6.1f} ms  p90 {row['p90_ms']:6.1f} ms  "
            f"statuses {row['statuses']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    print(json.dumps(httpload.run(run(args.duration, args.concurrency)), indent=2, default=str))
