"""A lean HTTP/1.1 keep-alive load generator (asyncio streams): on 2 shared cores the client's own CPU
per request must stay small next to the server's, which httpx's would not."""

from __future__ import annotations

import asyncio
import base64
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable


class Connection:
    def __init__(self, host: str, port: int, auth: tuple[str, str] | None) -> None:
        self.host, self.port = host, port
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode() if auth else None
        self._auth = f"Authorization: Basic {token}\r\n" if token else ""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> "Connection":
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def request(self, method: str, path: str, body: bytes = b"", headers: str = "") -> tuple[int, bytes]:
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self._auth}{headers}"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:].strip())
        payload = await self.reader.readexactly(length) if length else b""
        return status, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


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
