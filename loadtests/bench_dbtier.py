"""The database tier's cost of one posting: `ledger_post` by pgbench, this checkout against a baseline commit.

One embedded PostgreSQL, two databases with the same books: `before` migrated by the store (cell/store) of the
baseline commit (BENCH_DBTIER_BASELINE, default the commit before the leaner posting path), `after` by this
checkout's. Measured in interleaved rounds (each round's order the previous one's reversed), medians of --rounds
(ROUNDS) and of the paired after / before ratios after a warm-up round
(not counted; then ANALYZE: tables with rows and statistics, as a cell's), each round:
  sync   the bench floor's call (loadtests.bench.pgbench_floor): a 2-entry posted transaction, both accounts
         applied now (ledger_apply, resulting balances in the answer);
  async  the same posting with no account applied now (its two effects queued: the mix's writes);
  mix    the mix's write as the cell sends it (loadtests.stack_cpu): a random account against one hot account,
         none applied now, with an Idempotency-Key, the version's snapshot and its ledger_transaction.created
         event (~2 kB) as the service renders them, and the first answer the key keeps (~1.9 kB): passed to
         ledger_post where it keeps it (0140), else stored by the statement the cell sent after the commit (one
         a posting here; the cell's group commit shared one among the answers arriving together);
  apply  the queued effects of `async` and `mix` folded in by the worker's call (ledger_apply_report,
         WORKER_GROUP accounts a call), effects/s (per call: per effect).
Per phase: transactions/s and the PostgreSQL server's CPU per call (every process of the server, from /proc:
the figure a loaded shared box does not skew as much as tps) and the WAL it wrote per call (rows and index
entries written, full-page images included).

    python -m loadtests.bench_dbtier --duration 10 --concurrency 16

With --serial ROUNDS: one client per database instead, the mix's write as the cell sends it (a prepared statement,
parameters bound), the sync postings (`sync`: the bench floor's call; `card`: a card authorization, one account applied
under an available_balance_amount lock; `locked`: the hot account applied under its lock_version) and then the
worker's apply of what they queued, the backend's own CPU (/proc/<pid>/schedstat) per posting and per applied effect,
rounds alternating, no ANALYZE (a cell's first minutes); medians and the median of the paired after / before ratios,
the figure a shared box's drifting load skews least:

    python -m loadtests.bench_dbtier --serial 40 --calls 500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

from control_plane.devstack import EmbeddedPostgres, _pg_bin, remove_tree
from loadtests import httpload
from loadtests.bench import (
    TENANT,
    account_uuid,
    pgbench_account,
    pgbench_run,
    posting_sql,
)

BASELINE = os.environ.get("BENCH_DBTIER_BASELINE", "28fba0a")
ACCOUNTS = 1000
ROUNDS = 3
WORKER_GROUP = 20
REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")

MIGRATE = """
import asyncio, importlib.util, sys
import asyncpg
spec = importlib.util.spec_from_file_location("baseline_migrate", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
async def main():
    conn = await asyncpg.connect(sys.argv[2])
    try:
        await mod.migrate(conn)
    finally:
        await conn.close()
asyncio.run(main())
"""


def migrate_from(store_dir: Path, url: str) -> None:
    """Migrate `url` with the migrate.py (and so the migrations and routines) of the store at `store_dir`."""
    subprocess.run([sys.executable, "-c", MIGRATE, str(store_dir / "migrate.py"), url], check=True)


def baseline_store(ref: str, workdir: Path) -> Path:
    """The baseline commit's cell/store, extracted under workdir."""
    target = workdir / "baseline"
    target.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "cell/store"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "cell" / "store"


async def setup_books(url: str) -> str:
    """The tenant, one ledger and ACCOUNTS accounts with predictable ids, written as plain rows (no service code:
    the schema is the baseline's in one of the databases)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, 'benchmark')", TENANT)
        ledger_id = uuid.uuid4()
        await conn.execute("INSERT INTO ledgers (id, tenant_id, name) VALUES ($1, $2, 'bench')", ledger_id, TENANT)
        rows = [(uuid.UUID(account_uuid(i)), TENANT, ledger_id, f"acct {i}", "credit" if i % 2 else "debit", "USD", 2)
                for i in range(1, ACCOUNTS + 1)]
        await conn.copy_records_to_table(
            "ledger_accounts", records=rows,
            columns=["id", "tenant_id", "ledger_id", "name", "normal_balance", "currency", "currency_exponent"])
        await conn.copy_records_to_table("account_balances", records=[(r[0], TENANT) for r in rows],
                                         columns=["account_id", "tenant_id"])
        await conn.execute("ANALYZE")
        return str(ledger_id)
    finally:
        await conn.close()


def server_cpu_s(pg: EmbeddedPostgres) -> float:
    """CPU seconds of the whole server so far: the postmaster with its reaped children, and the live ones."""
    def ticks(pid: int, children: bool) -> int:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(f) for f in fields[11:15 if children else 13])

    total = ticks(pg.pid, True)
    for child in Path(f"/proc/{pg.pid}/task/{pg.pid}/children").read_text().split():
        try:
            total += ticks(int(child), False)
        except (OSError, IndexError):
            pass  # ended in between: counted in the postmaster's reaped children next time
    return total / CLK_TCK


def script(ledger_id: str, apply: str | None) -> str:
    a, b = pgbench_account("a"), pgbench_account("b")
    return (f"\\set a random(1, {ACCOUNTS})\n\\set b random(1, {ACCOUNTS})\n"
            + posting_sql(ledger_id, a, b, f"ARRAY[{a}, {b}]" if apply is None else apply))


def _entry(n: int) -> dict:
    return {"id": f"00000000-0000-4000-9000-00000000000{n}", "amount": 94141, "object": "ledger_entry",
            "status": "posted", "metadata": {}, "direction": "debit" if n == 1 else "credit", "live_mode": True,
            "created_at": "2026-11-30T09:53:51.849771Z", "updated_at": "2026-11-30T09:53:51.849771Z",
            "discarded_at": None, "effective_at": "2026-11-30T09:53:51.849754Z", "amount_string": "94141",
            "ledger_account_id": account_uuid(n), "ledger_transaction_id": account_uuid(0),
            "ledger_account_currency": "USD", "ledger_account_lock_version": None,
            "ledger_account_currency_exponent": 2, "resulting_ledger_account_balances": None}


def mix_payload(ledger_id: str) -> tuple[dict, list]:
    """The mix's write's snapshot and events (one ledger_transaction.created), of the sizes the service sends."""
    snapshot = {"id": account_uuid(0), "status": "posted", "metadata": {}, "ledger_id": ledger_id,
                "description": None, "external_id": None, "effective_at": "2026-11-30T09:53:51.849754Z",
                "ledgerable_id": None, "ledgerable_type": None, "reverses_ledger_transaction_id": None,
                "ledger_entries": [{k: e[k] for k in ("id", "amount", "direction", "ledger_account_id")}
                                   for e in (_entry(1), _entry(2))]}
    data = {**snapshot, "object": "ledger_transaction", "version": 1, "live_mode": True, "posted_at": None,
            "created_at": "2026-11-30T09:53:51.849771Z", "updated_at": "2026-11-30T09:53:51.849771Z",
            "archived_at": None, "effective_date": "2026-11-30", "archived_reason": None,
            "reversed_by_ledger_transaction_id": None, "partially_posts_ledger_transaction_id": None,
            "ledger_entries": [_entry(1), _entry(2)]}
    events = [{"resource": "ledger_transaction", "event_name": "ledger_transaction.created",
               "entity_id": account_uuid(0), "data": data}]
    return snapshot, events


def mix_answer(ledger_id: str) -> bytes:
    """The first answer the mix's write keeps with its Idempotency-Key (~1.9 kB, as the cell encodes it)."""
    _, events = mix_payload(ledger_id)
    return json.dumps({"view": events[0]["data"], "show": []}, separators=(",", ":")).encode()


async def keeps_answer(conn: asyncpg.Connection) -> bool:
    """Whether this database's ledger_post keeps the key's answer itself (p_answer, 0140); before, the cell stored it
    by a statement of its own after the commit (store_idempotent_responses)."""
    return await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'ledger_post' "
                               "AND 'p_answer' = ANY(proargnames))")


# The cell's statement that stored a first answer after the posting's commit, before 0140.
STORE_ANSWER = ("UPDATE idempotency_keys k SET status_code = 201, response = $3 "
                "WHERE k.tenant_id = $1 AND k.key = $2 AND k.response IS NULL")


def mix_script(ledger_id: str, keeps: bool) -> str:
    """The mix's write (see the module's docstring): account 1 (hot) against a random one, queued, with an
    Idempotency-Key, a snapshot, one ledger_transaction.created event and the answer the key keeps: passed to
    ledger_post when it keeps it (`keeps`), or stored by the statement the cell sent after the commit."""
    snapshot, events = mix_payload(ledger_id)
    answer = "'\\x" + mix_answer(ledger_id).hex() + "'::bytea"
    hot, b = "'00000000-0000-4000-8000-000000000001'::uuid", pgbench_account("b")
    key = "(:client_id || '-' || :k)"
    call = (f"SELECT ledger_post('{TENANT}', {key}, sha256(random()::text::bytea), gen_random_uuid(), "
            f"'{ledger_id}'::uuid, NULL, 'posted', now(), NULL, '{{}}'::jsonb, NULL, "
            f"ARRAY[gen_random_uuid(), gen_random_uuid()], ARRAY[{hot}, {b}], ARRAY['debit', 'credit'], "
            f"ARRAY[94141, 94141]::bigint[], '{{}}'::uuid[], '[]'::jsonb, '{json.dumps(snapshot)}'::jsonb, "
            f"p_events => '{json.dumps(events)}'::jsonb{', p_answer => ' + answer if keeps else ''});\n")
    store = "" if keeps else (f"UPDATE idempotency_keys SET status_code = 201, response = {answer} "
                              f"WHERE tenant_id = '{TENANT}' AND key = {key} AND response IS NULL;\n")
    return f"\\set b random(2, {ACCOUNTS})\n\\set k random(1, 9223372036854775807)\n" + call + store


def wal_lsn(pg: EmbeddedPostgres) -> int:
    out = subprocess.run([_pg_bin("psql"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "-d", "postgres",
                          "-tAc", "SELECT pg_current_wal_lsn() - '0/0'"], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


async def measured(pg: EmbeddedPostgres, phase) -> dict:
    """Await one phase (a coroutine, not started yet); add the server's CPU and the WAL written per call."""
    cpu, wal = server_cpu_s(pg), wal_lsn(pg)
    row = await phase
    await asyncio.sleep(0.5)  # the phase's connections ended: let the postmaster reap them (their CPU counts then)
    calls = max(1, row["calls"])
    row["server_cpu_ms_per_call"] = (server_cpu_s(pg) - cpu) * 1000 / calls
    row["wal_bytes_per_call"] = (wal_lsn(pg) - wal) / calls
    return row


def pgbench_phase(pg, dbname, text, clients, duration_s, workdir) -> dict:
    row = pgbench_run(pg, dbname, text, clients, duration_s, workdir)
    row["calls"] = row["per_s"] * int(duration_s)
    return row


async def drain(url: str) -> dict:
    """Every queued effect folded in by the worker's call, WORKER_GROUP accounts a call, until none is left."""
    conn = await asyncpg.connect(url)
    try:
        ids = [uuid.UUID(account_uuid(i)) for i in range(1, ACCOUNTS + 1)]
        applied = calls = 0
        start = time.perf_counter()
        while True:
            done = 0
            for i in range(0, len(ids), WORKER_GROUP):
                n = await conn.fetchval("SELECT applied FROM ledger_apply_report($1::uuid[], false)",
                                        ids[i:i + WORKER_GROUP])
                done += n
                calls += 1
            applied += done
            if done == 0:
                break
        elapsed = time.perf_counter() - start
        return {"per_s": applied / elapsed, "calls": applied, "apply_calls": calls}
    finally:
        await conn.close()


def median_row(rows: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in rows) for k in ("per_s", "server_cpu_ms_per_call", "wal_bytes_per_call")}


async def before_and_after(pg: EmbeddedPostgres, workdir: Path) -> dict[str, str]:
    """A database per side ("before": BASELINE's store, "after": this checkout's), migrated, with its books: name ->
    the books' ledger id."""
    stores = {"before": baseline_store(BASELINE, workdir), "after": REPO / "cell" / "store"}
    ledgers = {}
    for name, store in stores.items():
        url = pg.create_database(name)
        migrate_from(store, url)
        ledgers[name] = await setup_books(url)
    return ledgers


async def run(duration_s: float = 10.0, concurrency: int = 16, rounds: int = ROUNDS) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="ledger-dbtier-"))
    pg = EmbeddedPostgres(workdir / "pg").start()  # fsync on, as the bench floor
    try:
        ledgers = await before_and_after(pg, workdir)
        keeps = {}
        for name in ledgers:
            conn = await asyncpg.connect(pg.database_url(name))
            try:
                keeps[name] = await keeps_answer(conn)
            finally:
                await conn.close()
        print(f"# database tier: ledger_post by pgbench, before = {BASELINE}, after = this checkout; "
              f"{duration_s:.0f}s per phase, {concurrency} clients, {rounds} rounds after a warm-up, fsync on")
        phases: dict = {name: {"sync": [], "async": [], "mix": [], "apply": []} for name in ledgers}
        for r in range(-1, rounds):
            if r == 0:
                # After the warm-up round (not counted): the tables hold rows and statistics, as a cell's do.
                for name in ledgers:
                    conn = await asyncpg.connect(pg.database_url(name))
                    try:
                        await conn.execute("ANALYZE")
                    finally:
                        await conn.close()
                phases = {name: {"sync": [], "async": [], "mix": [], "apply": []} for name in ledgers}
            for name in (list(ledgers) if r % 2 else list(reversed(ledgers))):  # alternating: neither always first
                url = pg.database_url(name)
                for phase, text in (("sync", script(ledgers[name], None)),
                                    ("async", script(ledgers[name], "'{}'::uuid[]")),
                                    ("mix", mix_script(ledgers[name], keeps[name])), ("apply", None)):
                    if phase == "apply":
                        row = await measured(pg, drain(url))
                    else:
                        row = await measured(pg, asyncio.to_thread(pgbench_phase, pg, name, text, concurrency,
                                                                   duration_s, workdir))
                    phases[name][phase].append(row)
                    print(f"round {r + 1 if r >= 0 else 'w'} {name:6s} {phase:5s} {row['per_s']:8.0f}/s  server CPU "
                          f"{row['server_cpu_ms_per_call']:.3f} ms/call  WAL {row['wal_bytes_per_call']:.0f} B/call")
        results = {name: {phase: median_row(rows) for phase, rows in by.items()} for name, by in phases.items()}
        print("\n# medians: after / before; paired: the median of each round's after / before (the neighbours' drifting "
              "load on a shared box cancels)")
        for phase in ("sync", "async", "mix", "apply"):
            b, a = results["before"][phase], results["after"][phase]
            paired = {k: statistics.median(x[k] / y[k] for x, y in zip(phases["after"][phase], phases["before"][phase]))
                      for k in ("per_s", "server_cpu_ms_per_call")}
            results["paired_after_over_before_" + phase] = paired
            print(f"{phase:5s} tps {b['per_s']:8.0f} -> {a['per_s']:8.0f} ({a['per_s'] / b['per_s']:.2f}x, paired "
                  f"{paired['per_s']:.2f})   server CPU/call {b['server_cpu_ms_per_call']:.3f} -> "
                  f"{a['server_cpu_ms_per_call']:.3f} ms ({b['server_cpu_ms_per_call'] / a['server_cpu_ms_per_call']:.2f}x "
                  f"cheaper, paired after/before {paired['server_cpu_ms_per_call']:.2f})   "
                  f"WAL/call {b['wal_bytes_per_call']:.0f} -> {a['wal_bytes_per_call']:.0f} B")
        return results
    finally:
        pg.stop()
        remove_tree(workdir)


SERIAL_MIX = ("SELECT ledger_post($1, $2, $3, $4, $5, NULL, 'posted', now(), NULL, '{}'::jsonb, NULL, $6::uuid[], "
              "$7::uuid[], ARRAY['debit', 'credit'], ARRAY[94141, 94141]::bigint[], '{}'::uuid[], '[]'::jsonb, "
              "$8::jsonb, p_events => $9::jsonb")


# The sync postings of --serial: both accounts applied now (the bench floor's call, `sync`), and a card authorization
# (`card`: the card account applied now under an available_balance_amount lock, the settlement account queued).
SERIAL_SYNC = ("SELECT ledger_post($1, NULL, NULL, $2, $3, 'bench', 'posted', now(), NULL, '{}'::jsonb, NULL, $4::uuid[], "
               "$5::uuid[], ARRAY['debit', 'credit'], ARRAY[100, 100]::bigint[], $6::uuid[], $7::jsonb, '{}'::jsonb)")


def backend_cpu_ns(pid: int) -> int:
    """CPU time of one backend so far, in ns (/proc/<pid>/schedstat: finer than the clock ticks of stat)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


async def serial_round(conn: asyncpg.Connection, pid: int, ledger_id: str, calls: int) -> tuple[float, ...]:
    """`calls` mix writes as the cell sends them (one prepared statement, parameters bound), `calls` sync postings of
    each kind (serial_sync), then every effect they queued applied as the worker does (the hot account with
    WORKER_GROUP - 1 others a call): the backend's CPU in ms per mix posting, per applied effect, and per sync
    posting of each kind."""
    snapshot, events = (json.dumps(x) for x in mix_payload(ledger_id))
    answer = mix_answer(ledger_id)
    hot = uuid.UUID(account_uuid(1))
    keeps = await keeps_answer(conn)
    post = await conn.prepare(SERIAL_MIX + (", p_answer => $10)" if keeps else ")"))
    store = None if keeps else await conn.prepare(STORE_ANSWER)
    start = backend_cpu_ns(pid)
    for i in range(calls):
        other = uuid.UUID(account_uuid(2 + (i * 7919 + calls) % (ACCOUNTS - 1)))
        key = uuid.uuid4().hex
        args = (TENANT, key, os.urandom(32), uuid.uuid4(), uuid.UUID(ledger_id), [uuid.uuid4(), uuid.uuid4()],
                [hot, other], snapshot, events)
        await post.fetchval(*args, answer) if keeps else await post.fetchval(*args)
        if store is not None:  # the answer, stored by the cell's own statement after the commit
            await store.fetch(TENANT, key, answer)
    posting_ms = (backend_cpu_ns(pid) - start) / calls / 1e6
    sync_ms = [await serial_sync(conn, pid, ledger_id, calls, kind) for kind in ("sync", "card", "locked")]
    queued = [r[0] for r in await conn.fetch("SELECT DISTINCT account_id FROM balance_effects "
                                            "WHERE applied_at IS NULL AND account_id <> $1", hot)]
    start, applied = backend_cpu_ns(pid), 0
    for i in range(0, max(1, len(queued)), WORKER_GROUP - 1):
        applied += await conn.fetchval("SELECT applied FROM ledger_apply_report($1::uuid[], false)",
                                       [hot, *queued[i:i + WORKER_GROUP - 1]])
    return posting_ms, (backend_cpu_ns(pid) - start) / max(1, applied) / 1e6, *sync_ms


async def serial_sync(conn: asyncpg.Connection, pid: int, ledger_id: str, calls: int, kind: str) -> float:
    """`calls` sync postings (SERIAL_SYNC) of one kind: `sync`, two random accounts both applied now; `card`, a card
    authorization: a random card account applied now under a balance lock, against the hot account, queued;
    `locked`, the hot account (its history: every posting of the mix) applied now under its lock_version (the one
    the previous posting answered), against a random account, queued. Backend CPU in ms per posting."""
    post = await conn.prepare(SERIAL_SYNC)
    hot = uuid.UUID(account_uuid(1))
    version = await conn.fetchval("SELECT lock_version + (SELECT count(*) FROM balance_effects WHERE account_id = $1"
                                  " AND applied_at IS NULL) FROM account_balances WHERE account_id = $1", hot)
    start = backend_cpu_ns(pid)
    for i in range(calls):
        a = uuid.UUID(account_uuid(2 + (i * 7919 + calls) % (ACCOUNTS - 1)))
        b = hot if kind == "card" else uuid.UUID(account_uuid(2 + (i * 104729 + 1 + calls) % (ACCOUNTS - 1)))
        if a == b:
            b = uuid.UUID(account_uuid(2 + (i * 104729 + 2 + calls) % (ACCOUNTS - 1)))
        accounts, applied, checks = [a, b], [a, b], []
        if kind == "card":
            applied, checks = [a], [{"account_id": str(a), "available_balance_amount": {"gte": -10 ** 15}}]
        elif kind == "locked":
            accounts, applied, checks = [hot, b], [hot], [{"account_id": str(hot), "lock_version": version}]
        answer = await post.fetchval(TENANT, uuid.uuid4(), uuid.UUID(ledger_id), [uuid.uuid4(), uuid.uuid4()],
                                     accounts, applied, json.dumps(checks))
        if kind == "locked":
            version = json.loads(answer)["entries"][0]["lock_version"]
    return (backend_cpu_ns(pid) - start) / calls / 1e6


async def serial(rounds: int, calls: int) -> dict:
    """One client per database, rounds alternating (before, after, after, before, ...), no ANALYZE but autovacuum's
    (a cell's first minutes): the medians, and the median of each round's after / before (paired, so that the
    neighbours' load on a shared box, which drifts, cancels)."""
    workdir = Path(tempfile.mkdtemp(prefix="ledger-dbtier-"))
    pg = EmbeddedPostgres(workdir / "pg").start()
    conns: dict[str, asyncpg.Connection] = {}
    try:
        ledgers = await before_and_after(pg, workdir)
        pids = {}
        for name in ledgers:
            conns[name] = await asyncpg.connect(pg.database_url(name))
            pids[name] = await conns[name].fetchval("SELECT pg_backend_pid()")
        print(f"# database tier, serial: one client, the mix's write as the cell sends it, sync postings and the worker's apply, "
              f"before = {BASELINE}, after = this checkout; {rounds} rounds of {calls} postings, backend CPU")
        rows: dict[str, dict[str, list[float]]] = {name: {"posting": [], "apply": [], "sync": [], "card": [], "locked": []}
                                                   for name in ledgers}
        for r in range(rounds):
            for name in (list(ledgers) if r % 2 == 0 else list(reversed(ledgers))):
                for what, value in zip(("posting", "apply", "sync", "card", "locked"),
                                       await serial_round(conns[name], pids[name], ledgers[name], calls)):
                    rows[name][what].append(value)
        results = {}
        for what, unit, scale in (("posting", "ms/call", 1), ("apply", "us/effect", 1000), ("sync", "ms/call", 1),
                                  ("card", "ms/call", 1), ("locked", "ms/call", 1)):
            b, a = (statistics.median(rows[n][what]) * scale for n in ("before", "after"))
            ratio = statistics.median(x / y for x, y in zip(rows["after"][what], rows["before"][what]))
            results[what] = {"before": b, "after": a, "paired_after_over_before": ratio}
            print(f"{what:7s} backend CPU {b:.3f} -> {a:.3f} {unit} (medians); paired after/before {ratio:.2f}")
        return results
    finally:
        for conn in conns.values():
            await conn.close()
        pg.stop()
        remove_tree(workdir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="measured rounds of the pgbench phases")
    parser.add_argument("--serial", type=int, metavar="ROUNDS",
                        help="instead: one client, the backend's own CPU per mix posting and per applied effect, "
                             "ROUNDS rounds of --calls postings per database, alternating")
    parser.add_argument("--calls", type=int, default=500, help="postings per round of --serial")
    args = parser.parse_args()
    if args.serial:
        print(json.dumps(httpload.run(serial(args.serial, args.calls), loop_factory=None), indent=2))
    else:
        print(json.dumps(httpload.run(run(args.duration, args.concurrency, args.rounds), loop_factory=None),
                         indent=2))


if __name__ == "__main__":
    main()
