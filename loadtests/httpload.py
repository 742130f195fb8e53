"""A lean HTTP/1.1 keep-alive load generator (an asyncio protocol per connection): on 2 shared cores the
client's own CPU per request must stay small next to the server's, which httpx's would not. `run(main)`
runs a benchmark's coroutine on uvloop, where this client costs about half what it does on asyncio's loop, and stops
it on SIGTERM as on Ctrl-C (`interrupt_on_sigterm` does the same for a synchronous one); both have what the
benchmark starts stopped if it is killed outright (`loadtests/reaper.py`)."""

from __future__ import annotations

import asyncio
import base64
import signal
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Coroutine

import uvloop

from loadtests import reaper

HEAD_BYTES_MAX = 64 * 1024


def run(main: Coroutine, *, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop):
    """What every benchmark's command line runs its coroutine with: asyncio.run on uvloop (`loop_factory=None`:
    asyncio's own loop), stopped by SIGTERM as by Ctrl-C. A benchmark starts servers (PostgreSQL, cells, routers,
    Valkey) and stops them in its `finally` blocks; killed by SIGTERM (`timeout`, a cancelled job, `kill`) with
    Python's default action, it left them running, holding their ports, memory and temporary directories and
    skewing the next measurement on the same cores. Here the first SIGTERM cancels `main` (those blocks run, the
    servers stop) and the process exits 143; more SIGTERMs meanwhile are ignored (they come in pairs: `timeout`
    signals make and its process group), so the stopping is not cut short; Ctrl-C or SIGKILL still cut it, and then
    `reaper.guard`'s watcher stops what is left and removes the benchmark's directories."""
    reaper.guard()
    main_task: asyncio.Task | None = None
    terminated = False

    async def tracked():
        nonlocal main_task
        main_task = asyncio.current_task()
        return await main

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        def on_sigterm(signum, frame) -> None:  # as asyncio.Runner answers SIGINT, the first time
            nonlocal terminated
            if terminated:
                return
            if main_task is None or main_task.done():
                raise KeyboardInterrupt()
            terminated = True
            main_task.cancel()
            runner.get_loop().call_soon_threadsafe(lambda: None)  # wake the loop to deliver the cancellation

        previous = signal.signal(signal.SIGTERM, on_sigterm)
        try:
            return runner.run(tracked())
        except asyncio.CancelledError:
            if terminated:
                raise SystemExit(128 + signal.SIGTERM) from None
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)


def interrupt_on_sigterm() -> None:
    """A synchronous benchmark's command line: SIGTERM raises KeyboardInterrupt, as Ctrl-C does, so that the
    `finally` blocks and context managers that stop its servers run; later ones are ignored (see `run`). Killed
    outright, what it started is stopped by `reaper.guard`'s watcher."""
    reaper.guard()
    def on_sigterm(signum, frame) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt()

    signal.signal(signal.SIGTERM, on_sigterm)


class Connection(asyncio.Protocol):
    """One keep-alive connection, one request at a time: the answer is framed by Content-Length (what every
    server here sends; a chunked or unframed answer is refused rather than misread)."""

    def __init__(self, host: str, port: int, auth: tuple[str, str] | None) -> None:
        self.host, self.port = host, port
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode() if auth else None
        self._auth = f"Authorization: Basic {token}\r\n" if token else ""
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future | None = None
        self._status = self._body_end = 0
        self._closed: Exception | None = None

    async def open(self) -> "Connection":
        await asyncio.get_running_loop().create_connection(lambda: self, self.host, self.port)
        return self

    def connection_made(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = exc or ConnectionError("the server closed the connection")
        self._settle(error=self._closed)

    def data_received(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        if not self._body_end:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > HEAD_BYTES_MAX:
                    self._settle(error=ValueError("answer head too large"))
                return
            head = bytes(buf[:end]).lower()
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                self._settle(error=ValueError("answer without Content-Length"))
                return
            line_end = head.find(b"\r\n", at + 2)
            length = int(head[at + 17:line_end if line_end > 0 else len(head)])
            self._status = int(head[9:12])
            self._body_end = end + 4 + length
        if len(buf) >= self._body_end:
            self._settle()

    def _settle(self, error: Exception | None = None) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        if error is not None:
            waiter.set_exception(error)
            return
        buf, end = self._buffer, self._body_end
        head_end = buf.find(b"\r\n\r\n") + 4
        waiter.set_result((self._status, bytes(buf[head_end:end])))
        del buf[:end]
        self._body_end = 0

    async def request(self, method: str, path: str, body: bytes = b"", headers: str = "") -> tuple[int, bytes]:
        if self._closed is not None:
            raise self._closed
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self._auth}{headers}"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(head.encode() + body)
        return await self._waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    def add(self, status: int, seconds: float) -> None:
        self.latencies.append(seconds)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def quantile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self, duration_s: float) -> dict:
        return {"requests": len(self.latencies), "per_s": len(self.latencies) / duration_s,
                "p50_ms": self.quantile(0.50) * 1000, "p90_ms": self.quantile(0.90) * 1000,
                "p99_ms": self.quantile(0.99) * 1000, "statuses": dict(sorted(self.statuses.items()))}


async def run_load(host: str, port: int, auth, *, duration_s: float, workers: list[tuple[str, int]],
                   make_request: dict[str, Callable[[], tuple[str, str, bytes]]]) -> dict[str, Stats]:
    """`workers`: (kind, count) pairs; each worker loops on one keep-alive connection until the deadline.
    make_request[kind]() gives (method, path, body), optionally followed by extra header lines and the name to
    count the request under (default: kind), so one connection may mix request types."""
    stats: dict[str, Stats] = defaultdict(Stats)
    deadline = time.perf_counter() + duration_s

    async def worker(kind: str) -> None:
        conn = await Connection(host, port, auth).open()
        try:
            while time.perf_counter() < deadline:
                method, path, body, *extra = make_request[kind]()
                t0 = time.perf_counter()
                status, _ = await conn.request(method, path, body, *extra[:1])
                stats[extra[1] if len(extra) > 1 else kind].add(status, time.perf_counter() - t0)
        finally:
            conn.close()

    await asyncio.gather(*[worker(kind) for kind, count in workers for _ in range(count)])
    return stats
