"""The audit-chain benchmark: posting throughput with the sealer on and off side by side, and the unsealed tail.

Three variants of the same books, measured in interleaved rounds of one run: `none` (the audit column and its index dropped: the
ledger as it was), `off` (the schema as it is, nobody sealing) and `on` (the workers' sealer running every
second, as `python -m worker` runs it, anchors published to a directory). Each at the database tier (pgbench,
one ledger_post call per posting: where the sealer's cost shows most) and, for off/on, through the cell's HTTP
API. While sealing is on, the unsealed tail (age of the oldest version not sealed yet) is sampled 4 times a
second. Prints the ratios; the goal is on/off >= 0.95 and a tail of a few seconds at most.

    python -m loadtests.bench_audit --duration 10 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg

from cell.store import audit
from cell.store.db import create_pool
from cell.store.verify import verify
from control_plane.devstack import EmbeddedPostgres, remove_tree
from loadtests.bench import TENANT, CellProcess, pgbench_floor, requests_for, setup_books
from loadtests.httpload import run_load
from worker.sealer import Sealer
from worker.settings import load_settings

ACCOUNTS = 1000
TAIL_SAMPLE_S = 0.25
CATCH_UP_S_MAX = 60


@contextlib.asynccontextmanager
async def sealing(url: str, anchor_dir: Path):
    """The worker's sealer loop (worker/app.py start_sealer) as a task; yields the tail samples (seconds)."""
    settings = load_settings({}, cell_name="bench", database_url=url, audit_anchor_dir=str(anchor_dir))
    pool = await create_pool(url, min_size=1, max_size=2, role=settings.db_role)
    sealer, stop, samples = Sealer(settings), asyncio.Event(), []

    async def seal_loop() -> None:
        while not stop.is_set():
            await sealer.run(pool)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.audit_seal_every_s)

    async def sample_loop() -> None:
        async with pool.acquire() as conn:
            while not stop.is_set():
                samples.append(await audit.unsealed_age_s(conn))
                await asyncio.sleep(TAIL_SAMPLE_S)

    tasks = [asyncio.create_task(seal_loop()), asyncio.create_task(sample_loop())]
    try:
        yield samples
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await pool.close()


async def caught_up_s(url: str) -> float | None:
    """After the load: seconds until everything is sealed (None: not within CATCH_UP_S_MAX)."""
    conn = await asyncpg.connect(url)
    started = time.monotonic()
    try:
        while time.monotonic() - started < CATCH_UP_S_MAX:
            await audit.seal_until_caught_up(conn)
            if await audit.unsealed_age_s(conn) == 0:
                return time.monotonic() - started
            await asyncio.sleep(0.1)
        return None
    finally:
        await conn.close()


def tail(samples: list[float]) -> dict:
    if not samples:
        return {"tail_p50_s": float("nan"), "tail_p99_s": float("nan"), "tail_max_s": float("nan")}
    ordered = sorted(samples)
    return {"tail_p50_s": statistics.median(ordered), "tail_p99_s": ordered[int(0.99 * (len(ordered) - 1))],
            "tail_max_s": ordered[-1], "tail_samples": len(ordered)}


async def books(pg: EmbeddedPostgres, name: str, audited: bool) -> tuple[str, str, str]:
    """The benchmark's books; not audited: the audit columns (and their index) dropped, as before the chain."""
    url = pg.create_database(name)
    ledger_id, secret = await setup_books(url, ACCOUNTS)
    if not audited:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("ALTER TABLE ledger_transaction_versions DROP COLUMN audit_txid; "
                               "ALTER TABLE ledger_accounts DROP COLUMN audit_txid")
        finally:
            await conn.close()
    return url, ledger_id, secret


async def chain_checks(url: str) -> dict:
    conn = await asyncpg.connect(url)
    try:
        report = await audit.verify_chain(conn, TENANT)
        return {"links": report.links, "chain_findings": report.findings_total,
                "violations": await verify(conn, TENANT)}
    finally:
        await conn.close()


def combine(phases: list[dict]) -> dict:
    """Rounds of one variant as one row: postings per second over all of them; latencies of each round."""
    row = {"per_s": statistics.fmean(p["per_s"] for p in phases), "rounds": phases}
    for key in ("avg_ms", "p50_ms", "p99_ms"):
        if key in phases[0]:
            row[key] = statistics.fmean(p[key] for p in phases)
    return row


async def measured(variants: dict, rounds: int, catch_up_url: str) -> dict:
    """Each round runs every variant once, in order (drift hits them alike); before a sealing-on phase, what the
    off phase left is sealed (untimed), so that the tail measured is the sealer's own. {variant: row}."""
    phases: dict[str, list] = {name: [] for name in variants}
    tails: list[float] = []
    for _ in range(rounds):
        for name, (phase, sealed) in variants.items():
            if sealed:
                await caught_up_s(catch_up_url)
                async with sealing(catch_up_url, Path(tempfile.mkdtemp(prefix="anchors-"))) as samples:
                    phases[name].append(await phase())
                tails += samples
            else:
                phases[name].append(await phase())
    rows = {name: combine(p) for name, p in phases.items()}
    rows["on"].update(tail(tails), caught_up_s=await caught_up_s(catch_up_url), **await chain_checks(catch_up_url))
    return rows


async def run(duration_s: float = 10.0, concurrency: int = 16, rounds: int = 2, **_ignored) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="ledger-audit-"))
    pg = EmbeddedPostgres(workdir / "pg").start()  # fsync on: commits cost what they cost in production
    results: dict = {"duration_s": duration_s, "concurrency": concurrency, "rounds": rounds}
    try:
        print(f"# audit chain: sealing off vs on, {rounds} rounds of {duration_s:.0f}s per variant, "
              f"{concurrency} connections, fsync on")
        plain_url, plain_ledger, _ = await books(pg, "audit_db_none", audited=False)
        url, ledger_id, _ = await books(pg, "audit_db", audited=True)

        def pgbench(dbname: str, ledger: str):
            return lambda: asyncio.to_thread(pgbench_floor, pg, dbname, ledger, ACCOUNTS, concurrency, duration_s,
                                             workdir)

        db = await measured({"none": (pgbench("audit_db_none", plain_ledger), False),
                             "off": (pgbench("audit_db", ledger_id), False),
                             "on": (pgbench("audit_db", ledger_id), True)}, rounds, url)
        for variant in ("none", "off", "on"):
            print(f"database tier  {variant:4s} {db[variant]['per_s']:8.0f} postings/s  avg {db[variant]['avg_ms']:.1f} ms"
                  f"  (rounds {_rounds(db[variant])})")
        results["database_tier"] = db

        url, ledger_id, secret = await books(pg, "audit_api", audited=True)
        cell = CellProcess("uvicorn", url)
        try:
            make = requests_for(ledger_id, ACCOUNTS)

            async def load() -> dict:
                stats = await run_load("127.0.0.1", cell.port, (TENANT, secret), duration_s=duration_s,
                                       workers=[("write", concurrency)], make_request=make)
                return stats["write"].summary(duration_s)

            api = await measured({"off": (load, False), "on": (load, True)}, rounds, url)
        finally:
            cell.stop()
        for variant in ("off", "on"):
            print(f"HTTP API       {variant:4s} {api[variant]['per_s']:8.0f} postings/s  p50 {api[variant]['p50_ms']:.1f} ms"
                  f"  p99 {api[variant]['p99_ms']:.1f} ms  (rounds {_rounds(api[variant])})")
        results["api"] = api
        results["ratios"] = {"db_on_over_off": db["on"]["per_s"] / db["off"]["per_s"],
                             "db_off_over_none": db["off"]["per_s"] / db["none"]["per_s"],
                             "api_on_over_off": api["on"]["per_s"] / api["off"]["per_s"]}
        r = results["ratios"]
        print(f"# ratios (same run): sealing on/off {r['db_on_over_off']:.3f} (database tier), "
              f"{r['api_on_over_off']:.3f} (HTTP API); audit schema/none {r['db_off_over_none']:.3f} (database tier)")
        for where, row in (("database tier", db["on"]), ("HTTP API", api["on"])):
            print(f"# unsealed tail ({where}): p50 {row['tail_p50_s']:.2f}s  p99 {row['tail_p99_s']:.2f}s  "
                  f"max {row['tail_max_s']:.2f}s; all sealed {row['caught_up_s'] or float('nan'):.1f}s after the "
                  f"load; {row['links']} links verify: {row['chain_findings'] == 0 and not row['violations']}")
    finally:
        pg.stop()
        remove_tree(workdir)
    return results


def _rounds(row: dict) -> str:
    return ", ".join(f"{p['per_s']:.0f}" for p in row["rounds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per phase")
    parser.add_argument("--concurrency", type=int, default=16, help="client connections")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every variant, interleaved")
    args = parser.parse_args()
    asyncio.run(run(duration_s=args.duration, concurrency=args.concurrency, rounds=args.rounds))


if __name__ == "__main__":
    main()
