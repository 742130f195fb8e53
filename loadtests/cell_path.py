"""The cell process's own cost per request: a hybrid posting and a balance read, as CPU instructions and microseconds.

The cell's whole Python path (uvicorn's httptools protocol with cell.api.server's, the fast path, the service, the
pool, asyncpg) is driven in one process, through stand-in client transports (no client sockets), against a real
embedded PostgreSQL: the server is another process, so what is counted is the cell's work only. Phases, each after
its own warm-up:

  posting   POST /api/ledger_transactions (hybrid mode: the hot-account payment, two entries), one at a time
  read      GET /api/ledger_accounts/{id} (current balances), one at a time
  crowded   the same postings from --crowd clients at once on a pool of --pool connections: most requests wait for
            a connection (the pool's slow path, as under the hot-account benchmark's 64 connections)

Each phase is reported as instructions per request (valgrind's callgrind, one run: the phases are split by a
marker call; deterministic within a few per mille, the figure to compare commits by; skipped without valgrind) and
as microseconds of CPU per request (the fastest of several batches: moves with the neighbours). SQS is off (the
nudger's calls are a boto3 thread's, not this path's), as are the background tasks (sweeper, events sequencer,
metrics listener); the API key stays cached for the whole run, and a wait for a connection is not bounded (under
valgrind a crowded request can wait for seconds).

    python -m loadtests.cell_path [--baseline DIR] [--requests 400] [--crowd 32] [--pool 4]

With `--baseline DIR` (a checkout of another commit: `git worktree add --detach /tmp/before HEAD~3`), DIR's code
is measured the same way, each in its own fresh database of one PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

TENANT = "cell-path"
SETTLEMENT = uuid.UUID("00000000-0000-4000-8000-000000000000")
CARDS = 200
PHASES = ("posting", "read", "crowded")
WARMUP = 150  # requests before each phase's measured ones (caches, prepared statements, a full pool)
MARKER = "getppid"  # libc's: called between phases only, callgrind dumps its counts there (--dump-before)


def card_id(i: int) -> uuid.UUID:
    return uuid.UUID(f"00000000-0000-4000-8000-{i:012d}")


class _Transport:
    """A client connection's server side: the answer's bytes are collected; `answered` is set once one is whole."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.answered: asyncio.Future | None = None

    def write(self, data: bytes) -> None:  # cheap: its instructions are counted with the cell's
        self.data += data
        head_end = self.data.find(b"\r\n\r\n")
        if head_end < 0:
            return
        at = self.data.find(b"content-length: ", 0, head_end) + 16
        length = int(self.data[at:self.data.find(b"\r\n", at)])
        if len(self.data) >= head_end + 4 + length and self.answered is not None and not self.answered.done():
            self.answered.set_result(bytes(self.data))

    def get_extra_info(self, name: str, default=None):
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8101)}.get(name, default)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        raise RuntimeError("the cell closed a keep-alive connection")


def _child(url: str, ledger_id: str, secret: str, requests: int, crowd: int, pool: int, batches: int,
           marker: bool) -> None:
    """In a child whose PYTHONPATH is the checkout measured: each phase `batches` times; prints the fastest batch's
    CPU microseconds per request of each phase. `marker`: call MARKER before and after each phase's measured part."""
    import base64

    import uvicorn
    import uvloop
    from uvicorn.server import ServerState

    from cell.api.app import create_app
    from cell.api.server import CellHttpProtocol
    from cell.settings import CellSettings

    settings = CellSettings(database_url=url, posting_mode="hybrid", metrics_port=0, sweep_interval_s=0,
                            events_sequence_interval_s=0, db_pool_min=pool, db_pool_max=pool,
                            api_key_cache_ttl_s=1e9, db_acquire_s_max=600.0)  # under valgrind a wait is long
    app = create_app(settings, run_migrations=False)
    config = uvicorn.Config(app, http=CellHttpProtocol, lifespan="off", access_log=False, server_header=False,
                            proxy_headers=False, log_level="warning", timeout_keep_alive=1_000_000)
    config.load()
    auth = b"Authorization: Basic " + base64.b64encode(f"{TENANT}:{secret}".encode()) + b"\r\n"
    counter = iter(range(10**9))

    def posting() -> bytes:
        n = next(counter)
        amount = 1 + n % 50_000
        body = json.dumps({"ledger_id": ledger_id, "status": "posted", "ledger_entries": [
            {"ledger_account_id": str(card_id(1 + n % CARDS)), "direction": "debit", "amount": amount},
            {"ledger_account_id": str(SETTLEMENT), "direction": "credit", "amount": amount}]}).encode()
        return (b"POST /api/ledger_transactions HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth
                + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    def read() -> bytes:
        n = next(counter)
        return (b"GET /api/ledger_accounts/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % str(card_id(1 + n % CARDS)).encode()
                + auth + b"\r\n")

    async def drive() -> dict:
        loop = asyncio.get_running_loop()
        state = ServerState()
        clients = []
        for _ in range(max(1, crowd)):
            protocol = CellHttpProtocol(config=config, server_state=state, app_state={}, _loop=loop)
            transport = _Transport()
            protocol.connection_made(transport)
            clients.append((protocol, transport))

        async def one(client, request: bytes, status: bytes) -> None:
            protocol, transport = client
            transport.data.clear()
            transport.answered = loop.create_future()
            protocol.data_received(request)
            answer = await transport.answered
            if not answer.startswith(b"HTTP/1.1 " + status):
                raise RuntimeError(f"unexpected answer: {answer[:400]!r}")

        async def serial(make, status: bytes, n: int) -> None:
            for _ in range(n):
                await one(clients[0], make(), status)

        async def crowded(n: int) -> None:
            async def client_loop(client, count: int) -> None:
                for _ in range(count):
                    await one(client, posting(), b"201")
            share = [n // len(clients) + (i < n % len(clients)) for i in range(len(clients))]
            await asyncio.gather(*(client_loop(c, k) for c, k in zip(clients, share)))

        runs = {"posting": lambda n: serial(posting, b"201", n), "read": lambda n: serial(read, b"200", n),
                "crowded": crowded}
        fastest = {}
        async with app.lifespan():
            for phase in PHASES:
                await runs[phase](WARMUP)
                best = float("inf")
                for _ in range(batches):
                    if marker:
                        os.getppid()
                    started = time.process_time()
                    await runs[phase](requests)
                    best = min(best, time.process_time() - started)
                    if marker:
                        os.getppid()
                fastest[phase] = best * 1e6 / max(1, requests)
        return fastest

    print(json.dumps(uvloop.run(drive())))


def _seed_child(url: str) -> None:
    """In a child whose PYTHONPATH is the checkout measured: its schema and the books; prints ledger id and secret."""
    from loadtests.bench import seed_books

    ledger_id, secret = asyncio.run(seed_books(url, TENANT, "cell path cost", "cards", [
        (SETTLEMENT, "settlement", "credit"), *((card_id(i), f"card {i}", "debit") for i in range(1, CARDS + 1))]))
    print(json.dumps([ledger_id, secret]))


def _run(source: Path, args: list[str], prefix: list[str] | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELL_", "LEDGER_"))}
    env["PYTHONPATH"] = str(source)
    done = subprocess.run([*(prefix or []), sys.executable, str(Path(__file__).resolve()), *args], env=env, cwd=source,
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


def _instructions(source: Path, base: list[str], requests: int) -> dict | None:
    """Instructions per request of each phase (one callgrind run; its dumps at the markers), or None."""
    if shutil.which("valgrind") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        _run(source, [*base, "1", "1"], ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                                          f"--dump-before={MARKER}"])
        parts = sorted(Path(tmp).glob("callgrind.out.*"), key=lambda p: int(p.suffix[1:]))
        counts = [int(re.search(r"^(?:summary|totals): (\d+)", p.read_text(), re.MULTILINE).group(1)) for p in parts]
    # Dumps: before phase 1's measured part (setup, warm-up), after it, before phase 2's (its warm-up), ...
    if len(counts) < 2 * len(PHASES):
        raise RuntimeError(f"callgrind dumped {len(counts)} parts, expected {2 * len(PHASES)}: no marker calls?")
    return {phase: counts[2 * i + 1] / requests for i, phase in enumerate(PHASES)}


def path_cost(sources: list[tuple[str, Path]], requests: int = 400, crowd: int = 32, pool: int = 4,
              batches: int = 5) -> dict:
    from control_plane.devstack import EmbeddedPostgres, free_port, remove_tree

    workdir = Path(tempfile.mkdtemp(prefix="cell-path-"))
    pg = EmbeddedPostgres(workdir / "pg", free_port(), fsync=False).start()
    results: dict = {}
    try:
        for name, source in sources:
            url = pg.create_database(f"path_{name}")
            ledger_id, secret = json.loads(_run(source, ["--seed-child", url]))
            base = ["--path-child", url, ledger_id, secret, str(requests), str(crowd), str(pool)]
            timed = json.loads(_run(source, [*base, str(batches), "0"]))
            counted = _instructions(source, base, requests)
            results[name] = {phase: {"us": timed[phase], "instructions": counted and counted[phase]}
                             for phase in PHASES}
            for phase in PHASES:
                row = results[name][phase]
                print(f"{name:9} {phase:8} {row['us']:7.1f} us CPU per request (fastest of {batches} batches)  "
                      + (f"{row['instructions']:>12,.0f} instructions (callgrind)" if row["instructions"]
                         else "no valgrind: no instructions"), flush=True)
        if len(sources) == 2 and all(results[n]["posting"]["instructions"] for n, _ in sources):
            (a, _), (b, _) = sources
            for phase in PHASES:
                print(f"{a} / {b} {phase:8} instructions {results[a][phase]['instructions'] / results[b][phase]['instructions']:.3f}")
    finally:
        pg.stop()
        remove_tree(workdir)
    return results


def main() -> None:
    if sys.argv[1:2] == ["--path-child"]:
        url, ledger_id, secret, requests, crowd, pool, batches, marker = sys.argv[2:10]
        _child(url, ledger_id, secret, int(requests), int(crowd), int(pool), int(batches), marker == "1")
        return
    if sys.argv[1:2] == ["--seed-child"]:
        _seed_child(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, help="a checkout whose cell is measured too")
    parser.add_argument("--requests", type=int, default=400, help="measured requests per phase")
    parser.add_argument("--crowd", type=int, default=32, help="clients at once in the crowded phase")
    parser.add_argument("--pool", type=int, default=4, help="the pool's connections (min = max)")
    parser.add_argument("--batches", type=int, default=5, help="timed batches per phase (the fastest counts)")
    args = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    from loadtests.httpload import interrupt_on_sigterm  # (imports stay local: the children run other checkouts)

    interrupt_on_sigterm()
    path_cost([("cell", here)] + ([("baseline", args.baseline.resolve())] if args.baseline else []),
              args.requests, args.crowd, args.pool, args.batches)


if __name__ == "__main__":
    main()
