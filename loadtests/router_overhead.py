"""The router's cost: requests/s and p50/p99 through the router against the same cell directly, in one run.

One cell (`python -m cell`, sync mode) and one router (`python -m router`) on an embedded PostgreSQL; the same
keep-alive load (reads: one account with its balances; writes: a two-entry posting) is sent to the cell's
port and to the router's in alternating rounds (the duration is split between them), and the median ratios
are printed. The router runs its own HTTP server (router/server.py), as in production.

    python -m loadtests.router_overhead --duration 10 --concurrency 16
    python -m loadtests.router_overhead --duration 40 --rounds 8 --phases reads --baseline DIR  # one workload, longer

A last phase sends the reads to a stand-in cell that costs next to nothing (the same answer bytes as the real
cell's, after a fixed 2 ms): through it the router's CPU per request is its own, whatever the cell next door is
doing to the shared cores; its "direct" side is the stand-in itself.

With `--baseline DIR` (a checkout of another commit, e.g. `git worktree add /tmp/before HEAD~3`), a second
router runs from DIR's code beside this one, measured in the same alternating rounds: before and after in
one run, on the same cell, under the same neighbours.

Beside each phase on the real cell: "pg sends", the TCP segments PostgreSQL sends per request, about the statements the
cell sent per read (the cell reads the balances of the reads that arrive together in one statement,
cell/service/reads.py: the fewer arrive together, the more statements per read, the more CPU per read in the
cell and in PostgreSQL), "cell sleeps", the cell's waits for work per request, "cell preempted", the times per
request the cell was taken off its core while ready to run (/proc/PID/task/*/status: a routed read adds a third busy
process beside the cell, its PostgreSQL backends and the load generator, and each preemption costs the cell its
caches as well as the time), and "cell waits", the time per request the cell, ready to run, waited for a core
(/proc/PID/schedstat: the cost of sharing the cores with the router, the load generator, PostgreSQL and the
neighbours). Routed, the requests reach the cell more spread out than straight
from the load generator: more statements and sleeps per read.

On shared cores those CPU figures move by 10-20% from run to run. `--path-cost` measures the router's own
Python path instead, free of neighbours: a relayed read (the client's request in, the cell's answer out)
driven in one process through the router's code with stand-in transports (no syscalls, no event-loop turn),
as the CPU instructions per request counted by valgrind's callgrind (deterministic: the figure to compare
commits by; skipped without valgrind) and as microseconds (the fastest of several batches). With
`--baseline DIR`, DIR's code is measured the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import httpx
import psutil

from control_plane import catalog, operations
from control_plane.devstack import EmbeddedPostgres, free_port, remove_tree
from control_plane.settings import ControlPlaneSettings
from loadtests import httpload
from loadtests.httpload import run_load

TENANT = "router-bench"
STUB_TENANT = "router-bench-stub"
STUB_DELAY_S = 0.002  # about a cell's own time for a read
ACCOUNTS = 50
WARMUP_S = 1.0
START_WAIT_S_MAX = 60


def _spawn(module: str, env: dict[str, str], log: Path, source: Path | None = None) -> subprocess.Popen:
    """`python -m module`, from `source` (a checkout) when given, else from this one."""
    if source is not None:
        env = {**env, "PYTHONPATH": str(source)}
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", module], env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=source)


def _wait_ready(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_WAIT_S_MAX
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} not ready")


def _cpu_s(proc: subprocess.Popen) -> float:
    """User + system CPU seconds the process has used (Linux /proc): less noisy than req/s on shared cores."""
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree_cpu_s(pid: int) -> dict[int, float]:
    """User + system CPU seconds of a process and of each child alive now, by pid (PostgreSQL: the postmaster and
    its backends, which the cell's and router's pools keep open)."""
    try:
        parent = psutil.Process(pid)
        procs = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    seconds = {}
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
            t = p.cpu_times()
            seconds[p.pid] = t.user + t.system
    return seconds


def _grown(before: dict, after: dict) -> float:
    """What counters by process (or connection) grew by: one that came meanwhile from 0; one that went is not
    counted (its last figures are gone with it) rather than taken off whole."""
    return sum(n - before.get(key, 0) for key, n in after.items())


def _segments_sent(port: int) -> dict[str, int]:
    """TCP segments sent so far on each established connection from local `port` (`ss`), by peer address: on
    PostgreSQL's port, about one per statement answered (its answers carry the acknowledgements)."""
    listing = subprocess.run(["ss", "-tinH", "state", "established", f"( sport = :{port} )"], capture_output=True,
                             text=True, check=False).stdout
    sent, peer = {}, None
    for line in listing.splitlines():
        if not line[:1].isspace():
            fields = line.split()
            peer = fields[-1] if len(fields) >= 2 else None
        elif peer is not None and (found := re.search(r"\bsegs_out:(\d+)", line)):
            sent[peer] = int(found.group(1))
    return sent


def _switches(pid: int) -> tuple[int, int]:
    """Context switches so far of a process's threads: voluntary (each a wait for something to do) and not
    (each a preemption: another task was given the core while this one was ready to run)."""
    voluntary = preempted = 0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                for line in (task / "status").read_text().splitlines():
                    if line.startswith("voluntary_ctxt_switches:"):
                        voluntary += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        preempted += int(line.split()[1])
    return voluntary, preempted


def _waited_s(pid: int) -> float:
    """Seconds so far the process's threads have waited, ready to run, for a core (/proc/PID/task/*/schedstat): what
    the cores' other users cost it in time."""
    total = 0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, IndexError, ValueError):
                total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _StubCell(asyncio.Protocol):
    """The stand-in cell: every request (a head, no body) is answered with the same bytes after STUB_DELAY_S."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            self.buffer = self.buffer[end + 4:]
            asyncio.get_running_loop().call_later(STUB_DELAY_S, self._answer)

    def _answer(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(self.answer)


async def _setup(cp_url: str, cell_url: str, cell_db_url: str, stub_url: str) -> tuple[str, list[str], str]:
    settings = ControlPlaneSettings(database_url=cp_url, actor="bench")
    conn = await catalog.connect(cp_url)
    try:
        await catalog.migrate_catalog(conn)
        await operations.add_cell(conn, settings, "bench-cell", cell_url, cell_db_url)
        await operations.add_cell(conn, settings, "stub-cell", stub_url, cell_db_url, check_api=False)
        # No limit: the benchmark measures the proxy, not the rate limiter's rejections.
        for tenant, cell in ((TENANT, "bench-cell"), (STUB_TENANT, "stub-cell")):
            await operations.create_tenant(conn, settings, tenant, "router benchmark", cell)
            await operations.set_rate_limit(conn, settings, tenant, 1_000_000, 1_000_000)
        _, secret = await operations.create_key(conn, settings, TENANT)
    finally:
        await conn.close()
    async with httpx.AsyncClient(base_url=cell_url, auth=(TENANT, secret)) as http:
        ledger = (await http.post("/api/ledgers", json={"name": "bench"})).json()["id"]
        accounts = []
        for i in range(ACCOUNTS):
            response = await http.post("/api/ledger_accounts", json={
                "name": f"a{i}", "ledger_id": ledger, "currency": "USD",
                "normal_balance": "debit" if i % 2 else "credit"})
            accounts.append(response.json()["id"])
    return ledger, accounts, secret


async def _measure(port: int, auth, duration_s: float, concurrency: int, kind: str, make,
                   serving: subprocess.Popen | None = None, cell: subprocess.Popen | None = None,
                   postgres: int | None = None, postgres_port: int = 0) -> dict:
    """One warmed-up phase; with `serving`, also that process's CPU per request over the measured part; with
    `cell`, the cell's (and how often it waited for work), with `postgres` (the postmaster's pid) PostgreSQL's (and
    the segments it sends on `postgres_port`: about one per statement); always the load generator's own (this
    process: it shares the cores), and the cores all of them kept busy."""
    await run_load("127.0.0.1", port, auth, duration_s=WARMUP_S, workers=[(kind, concurrency)],
                   make_request={kind: make})
    watched = {"cpu_us_per_request": serving, "cell_cpu_us_per_request": cell}
    before = {name: _cpu_s(proc) for name, proc in watched.items() if proc is not None}
    if postgres is not None:
        before["postgres_cpu_us_per_request"] = _tree_cpu_s(postgres)
        sends_before = _segments_sent(postgres_port)
    switches_before = _switches(cell.pid) if cell is not None else (0, 0)
    waited_before = _waited_s(cell.pid) if cell is not None else 0.0
    generator_before, started = time.process_time(), time.monotonic()
    stats = await run_load("127.0.0.1", port, auth, duration_s=duration_s, workers=[(kind, concurrency)],
                           make_request={kind: make})
    summary = stats[kind].summary(duration_s)
    # Requests still in flight when the phase ends are not counted: a slight overestimate.
    requests = max(1, summary["requests"])
    elapsed = time.monotonic() - started
    summary["generator_cpu_us_per_request"] = (time.process_time() - generator_before) * 1e6 / requests
    for name, cpu_before in before.items():
        if name.startswith("postgres"):
            summary[name] = _grown(cpu_before, _tree_cpu_s(postgres)) * 1e6 / requests
        else:
            summary[name] = (_cpu_s(watched[name]) - cpu_before) * 1e6 / requests
    if postgres is not None:
        summary["postgres_sends_per_request"] = _grown(sends_before, _segments_sent(postgres_port)) / requests
    if cell is not None:
        switches = _switches(cell.pid)
        summary["cell_sleeps_per_request"] = (switches[0] - switches_before[0]) / requests
        summary["cell_preempted_per_request"] = (switches[1] - switches_before[1]) / requests
        summary["cell_waits_us_per_request"] = (_waited_s(cell.pid) - waited_before) * 1e6 / requests
    summary["cores_busy"] = sum(v for k, v in summary.items() if k.endswith("cpu_us_per_request")) * requests / 1e6 / elapsed
    return summary


async def run(duration_s: float = 10.0, concurrency: int = 16, rounds: int = 3, baseline: Path | None = None,
              phases: tuple[str, ...] | None = None) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="ledger-router-bench-"))
    pg = EmbeddedPostgres(workdir / "pg").start()
    cell = router = before = stub = None
    try:
        cp_url, cell_db_url = pg.create_database("control_plane"), pg.create_database("cell")
        cell_port, router_port, stub_port = free_port(), free_port(), free_port()
        cell_url = f"http://127.0.0.1:{cell_port}"
        cell = _spawn("cell", {"CELL_DATABASE_URL": cell_db_url, "CELL_PORT": str(cell_port), "CELL_NAME": "bench-cell",
                               "CELL_POSTING_MODE": "sync"}, workdir / "cell.log")
        _wait_ready(cell_url + "/readyz", cell, workdir / "cell.log")
        ledger, accounts, secret = await _setup(cp_url, cell_url, cell_db_url, f"http://127.0.0.1:{stub_port}")
        async with httpx.AsyncClient(base_url=cell_url, auth=(TENANT, secret)) as http:
            answer = await http.get(f"/api/ledger_accounts/{accounts[0]}")
        head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(answer.content)}\r\n\r\n"
        stub = await asyncio.get_running_loop().create_server(
            lambda: _StubCell(head.encode() + answer.content), "127.0.0.1", stub_port)
        router = _spawn("router", {"ROUTER_PORT": str(router_port), "ROUTER_CONTROL_PLANE_DATABASE_URL": cp_url,
                                   "ROUTER_REDIS_URL": ""}, workdir / "router.log")
        # In a thread: the stand-in cell, in this loop, must answer the router's health checks meanwhile.
        await asyncio.to_thread(_wait_ready, f"http://127.0.0.1:{router_port}/readyz", router, workdir / "router.log")
        routers = [("router", router_port, router)]
        if baseline is not None:
            before_port = free_port()
            before = _spawn("router", {"ROUTER_PORT": str(before_port), "ROUTER_CONTROL_PLANE_DATABASE_URL": cp_url,
                                       "ROUTER_REDIS_URL": "", "ROUTER_METRICS_PORT": "0"},
                            workdir / "baseline.log", source=baseline)
            await asyncio.to_thread(_wait_ready, f"http://127.0.0.1:{before_port}/readyz", before,
                                    workdir / "baseline.log")
            routers.append(("baseline", before_port, before))
        auth = (TENANT, secret)

        def read():
            return "GET", f"/api/ledger_accounts/{random.choice(accounts)}", b""

        def write():
            debit, credit = random.sample(accounts, 2)
            body = json.dumps({"ledger_id": ledger, "status": "posted", "ledger_entries": [
                {"ledger_account_id": debit, "direction": "debit", "amount": 100},
                {"ledger_account_id": credit, "direction": "credit", "amount": 100}]}).encode()
            return "POST", "/api/ledger_transactions", body

        results: dict = {"duration_s": duration_s, "concurrency": concurrency, "rounds": rounds}
        slice_s = duration_s / rounds
        # Saturated (`concurrency` connections: the two cores are shared by the load, the router, the cell and
        # PostgreSQL, so the router's CPU shows up as lost throughput), then one request at a time (nothing
        # saturated: the added p50 is the router's own latency, hop included).
        stub_auth = (STUB_TENANT, "any key: the stand-in takes them all")
        chosen = phases
        phases = (("reads", read, concurrency, cell_port, auth), ("writes", write, concurrency, cell_port, auth),
                  ("reads_one_at_a_time", read, 1, cell_port, auth),
                  ("reads_stub_cell", read, concurrency, stub_port, stub_auth))
        phases = tuple(phase for phase in phases if chosen is None or phase[0] in chosen)
        for kind, make, connections, direct_port, phase_auth in phases:
            # Direct and routed phases alternate, so that a neighbour's burst on the shared cores hits both
            # sides alike; the ratio is the median of the rounds' ratios.
            rows = []
            for i in range(rounds):
                serving_cell = cell if direct_port == cell_port else None
                row = {"direct": await _measure(direct_port, phase_auth, slice_s, connections, kind, make,
                                                cell=serving_cell, postgres=pg.pid, postgres_port=pg.port)}
                for name, port, proc in routers if i % 2 == 0 else routers[::-1]:  # neither always goes first
                    row[name] = await _measure(port, phase_auth, slice_s, connections, kind, make, serving=proc,
                                               cell=serving_cell, postgres=pg.pid, postgres_port=pg.port)
                rows.append(row)
            results[kind] = summary = {"rounds": rows}
            for i, row in enumerate(rows, 1):
                for path, x in row.items():
                    cpu = f"  CPU {x['cpu_us_per_request']:4.0f} us/request" if "cpu_us_per_request" in x else ""
                    cpu += (f"  cell {x['cell_cpu_us_per_request']:4.0f} us" if "cell_cpu_us_per_request" in x
                            else "") + (f"  pg {x['postgres_cpu_us_per_request']:4.0f} us  load "
                                        f"{x['generator_cpu_us_per_request']:3.0f} us  ({x['cores_busy']:.2f} cores)")
                    if "postgres_sends_per_request" in x and "cell_sleeps_per_request" in x:
                        cpu += (f"  pg sends {x['postgres_sends_per_request']:.2f}  cell sleeps "
                                f"{x['cell_sleeps_per_request']:.2f}  cell preempted "
                                f"{x['cell_preempted_per_request']:.2f}  cell waits {x['cell_waits_us_per_request']:3.0f} us")
                    print(f"{kind:6} round {i} {path:8} {x['per_s']:8.0f} req/s  p50 {x['p50_ms']:6.2f} ms  "
                          f"p99 {x['p99_ms']:6.2f} ms{cpu}  statuses {x['statuses']}")
            for name, _, _ in routers:
                ratios = [row[name]["per_s"] / row["direct"]["per_s"] for row in rows if row["direct"]["per_s"]]
                routed = {
                    "throughput_ratio": statistics.median(ratios) if ratios else float("nan"),
                    "p50_added_ms": statistics.median(row[name]["p50_ms"] - row["direct"]["p50_ms"] for row in rows),
                    "p99_added_ms": statistics.median(row[name]["p99_ms"] - row["direct"]["p99_ms"] for row in rows),
                    "router_cpu_us_per_request": statistics.median(row[name]["cpu_us_per_request"] for row in rows)}
                # This checkout's figures at the top, as before; the baseline's beside them.
                if name == "router":
                    summary.update(routed)
                else:
                    summary[name] = routed
                print(f"{kind:6} {name}/direct throughput = {routed['throughput_ratio']:.2f} (median of "
                      f"{', '.join(f'{x:.2f}' for x in ratios)}), p50 +{routed['p50_added_ms']:.2f} ms, "
                      f"p99 +{routed['p99_added_ms']:.2f} ms, router CPU "
                      f"{routed['router_cpu_us_per_request']:.0f} us/request")
        return results
    finally:
        if stub is not None:
            stub.close()
        _stop(before)
        _stop(router)
        _stop(cell)
        pg.stop()
        remove_tree(workdir)


_PATH_READ = (b"GET /api/ledger_accounts/0196b7c4-3b8e-7d2a-9f5e-1c2d3e4f5a6b HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Authorization: Basic " + base64.b64encode(b"path-cost:secret") + b"\r\n"
              b"Content-Type: application/json\r\nContent-Length: 0\r\n\r\n")
_PATH_BODY = (b'{"id":"0196b7c4-3b8e-7d2a-9f5e-1c2d3e4f5a6b","object":"ledger_account","live_mode":true,"name":"a1",'
              b'"balances":{"posted_balance":{"credits":0,"debits":0,"amount":0,"currency":"USD"}},"metadata":{}}')
_PATH_ANSWER = (b"HTTP/1.1 200 OK\r\ndate: Mon, 30 Nov 2026 07:00:00 GMT\r\nserver: uvicorn\r\n"
                b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(_PATH_BODY), _PATH_BODY))
_PATH_WARMUP = 200


class _PathTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_extra_info(self, name):
        return ("127.0.0.1", 40000) if name == "peername" else None

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


def _path_child(reads: int, batches: int) -> None:
    """In a child whose PYTHONPATH is the checkout measured: `reads` relayed reads after a warm-up, `batches`
    times; prints the fastest batch's microseconds per read."""
    import uvloop

    from router import upstream
    from router.routes import build_table
    from router.server import Connection, RouterServer
    from router.settings import RouterSettings

    async def drive() -> float:
        server = RouterServer(RouterSettings(metrics_port=0))
        server.loop = asyncio.get_running_loop()
        router = server.router
        router.table = build_table([{"tenant_id": "path-cost", "cell": "c1", "api_url": "http://127.0.0.1:9",
                                     "epoch": 1, "rate_limit_per_s": 1_000_000, "rate_burst": 1_000_000}], 0, 0)
        pool = router._pool("http://127.0.0.1:9")
        cell = upstream._Connection(pool.body_bytes_max, pool.in_flight)
        cell_side = _PathTransport()
        cell.connection_made(cell_side)
        cell.last_used = time.monotonic() + 1e9  # never idle for too long
        pool.idle.append(cell)
        client = Connection(server)
        client_side = _PathTransport()
        client.connection_made(client_side)

        def one() -> None:
            client.data_received(_PATH_READ)
            if not cell_side.written:
                raise RuntimeError("the read did not reach the cell's connection at once")
            cell_side.written.clear()
            cell.data_received(_PATH_ANSWER)
            if not client_side.written[-1].endswith(_PATH_BODY):
                raise RuntimeError(f"not the cell's answer: {client_side.written[-1][:200]!r}")
            client_side.written.clear()

        for _ in range(_PATH_WARMUP):
            one()
        fastest = float("inf")
        for _ in range(batches):
            started = time.process_time()
            for _ in range(reads):
                one()
            fastest = min(fastest, (time.process_time() - started) / max(1, reads))
        return fastest * 1e6

    print(json.dumps({"us_per_read": uvloop.run(drive())}))


def _path_run(source: Path, reads: int, batches: int, valgrind: list[str] | None = None) -> tuple[dict, str]:
    env = {**os.environ, "PYTHONPATH": str(source)}
    command = [*(valgrind or []), sys.executable, str(Path(__file__).resolve()), "--path-child", str(reads),
               str(batches)]
    done = subprocess.run(command, env=env, cwd=source, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def _instructions(source: Path, reads: int) -> float | None:
    """Instructions per relayed read (callgrind, two runs: the difference over `reads` reads), or None."""
    if shutil.which("valgrind") is None:
        return None
    counts = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (0, reads):
            out = Path(tmp) / f"callgrind.{n}"
            _path_run(source, n, 1, ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"])
            counts.append(int(re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE).group(1)))
    return (counts[1] - counts[0]) / reads


def path_cost(sources: list[tuple[str, Path]], reads: int = 2000) -> dict:
    results = {}
    for name, source in sources:
        timed, _ = _path_run(source, reads, 15)
        results[name] = {"us_per_read": timed["us_per_read"], "instructions_per_read": _instructions(source, reads)}
        instructions = results[name]["instructions_per_read"]
        print(f"path {name:8} {timed['us_per_read']:6.1f} us per relayed read (fastest of 15 batches: moves with "
              f"the neighbours), "
              + (f"{instructions:,.0f} instructions (callgrind)" if instructions else "no valgrind: no instructions"))
    return results


def main() -> None:
    if sys.argv[1:2] == ["--path-child"]:
        _path_child(int(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured phase")
    parser.add_argument("--concurrency", type=int, default=16, help="keep-alive connections")
    parser.add_argument("--rounds", type=int, default=3, help="alternating direct/router phases per workload")
    parser.add_argument("--baseline", type=Path, help="a checkout whose router is measured too, in the same rounds")
    parser.add_argument("--phases", help="comma-separated phases to run (reads, writes, reads_one_at_a_time, "
                                         "reads_stub_cell); default: all")
    parser.add_argument("--path-cost", action="store_true",
                        help="only the router's own Python path per relayed read, in-process (see above)")
    args = parser.parse_args()
    if args.path_cost:
        here = Path(__file__).resolve().parent.parent
        path_cost([("router", here)] + ([("baseline", args.baseline.resolve())] if args.baseline else []))
        return
    httpload.run(run(args.duration, args.concurrency, args.rounds, args.baseline,
                     tuple(args.phases.split(",")) if args.phases else None))


if __name__ == "__main__":
    main()
