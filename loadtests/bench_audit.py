"""The audit-chain benchmark: posting throughput with the sealer on and off side by side, and the unsealed tail.

Three variants of the same books, in interleaved rounds of one run: `none` (the audit columns and their index
dropped: the ledger as it was), `off` (the schema as it is, nobody sealing) and `on` (the workers' sealer thread
running every second in a process of its own, as in `python -m worker`, anchors published to a directory). Each
at the database tier (pgbench, one ledger_post call per posting: where the sealer's cost shows most) and, for
off/on, through the cell's HTTP API. While sealing is on, the unsealed tail (age of the oldest version not sealed
yet) is sampled 4 times a second. Prints the ratios; the goal is on/off >= 0.95 and a tail of a few seconds.

    python -m loadtests.bench_audit --duration 10 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from cell.store import audit
from cell.store.verify import verify
from control_plane.devstack import EmbeddedPostgres, remove_tree
from loadtests.bench import (
    TENANT,
    CellProcess,
    pgbench_floor,
    requests_for,
    setup_books,
)
from loadtests import httpload
from loadtests.httpload import run_load

ACCOUNTS = 1000
TAIL_SAMPLE_S = 0.25
CATCH_UP_S_MAX = 60


# The worker's sealer thread (worker/app.py start_sealer), alone in a process of its own as in a worker.
SEALER = "import time; from worker.app import start_sealer; from worker.settings import load_settings; " \
         "start_sealer(load_settings()); time.sleep(86400)"


class SealerRun:
    """What one sealing phase measured: the tail samples, and the CPU the sealer used (its process and its
    database sessions), which on a shared machine says more than a throughput difference."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.cpu_s = 0.0


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (those that ended count nothing)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def sealing(url: str, anchor_dir: Path):
    """The sealer running as the workers run it (its own process, every second, anchors to a directory); yields
    a SealerRun filled while the block runs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WORKER_", "LEDGER_"))}
    env.update({"WORKER_CELL_NAME": "bench", "WORKER_DATABASE_URL": url, "WORKER_AUDIT_ANCHOR_DIR": str(anchor_dir)})
    sealer = await asyncio.create_subprocess_exec(sys.executable, "-c", SEALER, env=env, start_new_session=True,
                                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run, stop = SealerRun(), asyncio.Event()
    conn = await asyncpg.connect(url)
    try:
        others = set(await _sessions(conn))
        await _sealer_caught_up(conn, sealer)
        # the sealer's database sessions: those opened since it started, but pgbench's
        pids = [sealer.pid] + [pid for pid in await _sessions(conn) if pid not in others]

        async def sample_loop() -> None:
            while not stop.is_set():
                run.samples.append(await audit.unsealed_age_s(conn))
                await asyncio.sleep(TAIL_SAMPLE_S)

        started = _cpu_s(pids)
        task = asyncio.create_task(sample_loop())
        try:
            yield run
        finally:
            run.cpu_s = _cpu_s(pids) - started
            stop.set()
            await task
    finally:
        await conn.close()
        sealer.terminate()
        await sealer.wait()


async def _sessions(conn: asyncpg.Connection) -> list[int]:
    return [r["pid"] for r in await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND application_name <> 'pgbench'")]


async def _sealer_caught_up(conn: asyncpg.Connection, sealer: asyncio.subprocess.Process) -> None:
    """Wait (untimed) until the sealer process runs and has sealed what the phase before left: its start-up
    (imports) and that backlog are not part of what the phase measures."""
    deadline = time.monotonic() + CATCH_UP_S_MAX
    while await audit.unsealed_age_s(conn) > 0:
        if sealer.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError("the sealer process does not seal")
        await asyncio.sleep(0.1)


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


async def measured(variants: dict, rounds: int, duration_s: float, url: str, anchor_dir: Path) -> dict:
    """Each round runs every variant once, the order rotating (drift and order hit them alike); a sealing-on
    phase starts once the sealer process has sealed what the phase before left (untimed), so the tail measured is
    its own. {variant: row}."""
    phases: dict[str, list] = {name: [] for name in variants}
    tails: list[float] = []
    cpu_s = 0.0
    names = list(variants)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:  # each variant first in turn
            phase, sealed = variants[name]
            if sealed:
                async with sealing(url, anchor_dir) as run:
                    phases[name].append(await phase())
                tails += run.samples
                cpu_s += run.cpu_s
            else:
                phases[name].append(await phase())
    rows = {name: combine(p) for name, p in phases.items()}
    postings = sum(p["per_s"] for p in phases["on"]) * duration_s
    rows["on"].update(tail(tails), caught_up_s=await caught_up_s(url), sealer_cpu_s=cpu_s,
                      sealer_cpu_us_per_posting=cpu_s / postings * 1e6 if postings else float("nan"),
                      sealer_core_share=cpu_s / (rounds * duration_s), **await chain_checks(url))
    return rows


async def run(duration_s: float = 10.0, concurrency: int = 16, rounds: int = 2, **_ignored) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="ledger-audit-"))
    pg = EmbeddedPostgres(workdir / "pg").start()  # fsync on: commits cost what they cost in production
    results: dict = {"duration_s": duration_s, "concurrency": concurrency, "rounds": rounds}
    try:
        print(f"# audit chain: sealing off vs on, {rounds} rounds of {duration_s:.0f}s per variant, "
              f"{concurrency} connections, fsync on")
        _, plain_ledger, _ = await books(pg, "audit_db_none", audited=False)
        url, ledger_id, _ = await books(pg, "audit_db", audited=True)

        def pgbench(dbname: str, ledger: str):
            return lambda: asyncio.to_thread(pgbench_floor, pg, dbname, ledger, ACCOUNTS, concurrency, duration_s,
                                             workdir)

        db = await measured({"none": (pgbench("audit_db_none", plain_ledger), False),
                             "off": (pgbench("audit_db", ledger_id), False),
                             "on": (pgbench("audit_db", ledger_id), True)}, rounds, duration_s,
                            url, workdir / "anchors")
        for variant in ("none", "off", "on"):
            row = db[variant]
            print(f"database tier  {variant:4s} {row['per_s']:8.0f} postings/s  avg {row['avg_ms']:.1f} ms"
                  f"  (rounds {_rounds(row)})")
        results["database_tier"] = db

        url, ledger_id, secret = await books(pg, "audit_api", audited=True)
        cell = CellProcess("uvicorn", url)
        try:
            make = requests_for(ledger_id, ACCOUNTS)

            async def load() -> dict:
                stats = await run_load("127.0.0.1", cell.port, (TENANT, secret), duration_s=duration_s,
                                       workers=[("write", concurrency)], make_request=make)
                return stats["write"].summary(duration_s)

            api = await measured({"off": (load, False), "on": (load, True)}, rounds, duration_s,
                            url, workdir / "anchors")
        finally:
            cell.stop()
        for variant in ("off", "on"):
            row = api[variant]
            print(f"HTTP API       {variant:4s} {row['per_s']:8.0f} postings/s  p50 {row['p50_ms']:.1f} ms"
                  f"  p99 {row['p99_ms']:.1f} ms  (rounds {_rounds(row)})")
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
            print(f"# sealer CPU ({where}): {row['sealer_cpu_us_per_posting']:.0f} us per posting, "
                  f"{row['sealer_core_share'] * 100:.1f}% of one core (process and database sessions)")
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
    httpload.run(run(duration_s=args.duration, concurrency=args.concurrency, rounds=args.rounds))


if __name__ == "__main__":
    main()
