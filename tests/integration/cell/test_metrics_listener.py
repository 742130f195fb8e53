"""The cell's metrics listener: a cell of several processes (CELL_PROCESSES=2) does not serve /metrics on the public
port, and every scrape of the metrics port, whichever process answers it, reports the requests all processes served;
a connection that sends half a request is closed after the read bound, and no more connections than the listener's
bound are served at once (each past it is closed at once)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time

import asyncpg
import httpx
import pytest

from cell.api import metrics_server
from control_plane.devstack import free_port
from tests.integration.conftest import cell_settings


def _served(text: str) -> float:
    # Requests for the OpenAPI document, summed over every process.
    return sum(float(m.group(1)) for m in re.finditer(
        r'^ledger_requests_total\{[^}]*path="/schema/openapi.json"[^}]*status_code="200"[^}]*\} (\S+)$', text,
        re.MULTILINE))


def test_a_multi_process_cell_serves_its_metrics_apart_from_the_public_port(make_database):
    url = make_database("cell_metrics_mp")
    port, metrics_port = free_port(), free_port()
    env = {**os.environ, "CELL_DATABASE_URL": url, "CELL_PORT": str(port), "CELL_PROCESSES": "2",
           "CELL_METRICS_PORT": str(metrics_port), "CELL_POSTING_MODE": "sync", "CELL_DB_POOL_MIN": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen([sys.executable, "-m", "cell"], env=env, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the cell did not start"
            time.sleep(0.1)
        assert httpx.get(base + "/metrics").status_code == 404
        for _ in range(10):  # new connections: the kernel spreads them over both processes
            assert httpx.get(base + "/schema/openapi.json").status_code == 200
        for _ in range(4):
            scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
            assert scraped.status_code == 200
            assert _served(scraped.text) == 10, scraped.text[-2000:]
    finally:
        proc.terminate()
        proc.wait(20)


READ_S = 0.5
CONNECTIONS_MAX = 4
DEADLINE_S = 20.0  # a bound on a hung close, never a wait for one


@contextlib.asynccontextmanager
async def _listener(database_url: str, read_s: float):
    """The metrics listener alone, on a real database pool, with small bounds: its port."""
    settings = cell_settings(database_url, metrics_port=free_port())
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    server = await metrics_server.start(settings, pool, read_s=read_s, connections_max=CONNECTIONS_MAX)
    try:
        yield settings.metrics_port
    finally:
        server.close()
        await server.wait_closed()
        await pool.close()


async def _half_request(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\n")  # its headers never come
    await writer.drain()
    return reader, writer


async def _closed(reader: asyncio.StreamReader) -> bool:
    """The listener closed the connection (a reset, when it closes with the half request unread), within the
    deadline (past it, TimeoutError fails the test)."""
    try:
        return await asyncio.wait_for(reader.read(), DEADLINE_S) == b""
    except ConnectionResetError:
        return True


async def _scrape(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        return await asyncio.wait_for(reader.read(), DEADLINE_S)
    finally:
        writer.close()


async def test_a_half_request_to_the_metrics_listener_is_closed_after_the_read_bound(cell_database_url):
    async with _listener(cell_database_url, READ_S) as port:
        assert b"# TYPE" in await _scrape(port)
        reader, writer = await _half_request(port)
        start = time.monotonic()
        assert await _closed(reader)
        assert time.monotonic() - start >= READ_S * 0.9
        writer.close()


async def test_the_metrics_listener_closes_connections_past_its_bound_at_once(cell_database_url):
    # Held connections outlast the test (a 60 s read bound): only the connections bound closes the others.
    async with _listener(cell_database_url, 60.0) as port:
        held = [await _half_request(port) for _ in range(CONNECTIONS_MAX)]
        extra = [await _half_request(port) for _ in range(10)]
        for reader, _ in extra:
            # Closed at once; served, it would wait the 60 s read bound (the deadline fails the test first).
            assert await _closed(reader)
        for reader, _ in held:  # still open, waiting for their heads
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.read(1), 0.2)
        for _, writer in held + extra:
            writer.close()
        # Once they are gone, scrapes are served again.
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                if b"# TYPE" in await _scrape(port):
                    break
            except ConnectionResetError:  # closed at once: a held connection's close not yet seen by the listener
                pass
            assert time.monotonic() < deadline, "no scrape served after the held connections closed"
            await asyncio.sleep(0.01)
