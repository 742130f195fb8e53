"""What events cost a posting: POST /api/ledger_transactions with events on and off, side by side in one run.

Events off (CELL_EVENTS_ENABLED=false, a setting that exists for this measurement only) writes no event row;
on, every posting writes one (`ledger_transaction.created`, its data rendered by the service and sent with the
posting, one round trip still) and the API process positions them every 0.2 s. Measured in sync mode (every
balance applied in the posting) and hybrid mode (effects queued: the cheapest posting, where an extra row
weighs most), alternating off, on, on, off twice (short phases, medians) so that a drifting machine favours
neither. Goal: on / off at least 0.90. On shared cores throughput swings with the neighbours' load, so each
phase also reports the CPU the cell process and PostgreSQL spent per posting (from /proc): off / on of that is
the throughput ratio the same machine would show without neighbours.

    python -m loadtests.bench_events --duration 20 --concurrency 16
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import asyncpg

from control_plane.devstack import EmbeddedPostgres, remove_tree
from loadtests.bench import TENANT, CellProcess, fmt, requests_for, setup_books
from loadtests import httpload
from loadtests.httpload import run_load

ACCOUNTS = 1000
RATIO_GOAL = 0.90
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """CPU seconds of a process, its reaped children and its live children (PostgreSQL's backends, the cell's
    pool): a difference of two readings is what the process tree spent in between."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid:
            total += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
        elif int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])
    return total / _TICK


async def _phase(url: str, pg_pid: int, mode: str, events: bool, secret: str, ledger_id: str, duration_s: float,
                 concurrency: int) -> dict:
    cell = CellProcess("uvicorn", url, mode, env={"CELL_EVENTS_ENABLED": "true" if events else "false"})
    try:
        make = requests_for(ledger_id, ACCOUNTS)
        await run_load("127.0.0.1", cell.port, (TENANT, secret), duration_s=1.0, workers=[("write", concurrency)],
                       make_request=make)  # warm-up: connections, caches
        before = cpu_s(cell.proc.pid) + cpu_s(pg_pid)
        stats = await run_load("127.0.0.1", cell.port, (TENANT, secret), duration_s=duration_s,
                               workers=[("write", concurrency)], make_request=make)
        spent = cpu_s(cell.proc.pid) + cpu_s(pg_pid) - before
        summary = stats["write"].summary(duration_s)
        return {**summary, "cpu_us": spent / max(1, summary["requests"]) * 1e6}
    finally:
        cell.stop()


def _median(rows: list[dict]) -> dict:
    return {**{k: statistics.median(r[k] for r in rows) for k in ("per_s", "p50_ms", "p99_ms", "cpu_us")},
            "statuses": rows[0]["statuses"]}


async def run(duration_s: float = 10.0, concurrency: int = 16, **_ignored) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="ledger-bench-events-"))
    pg = EmbeddedPostgres(workdir / "pg").start()  # fsync on: commits cost what they cost in production
    results: dict = {"duration_s": duration_s, "concurrency": concurrency}
    try:
        print(f"# events: POST ledger_transactions with events off and on, {duration_s:.0f}s per phase (8 phases "
              f"of a quarter of that per mode), {concurrency} connections, fsync on")
        for mode in ("sync", "hybrid"):
            url = pg.create_database(f"events_{mode}")
            ledger_id, secret = await setup_books(url, ACCOUNTS)
            phases: dict[bool, list[dict]] = {False: [], True: []}
            for events in (False, True, True, False) * 2:
                phases[events].append(await _phase(url, pg.pid, mode, events, secret, ledger_id, duration_s / 4,
                                                   concurrency))
            off, on = _median(phases[False]), _median(phases[True])
            conn = await asyncpg.connect(url)
            try:
                written = await conn.fetchval("SELECT count(*) FROM events")
            finally:
                await conn.close()
            ratio, cpu_ratio = on["per_s"] / off["per_s"], off["cpu_us"] / on["cpu_us"]
            results[mode] = {"off": off, "on": on, "ratio": ratio, "cpu_ratio": cpu_ratio, "events_written": written}
            print(f"{mode:6s} events off  {fmt(off)}  CPU {off['cpu_us']:.0f} us/posting")
            print(f"{mode:6s} events on   {fmt(on)}  CPU {on['cpu_us']:.0f} us/posting ({written} events written)")
        print("\n# ratios (same run)")
        for mode in ("sync", "hybrid"):
            ratio, cpu_ratio = results[mode]["ratio"], results[mode]["cpu_ratio"]
            print(f"{mode}: writes/s events on / off = {ratio:.3f}; CPU per posting off / on = {cpu_ratio:.3f} "
                  f"(goal >= {RATIO_GOAL}: {'met' if min(ratio, cpu_ratio) >= RATIO_GOAL else 'NOT met'})")
    finally:
        pg.stop()
        remove_tree(workdir)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per mode and setting (two halves)")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    httpload.run(run(args.duration, args.concurrency))
