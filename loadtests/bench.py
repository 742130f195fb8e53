"""`make bench`: the cell under load next to its direct-SQL floor, measured side by side in one run.

Prints writes/s and p50/p99 for the HTTP API (uvicorn and granian), the same posting written straight to
PostgreSQL by pgbench (the floor), a 1:3 write:read mix, and the ratios between them. Then runs the
hot-account (hybrid vs sync) and router-overhead benchmarks when those modules are present.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

from cell.service.tenants import create_api_key, create_tenant
from cell.store.migrate import migrate
from cell.store.transactions import pgbench_post_sql
from control_plane.devstack import EmbeddedPostgres, _pg_bin, free_port, remove_tree
from loadtests import httpload
from loadtests.httpload import run_load

TENANT = "bench"


def account_uuid(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


async def seed_ledger(conn: asyncpg.Connection, tenant: str, name: str,
                      accounts: list[tuple[uuid.UUID, str, str]]) -> uuid.UUID:
    """A ledger and its USD accounts ((id, name, normal balance), each with its zero balances) written straight
    into the tables: large books in a moment, where the API would take minutes."""
    ledger_id = uuid.uuid4()
    await conn.execute("INSERT INTO ledgers (id, tenant_id, name) VALUES ($1, $2, $3)", ledger_id, tenant, name)
    await conn.copy_records_to_table(
        "ledger_accounts", records=[(a, tenant, ledger_id, n, normal, "USD", 2) for a, n, normal in accounts],
        columns=["id", "tenant_id", "ledger_id", "name", "normal_balance", "currency", "currency_exponent"])
    await conn.copy_records_to_table("account_balances", records=[(a, tenant) for a, _, _ in accounts],
                                     columns=["account_id", "tenant_id"])
    return ledger_id


async def seed_books(url: str, tenant: str, description: str, ledger: str,
                     accounts: list[tuple[uuid.UUID, str, str]]) -> tuple[str, str]:
    """A benchmark's books in a fresh database: migrated, the tenant and its key, one ledger with `accounts`
    (seed_ledger), statistics gathered. Returns (ledger id, API key secret)."""
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        await create_tenant(conn, tenant, description)
        _, secret = await create_api_key(conn, tenant)
        ledger_id = await seed_ledger(conn, tenant, ledger, accounts)
        await conn.execute("ANALYZE")
        return str(ledger_id), secret
    finally:
        await conn.close()


async def setup_books(url: str, accounts: int) -> tuple[str, str]:
    """A tenant, its key, one ledger and `accounts` accounts with predictable ids (for pgbench)."""
    return await seed_books(url, TENANT, "benchmark", "bench", [
        (uuid.UUID(account_uuid(i)), f"acct {i}", "credit" if i % 2 else "debit") for i in range(1, accounts + 1)])


def pgbench_run(pg: EmbeddedPostgres, dbname: str, script_text: str, clients: int, duration_s: float,
                workdir: Path) -> dict:
    """Run one pgbench script for duration_s; transactions/s and average latency."""
    script = workdir / f"script-{uuid.uuid4().hex[:8]}.sql"
    script.write_text(script_text)
    out = subprocess.run([_pg_bin("pgbench"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "-n",
                          "-c", str(clients), "-j", "2", "-T", str(int(duration_s)), "-f", str(script), dbname],
                         capture_output=True, text=True, check=True).stdout
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
    latency = re.search(r"latency average = ([\d.]+) ms", out)
    return {"per_s": tps, "avg_ms": float(latency.group(1)) if latency else float("nan")}


def posting_sql(ledger_id: str, debit: str, credit: str, apply: str, tenant: str = TENANT) -> str:
    """One ledger_post call of a 2-entry posted transaction; `apply` is the SQL array of accounts applied now."""
    return pgbench_post_sql(tenant, ledger_id, debit, credit, apply)


def pgbench_account(var: str) -> str:
    return f"('00000000-0000-4000-8000-' || lpad(:{var}::text, 12, '0'))::uuid"


def pgbench_floor(pg: EmbeddedPostgres, dbname: str, ledger_id: str, accounts: int, clients: int,
                  duration_s: float, workdir: Path) -> dict:
    """The same posting (2 entries, both accounts applied, posted) as one SQL call per transaction."""
    a, b = pgbench_account("a"), pgbench_account("b")
    script = (f"\\set a random(1, {accounts})\n\\set b random(1, {accounts})\n"
              + posting_sql(ledger_id, a, b, f"ARRAY[{a}, {b}]"))
    return pgbench_run(pg, dbname, script, clients, duration_s, workdir)


def wait_ready(port: int, proc: subprocess.Popen, stop, failure: str, wait_s_max: float = 30) -> None:
    """Until the cell on `port` answers /readyz with 200; if its process `proc` exits or wait_s_max passes first,
    `stop()` it and raise RuntimeError(failure)."""
    deadline = time.monotonic() + wait_s_max
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop()
            raise RuntimeError(failure)
        time.sleep(0.1)


class CellProcess:
    """One cell server process under the chosen ASGI server."""

    def __init__(self, server: str, database_url: str, mode: str = "sync", env: dict | None = None) -> None:
        self.port = free_port()
        env = {**os.environ, "CELL_DATABASE_URL": database_url, "CELL_PORT": str(self.port),
               "CELL_POSTING_MODE": mode, "CELL_DB_POOL_MAX": "12", "CELL_NAME": f"bench-{server}", **(env or {})}
        if server == "uvicorn":
            cmd = [sys.executable, "-m", "cell"]
        else:
            cmd = [sys.executable, "-m", "granian", "--interface", "asgi", "--loop", "uvloop", "--host", "127.0.0.1",
                   "--port", str(self.port), "--no-ws", "--log-level", "warning", "cell.asgi:app"]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_ready(self.port, self.proc, self.stop, f"the cell under {server} did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def requests_for(ledger_id: str, accounts: int) -> dict:
    def write():
        a, b = random.sample(range(1, accounts + 1), 2)
        body = json.dumps({"ledger_id": ledger_id, "status": "posted", "ledger_entries": [
            {"ledger_account_id": account_uuid(a), "direction": "debit", "amount": 100},
            {"ledger_account_id": account_uuid(b), "direction": "credit", "amount": 100}]}).encode()
        return "POST", "/api/ledger_transactions", body

    def read():
        return "GET", f"/api/ledger_accounts/{account_uuid(random.randint(1, accounts))}", b""

    return {"write": write, "read": read}


def fmt(row: dict) -> str:
    return (f"{row['per_s']:9.0f}/s  p50 {row.get('p50_ms', float('nan')):6.1f} ms  "
            f"p99 {row.get('p99_ms', float('nan')):6.1f} ms  statuses {row.get('statuses', '-')}")


async def cell_benchmark(args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    pg = EmbeddedPostgres(workdir / "pg").start()  # fsync on: commits cost what they cost in production
    results: dict = {}
    try:
        url = pg.create_database("bench")
        ledger_id, secret = await setup_books(url, args.accounts)
        print(f"# cell benchmark: {args.duration:.0f}s per phase, {args.concurrency} connections, "
              f"{args.accounts} accounts, PostgreSQL {pg.port}, fsync on")
        results["floor"] = pgbench_floor(pg, "bench", ledger_id, args.accounts, args.concurrency, args.duration,
                                         workdir)
        print(f"floor  pgbench ledger_post()      {results['floor']['per_s']:9.0f}/s  "
              f"avg {results['floor']['avg_ms']:.1f} ms")
        make = requests_for(ledger_id, args.accounts)
        for server in args.servers:
            cell = CellProcess(server, url)
            try:
                writes = await run_load("127.0.0.1", cell.port, (TENANT, secret), duration_s=args.duration,
                                        workers=[("write", args.concurrency)], make_request=make)
                w = writes["write"].summary(args.duration)
                mixed = await run_load("127.0.0.1", cell.port, (TENANT, secret), duration_s=args.duration,
                                       workers=[("write", max(1, args.concurrency // 4)),
                                                ("read", args.concurrency - max(1, args.concurrency // 4))],
                                       make_request=make)
                mw, mr = mixed["write"].summary(args.duration), mixed["read"].summary(args.duration)
            finally:
                cell.stop()
            results[server] = {"writes": w, "mixed_writes": mw, "mixed_reads": mr}
            print(f"{server:8s} POST ledger_transactions {fmt(w)}")
            print(f"{server:8s} mix 1:3  writes           {fmt(mw)}")
            print(f"{server:8s} mix 1:3  balance reads    {fmt(mr)}")
        print("\n# ratios (same run)")
        for server in args.servers:
            print(f"{server}: API writes / pgbench floor = {results[server]['writes']['per_s'] / results['floor']['per_s']:.2f}")
        if len(args.servers) == 2:
            a, b = args.servers
            print(f"{b} / {a} writes = {results[b]['writes']['per_s'] / results[a]['writes']['per_s']:.2f}, "
                  f"mixed reads = {results[b]['mixed_reads']['per_s'] / results[a]['mixed_reads']['per_s']:.2f}")
    finally:
        pg.stop()
        remove_tree(workdir)
    return results


# The benchmarks beside the cell's own: name -> module with `async def run(duration_s, concurrency) -> dict`.
# One line each; `--only` picks by name.
BENCHMARKS = {
    "hot_account": "loadtests.hot_account",
    "async_path": "loadtests.async_path",
    "router": "loadtests.router_overhead",
    "audit": "loadtests.bench_audit",
    "categories": "loadtests.bench_categories",
    "bulk": "loadtests.bench_bulk",
    "moves": "loadtests.bench_moves",
    "stack_cpu": "loadtests.stack_cpu",
    "settlements": "loadtests.settlements",
    "events": "loadtests.bench_events",
    "rls": "loadtests.bench_rls",
    "dbtier": "loadtests.bench_dbtier",
}


async def optional(module: str, args) -> dict | None:
    """Benchmarks owned by other parts of the platform, run when present."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    print(f"\n# {module}")
    return await mod.run(duration_s=args.duration, concurrency=args.concurrency)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured phase")
    parser.add_argument("--concurrency", type=int, default=16, help="connections per phase")
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--servers", default="uvicorn,granian", help="ASGI servers to compare")
    parser.add_argument("--only", default=",".join(["cell", *BENCHMARKS]), help="which benchmarks to run")
    args = parser.parse_args()
    args.servers = [s for s in args.servers.split(",") if s]
    only = set(args.only.split(","))
    results = {}
    if "cell" in only:
        results["cell"] = await cell_benchmark(args)
    for name, module in BENCHMARKS.items():
        if name in only:
            results[name] = await optional(module, args)
    out = Path(".ledger") / "bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nfull results: {out}")


if __name__ == "__main__":
    httpload.run(main())
