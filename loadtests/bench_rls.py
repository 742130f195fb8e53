"""The row-level security benchmark: the cell's posting and read throughput with RLS on and off, side by side.

One database, the same books; `on` is the schema as migrated (0110: every tenant table FORCE ROW LEVEL SECURITY,
the cell's role held to the tenant its connection acts for), `off` the same tables with row-level security
disabled (ALTER TABLE ... NO FORCE / DISABLE ROW LEVEL SECURITY). Measured in interleaved rounds (on, off, on,
off, ...), each round: at the database tier (pgbench as ledger_app acting for the tenant: a ledger_post per
posting, a balance read without the tenant condition: the policies' own cost, least noisy), then through the
HTTP API: writes only, a 1:3 write:read mix, and two tenants writing at once (their requests share the pool's
connections, so connections switch tenant: one `set_config` round trip each switch, paid in both variants, since
the cell sets the acting tenant either way). Prints the medians' ratios on/off.

    python -m loadtests.bench_rls --duration 10 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import uuid
from collections import Counter
from pathlib import Path

import asyncpg

from cell.service.tenants import create_api_key, create_tenant
from control_plane.devstack import EmbeddedPostgres, remove_tree
from loadtests.bench import (
    TENANT,
    CellProcess,
    account_uuid,
    fmt,
    pgbench_account,
    pgbench_run,
    posting_sql,
    requests_for,
    seed_ledger,
    setup_books,
)
from loadtests import httpload
from loadtests.httpload import run_load

ACCOUNTS = 1000
ROUNDS = 3
OTHER = "bench-other"
OTHER_OFFSET = 1_000_000  # the second tenant's account ids: account_uuid(OTHER_OFFSET + i)


async def setup_other_tenant(url: str) -> tuple[str, str]:
    """A second tenant with its own ledger and ACCOUNTS accounts."""
    conn = await asyncpg.connect(url)
    try:
        await create_tenant(conn, OTHER, "benchmark")
        _, secret = await create_api_key(conn, OTHER)
        ledger_id = await seed_ledger(conn, OTHER, "bench", [
            (uuid.UUID(account_uuid(OTHER_OFFSET + i)), "a", "debit") for i in range(1, ACCOUNTS + 1)])
        await conn.execute("ANALYZE")
        return str(ledger_id), secret
    finally:
        await conn.close()


def other_requests(ledger_id: str) -> dict:
    def write():
        a, b = random.sample(range(1, ACCOUNTS + 1), 2)
        body = json.dumps({"ledger_id": ledger_id, "status": "posted", "ledger_entries": [
            {"ledger_account_id": account_uuid(OTHER_OFFSET + a), "direction": "debit", "amount": 100},
            {"ledger_account_id": account_uuid(OTHER_OFFSET + b), "direction": "credit", "amount": 100}]}).encode()
        return "POST", "/api/ledger_transactions", body

    return {"write": write}


async def set_rls(url: str, on: bool) -> int:
    """Turn row-level security on or off on every table 0110 put it on; returns how many tables."""
    conn = await asyncpg.connect(url)
    try:
        tables = [r["tablename"] for r in await conn.fetch(
            "SELECT DISTINCT tablename FROM pg_policies WHERE schemaname = 'public' AND policyname = 'tenant_isolation'")]
        for t in tables:
            if on:
                await conn.execute(f'ALTER TABLE "{t}" ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY')
            else:
                await conn.execute(f'ALTER TABLE "{t}" NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY')
        return len(tables)
    finally:
        await conn.close()


def database_tier(pg: EmbeddedPostgres, ledger_id: str, duration_s: float, concurrency: int, workdir: Path) -> dict:
    """pgbench as the cell's role acting for the tenant (one set_config per transaction, in both variants): one
    ledger_post per posting, and an account's balance read without the tenant condition: the policy's own cost."""
    act = f"SELECT set_config('role', 'ledger_app', false), set_config('ledger.tenant', '{TENANT}', false);\n"
    a, b = pgbench_account("a"), pgbench_account("b")
    draw = f"\\set a random(1, {ACCOUNTS})\n\\set b random(1, {ACCOUNTS})\n"
    post = draw + act + posting_sql(ledger_id, a, b, f"ARRAY[{a}, {b}]")
    read = draw + act + f"SELECT * FROM account_balances WHERE account_id = {a};\n"
    return {"db_posts": pgbench_run(pg, "bench_rls", post, concurrency, duration_s, workdir),
            "db_reads": pgbench_run(pg, "bench_rls", read, concurrency, duration_s, workdir)}


async def one_round(url: str, books: dict, duration_s: float, concurrency: int) -> dict:
    (ledger_id, secret), (other_ledger, other_secret) = books[TENANT], books[OTHER]
    make, other = requests_for(ledger_id, ACCOUNTS), other_requests(other_ledger)
    cell = CellProcess("uvicorn", url)
    try:
        writes = await run_load("127.0.0.1", cell.port, (TENANT, secret), duration_s=duration_s,
                                workers=[("write", concurrency)], make_request=make)
        n_writes = max(1, concurrency // 4)
        mixed = await run_load("127.0.0.1", cell.port, (TENANT, secret), duration_s=duration_s,
                               workers=[("write", n_writes), ("read", concurrency - n_writes)], make_request=make)
        half = max(1, concurrency // 2)
        first, second = await asyncio.gather(
            run_load("127.0.0.1", cell.port, (TENANT, secret), duration_s=duration_s, workers=[("write", half)],
                     make_request=make),
            run_load("127.0.0.1", cell.port, (OTHER, other_secret), duration_s=duration_s,
                     workers=[("write", half)], make_request=other))
    finally:
        cell.stop()
    two = first["write"].summary(duration_s)
    two_other = second["write"].summary(duration_s)
    return {"writes": writes["write"].summary(duration_s), "mixed_writes": mixed["write"].summary(duration_s),
            "mixed_reads": mixed["read"].summary(duration_s),
            "two_tenant_writes": {"per_s": two["per_s"] + two_other["per_s"],
                                  "statuses": dict(Counter(two["statuses"]) + Counter(two_other["statuses"]))}}


async def run(duration_s: float = 10.0, concurrency: int = 16) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="ledger-bench-rls-"))
    pg = EmbeddedPostgres(workdir / "pg").start()  # fsync on, as the cell benchmark
    rounds: dict[str, list[dict]] = {"on": [], "off": []}
    try:
        url = pg.create_database("bench_rls")
        books = {TENANT: await setup_books(url, ACCOUNTS), OTHER: await setup_other_tenant(url)}
        tables = await set_rls(url, True)
        print(f"# row-level security on {tables} tables: {duration_s:.0f}s per phase, {concurrency} connections, "
              f"{ACCOUNTS} accounts per tenant, {ROUNDS} interleaved rounds")
        for _ in range(ROUNDS):
            for variant in ("on", "off"):
                await set_rls(url, variant == "on")
                result = database_tier(pg, books[TENANT][0], duration_s, concurrency, workdir)
                result |= await one_round(url, books, duration_s, concurrency)
                rounds[variant].append(result)
                for phase, row in result.items():
                    print(f"rls {variant:3s} {phase:18s} {fmt(row)}")
        await set_rls(url, True)
    finally:
        pg.stop()
        remove_tree(workdir)
    medians = {v: {phase: statistics.median(r[phase]["per_s"] for r in rs) for phase in rs[0]}
               for v, rs in rounds.items()}
    ratios = {phase: medians["on"][phase] / medians["off"][phase] for phase in medians["on"]}
    print("\n# ratios rls on / off (medians of the rounds)")
    for phase, ratio in ratios.items():
        print(f"{phase:18s} on {medians['on'][phase]:8.0f}/s  off {medians['off'][phase]:8.0f}/s  "
              f"on/off {ratio:.3f}")
    return {"rounds": rounds, "medians": medians, "ratios": ratios}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    httpload.run(run(args.duration, args.concurrency))
