"""A client connection's requests whose header lines it has seen before (read without the parser) reach the cell, and
their answers the client, exactly as requests parsed in full do: the router's server and upstream code driven in one
process, with stand-in transports on both sides. The request lines read so are read the same by the parser."""

from __future__ import annotations

import asyncio
import base64
import time

import httptools

from router import upstream
from router.routes import build_table
from router.server import _PLAIN_REQUEST_LINE, Connection, RouterServer
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

    def get_write_buffer_size(self) -> int:
        return 0  # what is written is taken at once

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
        known += client.request is None and client.known is not None and client.known.read(chunk, 1024) is not None
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
    assert known == 7  # b, c, the second POST of a length, e, g, k, q
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


def test_a_plain_request_line_is_one_the_parser_reads_the_same():
    class Seen:
        def __init__(self) -> None:
            self.url = b""
            self.done = False

        def on_url(self, url: bytes) -> None:
            self.url += url

        def on_message_complete(self) -> None:
            self.done = True

    for method in (b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS"):
        for target in [b"/", b"/a/b?c=d&e=%20#f"] + [b"/a" + bytes([c]) + b"b" for c in range(0x21, 0x7F)]:
            line = method + b" " + target + b" HTTP/1.1\r\n"
            match = _PLAIN_REQUEST_LINE.match(line)
            seen = Seen()
            parser = httptools.HttpRequestParser(seen)
            parser.feed_data(line + b"host: r\r\ncontent-length: 0\r\n\r\n")
            assert match is not None and match.end() == len(line)
            assert (seen.done, parser.get_method(), seen.url) == (True, method, target) == (True, *match.groups())
    for line in (b"GET / HTTP/1.0\r\n", b"GET http://a/ HTTP/1.1\r\n", b"GET /a b HTTP/1.1\r\n", b"get / HTTP/1.1\r\n",
                 b"GET /\xc3\xa9 HTTP/1.1\r\n", b"GET /\t HTTP/1.1\r\n", b"GET / HTTP/1.1\n", b"\r\nGET / HTTP/1.1\r\n"):
        assert _PLAIN_REQUEST_LINE.match(line) is None


ANSWERS = [
    ANSWER,
    (b"HTTP/1.1 201 Created\r\ndate: Mon, 30 Nov 2026 07:00:00 GMT\r\nserver: uvicorn\r\ncontent-type: a/b\r\n"
     b"Content-Length: 3\r\nx-cell: c\r\n\r\nabc"),
    b"HTTP/1.1 503 \r\ncontent-length:  0 \r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
    b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
    b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\ncontent-length: 0\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\ncontent-length: 2\r\n\r\nok",  # no body, whatever its length says
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nx-folded: a\r\n b\r\ncontent-length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nx-lf: a\ncontent-length: 2\r\n\r\nok",
    b"HTTP/1.1 200 \xc3\xa9\r\ncontent-length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nx-bad\x00: a\r\ncontent-length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nx-bad: a\x01b\r\ncontent-length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\nok",
]


def test_a_cells_answer_read_whole_is_relayed_as_the_parser_reads_it():
    def relayed(chunks: list[bytes]):
        got = []
        conn = upstream._Connection(1000, set())
        conn.connection_made(Side())
        conn.send(b"GET / HTTP/1.1\r\n\r\n", False, 0.0, lambda _, response, error: got.append(
            (response.status, response.head, response.body) if error is None else type(error)))
        for chunk in chunks:
            conn.data_received(chunk)
        return got, conn.closed

    for answer in ANSWERS:
        for _ in range(2):  # the second time with the lines' facts remembered
            whole = relayed([answer])
            assert whole == relayed([answer[:12], answer[12:]]), answer  # the parser's reading
    assert relayed([ANSWER])[0] == [(200, b"content-type: application/json\r\ncontent-length: 2\r\n", b"{}")]


def test_answers_read_whole_and_parsed_in_turn_on_one_connection_are_relayed_as_on_fresh_ones():
    """A connection's exchange state is reset only after an answer the parser read (one read whole leaves it as it
    was): on one kept-alive connection, answers read either way in turn come out as each does on a fresh one."""
    def outcome(got: list):
        return lambda _, response, error: got.append(
            (response.status, response.head, response.body) if error is None else type(error))

    def fresh(chunks: list[bytes]):
        got = []
        conn = upstream._Connection(1000, set())
        conn.connection_made(Side())
        conn.send(b"GET / HTTP/1.1\r\n\r\n", False, 0.0, outcome(got))
        for chunk in chunks:
            conn.data_received(chunk)
        return got, conn.closed

    def kept_on(answer: bytes) -> bool:
        got, closed = fresh([answer])
        return len(got) == 1 and type(got[0]) is tuple and not closed

    kept = [answer for answer in ANSWERS if kept_on(answer)]  # answered, and the connection kept
    assert len(kept) >= 5
    conn = upstream._Connection(1000, set())
    conn.connection_made(Side())
    got = []
    expected = []
    for answer in kept + kept[::-1]:
        for chunks in ([answer], [answer[:12], answer[12:]], [answer]):  # read whole, parsed, whole again
            conn.send(b"GET / HTTP/1.1\r\n\r\n", False, 0.0, outcome(got))
            for chunk in chunks:
                conn.data_received(chunk)
            expected += fresh(chunks)[0]
            assert not conn.closed and conn.on_done is None, answer
    assert got == expected


def test_plain_answer_lines_and_status_lines_are_ones_the_parser_reads_whole():
    def parsed(head: bytes) -> bool:
        class Head:
            ended = False

            def on_headers_complete(self) -> None:
                Head.ended = True

        try:
            httptools.HttpResponseParser(Head()).feed_data(head + b"\r\n")
        except httptools.HttpParserError:
            return False
        return Head.ended

    heads = [(b"HTTP/1.1 200 OK\r\n", b"x-a" + bytes([c]) + b"b: v\r\n") for c in range(256)]
    heads += [(b"HTTP/1.1 200 OK\r\n", b"x-a: v" + bytes([c]) + b"w\r\n") for c in range(256)]
    heads += [(b"HTTP/1.1 200 O" + bytes([c]) + b"K\r\n", b"x-a: b\r\n") for c in range(256)]
    heads += [(b"HTTP/1.1 %d \r\n" % status, b"") for status in range(100, 1000)]
    read_plainly = 0
    for status_line, lines in heads:
        if upstream._PLAIN_STATUS_LINE.fullmatch(status_line) and upstream._PLAIN_LINES.fullmatch(lines):
            read_plainly += 1
            assert parsed(status_line + lines), status_line + lines
    # A name's 77 token characters and a colon (the rest is the value), a value's and a reason's tab and 95
    # printable characters, the statuses 200-599.
    assert read_plainly == 78 + 96 + 96 + 400


def test_known_status_lines_are_read_as_the_pattern_reads_them():
    # A status line looked up (whole_answer's shortcut) is one the pattern matches, with the same status, and one
    # whose answer may have a body: the shortcut reads nothing the pattern would not.
    assert len(upstream._KNOWN_STATUS_LINES) > 40
    for line, status in upstream._KNOWN_STATUS_LINES.items():
        match = upstream._PLAIN_STATUS_LINE.fullmatch(line)
        assert match is not None and int(match.group(1)) == status and status not in (204, 304), line
    body = b'{"a":1}'
    for line in (b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 Fine\r\n", b"HTTP/1.1 404 Not Found\r\n",
                 b"HTTP/1.1 599 \r\n"):
        got = upstream.whole_answer(line + b"content-length: 7\r\n\r\n" + body, 1000)
        assert (got.status, got.head, got.body) == (int(line[9:12]), b"content-length: 7\r\n", body), line
    for line in (b"HTTP/1.1 204 No Content\r\n", b"HTTP/1.1 304 Not Modified\r\n", b"HTTP/1.0 200 OK\r\n"):
        assert upstream.whole_answer(line + b"content-length: 0\r\n\r\n", 1000) is None, line
