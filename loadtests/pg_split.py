"""PostgreSQL's CPU under Modern Treasury's mix, split by what each backend serves: balance reads, postings, the
workers' apply, the router and control plane, and the server's own background processes.

Starts stack_cpu's `make run` stack and mix (through the router). Over each window it takes the CPU time of every
PostgreSQL process from /proc and names each by pg_stat_activity: its backend_type (checkpointer, walwriter,
autovacuum ...) and, for a client backend, the stack process on the other end of its socket (cell, worker, router,
supervisor). A cell's pool serves reads and postings alike, so while the load runs pg_stat_activity is sampled
every SAMPLE_S: each cell or worker backend's CPU is shared between the statement kinds it was seen running on the
CPU (active, waiting for nothing: a commit waiting for its WAL flush is not burning CPU), in proportion. Prints CPU
ms per request by backend kind and by statement kind, the backends started during a window, and WAL per write
(records, bytes, full-page images, fsyncs); medians of the windows.

    python -m loadtests.pg_split --duration 10 --rounds 3 --concurrency 32 [--against ../an-earlier-worktree]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import Counter, defaultdict
from pathlib import Path

import asyncpg
import psutil

from loadtests import httpload
from loadtests.httpload import run_load
from loadtests.monitor import component
from loadtests.stack_cpu import (
    ROOT,
    MixedStack,
    alternating_windows,
    checkout_stacks,
    served,
)

SAMPLE_S = 0.02


def statement_kind(query: str) -> str:
    q = query.lstrip().lower()
    if "ledger_post(" in q:
        return "posting"
    if "unnest($2::uuid[]) as wanted" in q or "ledger_accounts_current(" in q or "fetch_account" in q or (
            "from ledger_accounts a join account_balances b" in q and "a.id = $2" in q):
        return "read"
    if q.startswith(("begin", "commit", "rollback")):
        return "begin/commit"
    if "set_config('ledger.tenant'" in q:
        return "set tenant"
    return "other: " + " ".join(q.split())[:60]


class Backends:
    """PostgreSQL's processes, each named by what it serves."""

    def __init__(self, database_url: str, postmaster: psutil.Process) -> None:
        self.url, self.postmaster = database_url, postmaster
        self.names: dict[int, str] = {}

    async def name_all(self, conn: asyncpg.Connection) -> None:
        rows = await conn.fetch("SELECT pid, backend_type, application_name, client_port FROM pg_stat_activity")
        owners = {}
        for c in psutil.net_connections(kind="tcp"):
            if c.laddr and c.pid:
                owners[c.laddr.port] = c.pid
        for r in rows:
            if r["backend_type"] != "client backend":
                self.names[r["pid"]] = "bg: " + r["backend_type"]
                continue
            owner = owners.get(r["client_port"])
            try:
                who = component(" ".join(psutil.Process(owner).cmdline())) if owner else "?"
            except psutil.Error:
                who = "?"
            self.names[r["pid"]] = f"{who} ({r['application_name'] or '-'})"
        self.names[self.postmaster.pid] = "bg: postmaster"

    def cpu(self) -> dict[int, tuple[float, float]]:
        """pid -> (user + system, system) CPU seconds."""
        out = {}
        for p in [self.postmaster, *self.postmaster.children()]:
            try:
                t = p.cpu_times()
                out[p.pid] = (t.user + t.system, t.system)
            except psutil.Error:
                continue
        return out


async def wal(conn: asyncpg.Connection) -> dict[str, float]:
    """The server's WAL counters: records, full-page images, bytes, fsyncs, new segments (each zero-filled: context
    init); and checkpoints."""
    row = await conn.fetchrow(
        "SELECT w.wal_records, w.wal_fpi, w.wal_bytes, "
        "(SELECT coalesce(sum(fsyncs), 0) FROM pg_stat_io WHERE object = 'wal') AS wal_fsyncs, "
        "(SELECT coalesce(sum(writes), 0) FROM pg_stat_io WHERE object = 'wal' AND context = 'init') "
        "AS wal_segments_created, "
        "(SELECT num_timed + num_requested FROM pg_stat_checkpointer) AS checkpoints FROM pg_stat_wal w")
    return {k: float(v) for k, v in row.items()}


async def sample(conn: asyncpg.Connection, until: float, seen: dict[int, Counter]) -> None:
    while time.monotonic() < until:
        for r in await conn.fetch("SELECT pid, query FROM pg_stat_activity WHERE state = 'active' "
                                  "AND wait_event IS NULL AND backend_type = 'client backend' AND pid <> pg_backend_pid()"):
            seen[r["pid"]][statement_kind(r["query"])] += 1
        await asyncio.sleep(SAMPLE_S)


async def window(s: MixedStack, duration_s: float, concurrency: int) -> dict:
    dev = s.proc.dev
    postmaster = s.proc.postmaster()
    conn = await asyncpg.connect(dev["control_plane_database_url"])
    try:
        b = Backends(dev["control_plane_database_url"], postmaster)
        await b.name_all(conn)
        before, wal_before = b.cpu(), await wal(conn)
        seen: dict[int, Counter] = defaultdict(Counter)
        started = time.monotonic()
        sampler = asyncio.create_task(sample(conn, started + duration_s, seen))
        stats = await run_load("127.0.0.1", s.stack.port, s.auth, duration_s=duration_s,
                               workers=[("mix", concurrency)], make_request=s.make)
        await sampler
        elapsed = time.monotonic() - started
        after, wal_after = b.cpu(), await wal(conn)
        await b.name_all(conn)
    finally:
        await conn.close()
    requests = served(stats["write"].summary(elapsed)) + served(stats["read"].summary(elapsed))
    by_kind: dict[str, float] = defaultdict(float)
    by_statement: dict[str, float] = defaultdict(float)
    system, born = 0.0, Counter()
    for pid, (seconds, sys_seconds) in after.items():
        spent = max(0.0, seconds - before.get(pid, (0.0, 0.0))[0])
        system += max(0.0, sys_seconds - before.get(pid, (0.0, 0.0))[1])
        name = b.names.get(pid, "? (gone or new)")
        if pid not in before:
            born[name] += 1
        by_kind[name] += spent
        who = name.split(" ", 1)[0]
        if who in ("cell", "worker"):
            kinds = seen.get(pid)
            total = sum(kinds.values()) if kinds else 0
            if not total:
                by_statement[f"{who}: unsampled"] += spent
            for k, n in (kinds or {}).items():
                by_statement[f"{who}: {k}"] += spent * n / total
    ms = lambda v: v * 1000 / max(1, requests)
    return {"requests": requests, "per_s": requests / elapsed,
            "writes_per_s": stats["write"].summary(elapsed)["per_s"],
            "reads_per_s": stats["read"].summary(elapsed)["per_s"],
            "pg_ms": ms(sum(by_kind.values())), "pg_system_ms": ms(system), "backends_born": dict(born),
            "by_kind": {k: ms(v) for k, v in by_kind.items()},
            "cell_statements": {k: ms(v) for k, v in by_statement.items()},
            "wal_per_write": {k: (wal_after[k] - wal_before[k]) / max(1, served(stats["write"].summary(elapsed)))
                              for k in wal_after}}


def _median(rows: list[dict], key: str) -> dict[str, float]:
    keys = {k for r in rows for k in r[key]}
    return dict(sorted(((k, statistics.median(r[key].get(k, 0.0) for r in rows)) for k in keys),
                       key=lambda kv: -kv[1]))


async def run(duration_s: float = 10.0, concurrency: int = 32, rounds: int = 3, against: str | None = None) -> dict:
    roots = {"this": ROOT, **({"against": Path(against).resolve()} if against else {})}
    with checkout_stacks(roots, "ledger-pg-split-", MixedStack) as stacks:
        rows = await alternating_windows(
            stacks, duration_s, concurrency, rounds, lambda stack: window(stack, duration_s, concurrency),
            lambda label, row: print(f"{label}: {row['writes_per_s']:.0f} w/s + {row['reads_per_s']:.0f} r/s; "
                                     f"PostgreSQL {row['pg_ms']:.3f} ms/request; backends started {row['backends_born']}",
                                     flush=True))
        out = {}
        for name, r in rows.items():
            out[name] = {"pg_ms": statistics.median(x["pg_ms"] for x in r),
                         "pg_system_ms": statistics.median(x["pg_system_ms"] for x in r),"by_kind": _median(r, "by_kind"),
                         "cell_statements": _median(r, "cell_statements"), "wal_per_write": _median(r, "wal_per_write")}
            print(f"{name}: PostgreSQL median {out[name]['pg_ms']:.3f} ms/request "
                  f"(of it in the kernel {out[name]['pg_system_ms']:.3f})")
            print("  by backend: " + ", ".join(f"{k} {v:.3f}" for k, v in out[name]["by_kind"].items() if v >= 0.0005))
            print("  cell and worker backends by statement: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in out[name]["cell_statements"].items() if v >= 0.0005))
            print("  WAL per write: " + ", ".join(f"{k} {v:.2f}" for k, v in out[name]["wal_per_write"].items()))
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against")
    args = parser.parse_args()
    httpload.run(run(args.duration, args.concurrency, args.rounds, args.against))


if __name__ == "__main__":
    main()
