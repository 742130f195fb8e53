"""The cell's Prometheus listener, apart from the public API port: GET /metrics on metrics_host:metrics_port.

A minimal HTTP/1.0 responder on asyncio (one request per connection): it runs in the API process's own loop, so
the queue gauges are read from the database at scrape time as before. With CELL_PROCESSES > 1 every process
binds the port with SO_REUSEPORT and answers from the shared prometheus_client multiprocess directory
(cell/__main__.py sets it up), so whichever process a scrape lands on reports the whole cell. What a client may
hold is bounded: a request head of `REQUEST_BYTES_MAX`, `READ_S_MAX` to send it, and at most `CONNECTIONS_MAX`
connections served at once by a process (one past that is closed at once: Prometheus scrapes a target one request
at a time)."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
)

from cell.service.nudge import queue_gauges
from cell.settings import CellSettings

log = logging.getLogger(__name__)
REQUEST_BYTES_MAX = 8192  # a scrape's request line and headers; anything longer is not a scraper
READ_S_MAX = 5.0
CONNECTIONS_MAX = 8  # served at once, per process


def _registry(multiprocess: bool):
    if not multiprocess:
        return REGISTRY
    from prometheus_client import multiprocess as mp

    registry = CollectorRegistry()
    mp.MultiProcessCollector(registry)
    return registry


async def start(settings: CellSettings, pool: asyncpg.Pool, *, read_s: float = READ_S_MAX,
                connections_max: int = CONNECTIONS_MAX) -> asyncio.Server | None:
    """Listen on the metrics port (None when metrics_port is 0)."""
    if not settings.metrics_port:
        return None
    multiprocess = settings.processes > 1
    served = 0  # connections being served now

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        if served >= connections_max:
            writer.close()  # as many as it serves at once already
            return
        served += 1
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), read_s)
            parts = head.split(b"\r\n", 1)[0].split()
            if len(parts) < 2 or parts[0] != b"GET" or parts[1].split(b"?", 1)[0] != b"/metrics":
                await _answer(writer, 404, b"text/plain", b"not found\n")
                return
            try:
                async with pool.acquire(timeout=settings.db_acquire_s_max) as conn:
                    await queue_gauges(conn, settings.unapplied_age_max_s)
            except Exception as exc:  # noqa: BLE001 - the other series are still worth a scrape
                log.warning("queue gauges not refreshed: %s", exc)
            await _answer(writer, 200, CONTENT_TYPE_LATEST.encode(), generate_latest(_registry(multiprocess)))
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        finally:
            served -= 1
            writer.close()

    server = await asyncio.start_server(handle, settings.metrics_host, settings.metrics_port,
                                        limit=REQUEST_BYTES_MAX, reuse_port=multiprocess)
    log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
    return server


async def _answer(writer: asyncio.StreamWriter, status: int, content_type: bytes, body: bytes) -> None:
    reason = b"OK" if status == 200 else b"Not Found"
    writer.write(b"HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                 % (status, reason, content_type, len(body)) + body)
    await writer.drain()
