"""The cell's HTTP server and clients that do not read, or pipeline: what it holds for them stays bounded, it lets
them go, and its own answers never come before the answers to requests before them. A real uvicorn server with
cell.api.server's protocol on the loopback, in the test's loop, with a stand-in app."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tracemalloc

import uvicorn

from cell.api.server import CellHttpProtocol, HttpBounds

KEEP_ALIVE_S = 0.3
WITHIN_S = 30  # a bound on what should take a keep-alive bound or two, never a wait


@contextlib.asynccontextmanager
async def serve(body: bytes, keep_alive_s: float = KEEP_ALIVE_S, delay_s: float = 0.0,
                bounds: HttpBounds = HttpBounds(65_536, 65_536 + 4 * 1_048_576, 30.0)):
    """The server, answering every request with `body` (after `delay_s`); yields (server, port)."""
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await asyncio.sleep(delay_s)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    config = uvicorn.Config(app, http=CellHttpProtocol, lifespan="off", access_log=False, log_level="critical",
                            timeout_keep_alive=keep_alive_s, timeout_graceful_shutdown=1)
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    server.server_state.http_bounds = bounds
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(100)
    await server.startup(sockets=[sock])
    try:
        yield server, sock.getsockname()[1]
    finally:
        server.force_exit = True
        for conn in list(server.server_state.connections):
            conn.transport.abort()
        await server.shutdown()
        sock.close()


def _reads_nothing(port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    return s


async def _held(server) -> bool:
    """Until the connection is up and holds answers its client has not read."""
    deadline = asyncio.get_running_loop().time() + WITHIN_S
    while not any(conn.transport.get_write_buffer_size() for conn in server.server_state.connections):
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def _let_go(server) -> bool:
    deadline = asyncio.get_running_loop().time() + WITHIN_S
    while server.server_state.connections:
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_a_client_that_reads_nothing_of_its_answers_is_let_go():
    """A large answer never read: on a connection that closes after it, on a kept-alive one, or behind pipelined
    requests (each waiting for the one before to leave): the connection, its buffer and its task are dropped a
    keep-alive bound or two after the client last read anything."""
    for requests in (b"GET / HTTP/1.1\r\nHost: cell\r\nConnection: close\r\n\r\n",
                     b"GET / HTTP/1.1\r\nHost: cell\r\n\r\n", b"GET / HTTP/1.1\r\nHost: cell\r\n\r\n" * 200):
        async with serve(b"x" * (8 * 1024 * 1024)) as (server, port):
            s = _reads_nothing(port)
            try:
                s.send(requests)
                assert await _held(server), requests[:60]
                assert await _let_go(server), requests[:60]
            finally:
                s.close()


async def test_pipelined_requests_queue_a_reads_worth_at_most():
    """A client that pipelines small requests (reading its answers) is read from only once those read are answered:
    the queue holds what one read brought, not all it sent."""
    request = b"GET /x HTTP/1.1\r\nHost: cell\r\nX-Pad: " + b"p" * 30 + b"\r\n\r\n"
    async with serve(b"ok", keep_alive_s=30, delay_s=0.001) as (server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def read_answers() -> None:
            while await reader.read(1 << 20):
                pass

        reading = asyncio.ensure_future(read_answers())
        writer.write(request * 60_000)
        deepest = 0
        tracemalloc.start()
        try:
            for _ in range(200):
                await asyncio.sleep(0.01)
                for conn in server.server_state.connections:
                    deepest = max(deepest, len(conn.pipeline))
        finally:
            tracemalloc.stop()
            writer.close()
            reading.cancel()
    assert 0 < deepest <= 2 * 256 * 1024 // len(request), deepest  # a read brings 256 KiB at most


async def test_a_client_that_reads_slowly_gets_every_answer():
    """The bound is on clients that read nothing: one reading a large answer slowly, for far longer than the
    keep-alive bound, gets all of it (each look finds it read more)."""
    size, keep_alive_s = 4 * 1024 * 1024, 0.5
    async with serve(b"y" * size, keep_alive_s) as (server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=64 * 1024)
        writer.write(b"GET / HTTP/1.1\r\nHost: cell\r\nConnection: close\r\n\r\n")
        got, started = 0, asyncio.get_running_loop().time()
        while data := await asyncio.wait_for(reader.read(64 * 1024), WITHIN_S):
            got += len(data)
            await asyncio.sleep(0.02)  # ~3 MB/s at most: over a second, several keep-alive bounds
        slow_s = asyncio.get_running_loop().time() - started
        writer.close()
    assert got > size and slow_s > 2 * keep_alive_s, (got, slow_s)


async def _all(reader: asyncio.StreamReader) -> bytes:
    """Everything until the server closes the connection (within a generous bound)."""
    out = b""
    while chunk := await asyncio.wait_for(reader.read(65536), WITHIN_S):
        out += chunk
    return out


async def test_the_answer_to_a_request_comes_before_the_servers_own_to_what_follows_it():
    """A posting, then bytes that are not HTTP, or a request head past its bound, in the same pipeline: the posting's
    answer comes first (a 400 or 431 in its place would tell the client a committed posting failed), then the
    connection closes."""
    bounds = HttpBounds(1024, 1024 + 4 * 1024, 30.0)
    posting = b"POST /api/ledger_transactions HTTP/1.1\r\nHost: cell\r\nContent-Length: 2\r\n\r\n{}"
    for after in ([b"NOT HTTP\r\n\r\n"], [b"GET /next HTTP/1.1\r\nX-Big: ", b"h" * 5000]):
        async with serve(b"made", keep_alive_s=5, delay_s=0.5, bounds=bounds) as (server, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(posting + after[0])
            for more in after[1:]:
                # The next request begun in the data read so far: what follows is counted against its bound.
                deadline = asyncio.get_running_loop().time() + WITHIN_S
                while not any(c._request_data != -1 and c.cycle is not None  # (-1: cell.api.server's _NONE)
                              for c in server.server_state.connections):
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.005)
                writer.write(more)
            answers = await _all(reader)
            writer.close()
        assert answers.startswith(b"HTTP/1.1 200 ") and answers.endswith(b"made"), (after[0][:20], answers)
        assert answers.count(b"HTTP/1.1 ") == 1, answers


async def test_a_declined_upgrade_offer_is_answered_then_the_connection_closes():
    """The parser reads nothing after an upgrade offer: the offer is answered as plain HTTP/1.1 and the connection
    closes, where a request pipelined behind it waited, unanswered, for the keep-alive bound."""
    async with serve(b"plain", keep_alive_s=30) as (server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /first HTTP/1.1\r\nHost: cell\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"
                     b"GET /second HTTP/1.1\r\nHost: cell\r\n\r\n")
        answers = await _all(reader)  # to the close: within WITHIN_S, not the 30 s keep-alive bound
        writer.close()
    assert answers.startswith(b"HTTP/1.1 200 ") and answers.endswith(b"plain") and b"connection: close" in answers
