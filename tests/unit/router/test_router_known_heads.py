"""A client connection's requests whose header lines it has seen before (parsed without a call per header) reach the
cell, and their answers the client, exactly as requests parsed in full do: the router's server and upstream code
driven in one process, with stand-in transports on both sides."""

from __future__ import annotations

import asyncio
import base64
import time

from router import upstream
from router.routes import build_table
from router.server import Connection, RouterServer
from router.settings import RouterSettings

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


class Side:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_extra_info(self, name):
        return ("10.1.2.3", 40000) if name == "peername" else None

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


async def exchanged(chunks: list[bytes]) -> tuple[list[bytes], bytes, int]:
    """What the cell gets and what the client gets when `chunks` arrive one by one on one connection; and how many
    requests went through the known-lines parser."""
    server = RouterServer(RouterSettings(metrics_port=0, head_bytes_max=1024))
    server.loop = asyncio.get_running_loop()
    router = server.router
    router.table = build_table([{"tenant_id": "alice", "cell": "c1", "api_url": "http://127.0.0.1:9", "epoch": 1,
                                 "rate_limit_per_s": 0, "rate_burst": 0}], 0, 0)
    pool = router._pool("http://127.0.0.1:9")
    cell = upstream._Connection(pool.body_bytes_max, pool.in_flight)
    cell_side = Side()
    cell.connection_made(cell_side)
    cell.last_used = time.monotonic() + 1e9
    pool.idle.append(cell)
    client = Connection(server)
    client_side = Side()
    client.connection_made(client_side)
    known = 0
    forwarded = []
    for chunk in chunks:
        known += client.request is None and client.known is not None and client.known.fits(chunk)
        client.data_received(chunk)
        while cell_side.written:
            forwarded.append(cell_side.written.pop(0))
            cell.data_received(ANSWER)
    pool.close()
    return forwarded, b"".join(client_side.written), known


def get(target: str, auth: bytes = b"alice:k", extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    return (b"GET " + target.encode() + b" HTTP/" + version + b"\r\nHost: r\r\nAuthorization: Basic "
            + base64.b64encode(auth) + b"\r\n" + extra + b"\r\n")


def post(body: bytes, extra: bytes = b"") -> bytes:
    return (b"POST /api/t HTTP/1.1\r\nHost: r\r\nAuthorization: Basic " + base64.b64encode(b"alice:k")
            + b"\r\nContent-Length: %d\r\n" % len(body) + extra + b"\r\n" + body)


# Each item: chunks that arrive one by one, making whole requests.
CONVERSATION = [
    [get("/api/a")], [get("/api/b?x=1")], [get("/api/c")],  # the same lines: known from the second on
    [post(b"{}")], [post(b"[]")], [post(b"{1}")], [post(b"[1]")],  # a body of the same length, then of another
    [get("/api/d", extra=b"X-Extra:  spaced  \r\n")], [get("/api/e", extra=b"X-Extra:  spaced  \r\n")],
    [get("/api/f", auth=b"bob:k")], [get("/api/g")],  # other credentials, then the first ones again
    [get("/api/h") + get("/api/i")],  # two in one chunk
    [get("/api/j")[:20], get("/api/j")[20:]], [get("/api/k")],  # one in two chunks
    [b"\r\n" + get("/api/l")],  # a stray empty line before a request
    [get("/api/m", extra=b"Expect: 100-continue\r\n")], [get("/api/n", extra=b"Expect: 100-continue\r\n")],
    [get("/api/o", extra=b"Transfer-Encoding: chunked\r\n")[:-2] + b"\r\n0\r\n\r\n"],
    [get("/api/p", extra=b"X-Big: " + b"b" * 900 + b"\r\n")],
    [get("/api/q", extra=b"X-Big: " + b"b" * 900 + b"\r\n")],
    [get("/api/" + "q" * 200, extra=b"X-Big: " + b"b" * 900 + b"\r\n")],  # over head_bytes_max with its target
]


async def test_requests_with_known_lines_are_relayed_as_those_parsed_in_full():
    on_one, answers_on_one, known = await exchanged([chunk for chunks in CONVERSATION for chunk in chunks])
    # The same requests, each on a fresh connection (parsed in full), one after another.
    alone = [await exchanged([b"".join(chunks)]) for chunks in CONVERSATION]
    assert known >= 8
    assert on_one == [sent for forwarded, _, _ in alone for sent in forwarded]
    assert on_one[0] == (b"GET /api/a HTTP/1.1\r\nhost: 127.0.0.1:9\r\nauthorization: Basic YWxpY2U6aw==\r\n"
                         b"x-forwarded-for: 10.1.2.3\r\n\r\n")
    assert answers_on_one == b"".join(answers for _, answers, _ in alone)
    assert answers_on_one.count(b"HTTP/1.1 200 OK") == len(on_one) and b" 431 " in answers_on_one


async def test_a_request_after_one_that_closes_or_a_bad_one_is_not_read():
    for last in (get("/api/a", version=b"1.0"), get("/api/a", extra=b"Connection: close\r\n"), b"BAD\x00\r\n\r\n"):
        forwarded, _, _ = await exchanged([get("/api/x"), get("/api/y"), last, get("/api/z")])
        assert [sent.split(b" ")[1] for sent in forwarded] == [b"/api/x", b"/api/y"] + (
            [b"/api/a"] if last.startswith(b"GET") else [])
