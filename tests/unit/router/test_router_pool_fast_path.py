"""The pool's fast path (router/upstream.py's UpstreamPool.try_send, no task): a kept-alive connection to the cell is
used and handed back, and a request the cell dropped on it is tried once more on a fresh connection only when it may
be repeated. The cell is a stand-in on a real local socket."""

from __future__ import annotations

import asyncio

from router.upstream import ResponseFailed, UpstreamPool, _Connection

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


class DroppingCell(asyncio.Protocol):
    """Answers a connection's requests (heads without bodies of their own lines), except its second one: the
    connection is closed instead, unanswered, as by a cell that closed it while the router thought it idle."""

    def __init__(self, connections: list) -> None:
        connections.append(self)
        self.heads = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        for _ in range(data.count(b"\r\n\r\n")):
            self.heads += 1
            if self.heads == 2:
                self.transport.close()
                return
            self.transport.write(ANSWER)


async def test_the_fast_path_reuses_a_connection_and_repeats_only_what_may_be_repeated():
    loop = asyncio.get_running_loop()
    connections: list[DroppingCell] = []
    server = await loop.create_server(lambda: DroppingCell(connections), "127.0.0.1", 0)
    pool = UpstreamPool(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", connections_max=4,
                        connect_timeout_s=5.0, timeout_s=30.0, idle_s_max=300.0, body_bytes_max=1000)

    async def fast(method: bytes, body: bytes):
        ended = loop.create_future()
        assert pool.try_send(method, b"/a", [(b"x-a", b"b")], body, lambda *outcome: ended.set_result(outcome))
        return await asyncio.wait_for(ended, 30)

    try:
        assert not pool.try_send(b"GET", b"/a", [], b"", lambda *outcome: None)  # no idle connection yet
        first = await pool.request(b"GET", b"/a", [], b"")  # opens one, kept idle
        assert (first.status, first.body, len(connections), pool.busy) == (200, b"{}", 1, 0)
        # Its second request is dropped: a GET goes once more, on a fresh connection, and its answer comes.
        response, error = await fast(b"GET", b"")
        assert error is None and (response.status, response.head, response.body) == (
            200, b"content-type: application/json\r\ncontent-length: 2\r\n", b"{}")
        assert (len(connections), pool.busy, len(pool.idle)) == (2, 0, 1)
        # The fresh one's second request is dropped too: a POST is never sent twice.
        response, error = await fast(b"POST", b"{}")
        assert response is None and isinstance(error, ResponseFailed)
        assert (len(connections), pool.busy, len(pool.idle)) == (2, 0, 0)
        # Answered on the fast path: the connection is handed back, with nothing of the exchange kept.
        await pool.request(b"GET", b"/a", [], b"")
        response, error = await fast(b"GET", b"")
        assert error is None and response.body == b"{}"
        idle = pool.idle[0]
        assert (pool.busy, idle.caller, idle.sent, idle.on_done) == (0, None, None, None)
    finally:
        pool.close()
        server.close()


class Held:
    """A stand-in transport to a cell: takes what is written, closes when told."""

    def __init__(self) -> None:
        self.closing = False

    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True


async def test_an_exchange_cancelled_as_its_answer_comes_leaves_no_connection_open():
    """The client goes (its task is cancelled) in the same turn of the loop as the cell's answer comes: the
    connection was neither handed back nor closed, an open socket nobody would use again; it is closed."""
    conn = _Connection(1000, set())
    transport = Held()
    conn.connection_made(transport)
    exchange = asyncio.get_running_loop().create_task(conn.exchange(b"GET / HTTP/1.1\r\n\r\n", False, 1e12))
    await asyncio.sleep(0)  # the request written; the task waits for the answer
    conn.data_received(ANSWER)  # the answer settles the waiter...
    exchange.cancel()  # ... and the client goes before the task runs again
    try:
        await exchange
    except asyncio.CancelledError:
        pass
    assert exchange.cancelled() and conn.closed and transport.closing
