"""What the router relays of a cell's answer, whatever its framing: interim answers, chunked bodies, a cell
that closes, HEAD. The cell here is a scripted HTTP/1.1 server on a raw socket (the answers' bytes exactly)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from router_rig import basic, new_tenant_id

ANSWERS = {
    # An interim answer, then the real one in another write.
    b"/api/early": [b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Cell: raw\r\nContent-Length: 2\r\n\r\nok"],
    b"/api/chunked": [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kept: yes\r\n\r\n",
                  b"2\r\nok\r\n3\r\n!!!\r\n0\r\n\r\n"],
    b"/api/close": [b"HTTP/1.1 200 OK\r\nConnection: close\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok"],
    b"/api/plain": [b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nplain"],
    b"/readyz": [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"],  # the router's health check
}
HEAD_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n"


class ScriptedCell:
    """Answers each request with the bytes scripted for its path; closes after an answer that says so."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.connections = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def start(self) -> ScriptedCell:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                method, target = head.split(b" ", 2)[:2]
                length = next((int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                               if line.startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                parts = [HEAD_ANSWER] if method == b"HEAD" else ANSWERS[target]
                for part in parts:
                    writer.write(part)
                    await writer.drain()
                    await asyncio.sleep(0.01)  # each part in a read of its own
                if b"Connection: close" in parts[0]:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        self.server.close()


@pytest.fixture
async def raw_routed(platform):
    """(tenant, router, cell): a tenant on a scripted cell, and a router for it."""
    cell = await ScriptedCell().start()
    name = new_tenant_id("cell-raw")
    await platform.sql("INSERT INTO cells (name, api_url, database_url) VALUES ($1, $2, '')", name, cell.url)
    tenant = new_tenant_id()
    await platform.add_tenant(tenant, name)
    # Idle cell connections kept for as long as the test may take on a slow day.
    router = await platform.router(redis_url="", idle_connection_s_max=300.0)
    try:
        yield tenant, router, cell
    finally:
        await router.stop()
        await cell.stop()
        await platform.sql("DELETE FROM tenants WHERE id = $1", tenant)
        await platform.sql("DELETE FROM cells WHERE name = $1", name)


async def test_the_cells_answers_reach_the_client_whatever_their_framing(raw_routed):
    tenant, router, cell = raw_routed
    async with httpx.AsyncClient(base_url=router.url, headers=basic(tenant), timeout=30) as client:
        early = await client.get("/api/early")
        chunked = await client.get("/api/chunked")
        closed = await client.get("/api/close")
        after_close = await client.get("/api/plain")
        head = await client.head("/api/plain")
        after_head = await client.get("/api/plain")
    # The interim answer is the cell's connection's business: the client gets the real one.
    assert (early.status_code, early.text, early.headers["x-cell"]) == (200, "ok", "raw")
    assert early.headers["content-length"] == "2"
    # Re-framed with a length; the cell's other headers kept, its connection's dropped.
    assert (chunked.status_code, chunked.text, chunked.headers["x-kept"]) == (200, "ok!!!", "yes")
    assert chunked.headers["content-length"] == "5" and "transfer-encoding" not in chunked.headers
    assert (closed.status_code, closed.text, closed.headers["x-kept"]) == (200, "ok", "yes")
    assert "connection" not in closed.headers  # the cell closing its connection does not close the client's
    assert (after_close.status_code, after_close.text) == (200, "plain")
    # HEAD: the cell's content-length, no body; the connection goes on.
    assert (head.status_code, head.headers["content-length"], head.content) == (200, "10", b"")
    assert (after_head.status_code, after_head.text) == (200, "plain")


async def test_kept_alive_cell_connections_are_reused(raw_routed):
    tenant, router, cell = raw_routed
    async with httpx.AsyncClient(base_url=router.url, headers=basic(tenant), timeout=30) as client:
        answers = [await client.get("/api/plain") for _ in range(20)]
    assert [a.text for a in answers] == ["plain"] * 20
    assert cell.connections <= 2  # the router's health check may hold one of its own
