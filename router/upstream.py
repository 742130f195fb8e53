"""A lean pooled HTTP/1.1 client to the cells: keep-alive connections per cell, httptools parsing.

httpx costs several hundred microseconds of Python per request; this does the one thing the router
needs (send a buffered request, read a buffered answer) for a fraction of that. `UpstreamPool.try_send` is
the router's common path: a free slot and an idle kept-alive connection, the request written at once and the
answer handed to a callback (no task, no future, no timer: timeouts are found by a sweep); `request` is the
awaitable path for the rest (a new connection to open, a wait for a slot, a retry). An answer that arrives whole
in one read, framed by a content-length alone, in plain lines (what the cells send), is read without the parser
(`whole_answer`).
"""

from __future__ import annotations

import asyncio
import collections
import re
import time
from collections.abc import Callable
from http import HTTPStatus
from urllib.parse import urlsplit

import httptools
import msgspec

# Only these are retried on a fresh connection when a reused one turns out dead before answering:
# the cell may have applied a POST whose answer was lost, so a POST is never sent twice.
IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"})
# Sent without a content-length when their body is empty.
_BODILESS_METHODS = frozenset({b"GET", b"HEAD", b"DELETE", b"OPTIONS"})
# The framing of the cell's connection (hop-by-hop headers, RFC 9110 7.6.1, and the length), not the answer's:
# the router's client connection has its own.
_FRAMING = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer",
                      b"upgrade", b"content-length"})
# Searched in the head's lines put in lower case (case-sensitive, a pattern with a literal prefix: several
# times cheaper than IGNORECASE on the raw lines).
_FRAMING_FOUND = re.compile(b"\r\n(" + b"|".join(sorted(_FRAMING)) + b"):")
# Header lines -> whether they are framed by a content-length and nothing else of their connection's, and that
# length when the parser reads them so too, else -1 (`_facts`: a pure function of the bytes, remembered: a cell sends
# the same few heads over and over, and a dict look-up costs a fraction of the search). Bounded: emptied when full.
_PLAIN_HEADS: dict[bytes, tuple[bool, int]] = {}
_PLAIN_HEADS_MAX = 1024
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]{1,18})[ \t]*\r\n")
# Header lines the parser reads whole, as lines split at each CRLF (no other line break, no folded line, nothing it
# refuses: tests/unit/router/test_router_known_heads.py asks it), so that the head ends at the first empty line: a
# token, a colon and printable ASCII or tabs.
_PLAIN_LINES = re.compile(rb"(?:[-!#$%&'*+.^_`|~0-9A-Za-z]+:[\t -~]*\r\n)*")
# The status line of an answer the parser reads the same, when it is a final one that may have a body (not 204 or
# 304): HTTP/1.1 (so kept alive unless its lines say otherwise), a status 200-599, a reason phrase of printable ASCII.
_PLAIN_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([2-5][0-9][0-9]) [\t -~]*\r\n")
# Framing headers that announce a body (a transfer coding, a length other than 0), searched in a head's lines put in
# lower case after a CRLF: in an answer that has none (1xx, 204, 304: RFC 9112 6.3), what they announce would be read as
# the start of the next answer, another request's (_Connection.on_headers_complete).
_BODY_ANNOUNCED = re.compile(rb"\r\n(?:transfer-encoding:|content-length:[ \t]*(?!0*[ \t]*\r\n))")
# Those of them with their standard reason phrase (what the cells send), each with its status: looked up, not matched.
_KNOWN_STATUS_LINES = {b"HTTP/1.1 %d %s\r\n" % (status, status.phrase.encode()): status.value
                       for status in HTTPStatus if 200 <= status <= 599 and status not in (204, 304)}


class UpstreamError(Exception):
    pass


class ConnectFailed(UpstreamError):
    """Nothing was sent: the cell is not reachable."""


class ResponseFailed(UpstreamError):
    """The request may have reached the cell, but no complete answer came back."""

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


class UpstreamTimeout(ResponseFailed):
    pass


class Response(msgspec.Struct, gc=False):
    """The cell's answer. `head`: its header lines (each ending in CRLF) as the router's client gets them:
    the cell's connection framing dropped, a content-length given (for HEAD and 304, the cell's, if it sent one; for
    204, none). (A msgspec Struct, untracked by the garbage collector: it holds no container.)"""

    status: int
    head: bytes
    body: bytes


def relay_head(status: int, lines: bytes, body: bytes, is_head: bool) -> bytes:
    """`Response.head` from the header lines the cell sent. An answer framed by a content-length and nothing
    else of its connection's (what the cells send) is relayed as it came: no header is parsed in Python. A 204
    carries no content-length (RFC 9110 8.6); a 304, as a HEAD answer, only the cell's (what its 200 would have had)."""
    plain = (_PLAIN_HEADS.get(lines) or _facts(lines))[0]
    if plain and status != 204:
        return lines
    kept, length = [], None
    for line in lines.split(b"\r\n"):
        name, _, value = line.partition(b":")
        name = name.lower()
        if name not in _FRAMING:
            if name:
                kept += (name, b": ", value.strip(), b"\r\n")
        elif name == b"content-length":
            length = value.strip()
    if not is_head and status != 304:
        length = str(len(body)).encode()
    if length is not None and status != 204:
        kept += (b"content-length: ", length, b"\r\n")
    return b"".join(kept)


def _facts(lines: bytes) -> tuple[bool, int]:
    """What `_PLAIN_HEADS` remembers of header lines."""
    lower = (b"\r\n" + lines).lower()
    found = _FRAMING_FOUND.findall(lower)
    plain = len(found) == 1 and found[0] == b"content-length"
    length = _CONTENT_LENGTH.search(lower) if plain else None
    facts = plain, int(length.group(1)) if length is not None and _PLAIN_LINES.fullmatch(lines) else -1
    if len(_PLAIN_HEADS) >= _PLAIN_HEADS_MAX:
        _PLAIN_HEADS.clear()
    _PLAIN_HEADS[lines] = facts
    return facts


def whole_answer(data: bytes, body_bytes_max: int) -> Response | None:
    """The answer (its header lines relayed as they came) when `data` is one whole final answer whose lines are framed
    by a content-length alone and the parser reads alike (`_facts`), to a request that is not HEAD; else None (the
    parser reads it)."""
    start = data.find(b"\r\n") + 2
    status = _KNOWN_STATUS_LINES.get(data[:start])
    if status is None:
        line = _PLAIN_STATUS_LINE.match(data)
        if line is None:
            return None
        status = int(line.group(1))
        if status == 204 or status == 304:
            return None
        start = line.end()
    end = data.find(b"\r\n\r\n", start - 2)
    if end < 0:
        return None
    lines = data[start:end + 2]
    length = (_PLAIN_HEADS.get(lines) or _facts(lines))[1]
    if length < 0 or len(data) != end + 4 + length or length > body_bytes_max:
        return None
    return Response(status, lines, data[end + 4:])


class _Connection(asyncio.Protocol):
    __slots__ = ("transport", "parser", "on_done", "chunks", "heading", "lines", "body", "body_size",
                 "body_bytes_max", "closed", "last_used", "received", "head", "status", "deadline", "in_flight",
                 "parsed", "caller", "sent_method", "sent", "astray", "finished")

    def __init__(self, body_bytes_max: int, in_flight: set["_Connection"]) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        # Called once with (this connection, response, None) or (this connection, None, error) when the exchange in
        # flight ends.
        self.on_done: Callable[[_Connection, Response | None, ResponseFailed | None], None] | None = None
        # The pool's fast path (UpstreamPool.try_send): its caller's callback, the request's method and bytes.
        self.caller: Callable[[Response | None, ResponseFailed | None], None] | None = None
        self.sent_method = b""
        self.sent: bytes | None = None
        self.body_bytes_max = body_bytes_max
        self.closed = False
        self.last_used = 0.0
        # The pool's connections with an exchange in flight, and when this one's times out (the pool's sweep
        # looks: no timer is made and cancelled per exchange).
        self.in_flight = in_flight
        self.deadline = 0.0
        self.head = False  # set per exchange
        self.received = False  # set per exchange: whether a byte of its answer came
        self._reset()

    def _reset(self) -> None:
        # What came since the answer's first byte, while its head is incomplete: the head is taken from it
        # whole (httptools is given no on_header: a Python call per header is what this saves). Only the
        # parser's path changes these: an answer read whole leaves them as they are here (`parsed` says).
        self.parsed = False
        self.chunks: list[bytes] = []
        self.heading = True
        self.lines = b""
        self.body: list[bytes] = []
        self.body_size = 0
        self.status = 0
        # The connection is not reused after this answer: the answer says so, it had no body but its head announced one,
        # or bytes came behind it.
        self.astray = False
        self.finished = False  # the parser has read the final answer whole: it is handed on once the data is read

    # -- asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received = True
        on_done = self.on_done
        if on_done is None:
            # Bytes no request asked for (an idle kept-alive connection): a cell out of step. Fed to the parser they
            # would be read as the start of the next request's answer, another tenant's: the connection ends here.
            self.close()
            return
        if not self.parsed and not self.head:
            # An answer's first bytes: when they are the whole answer, read plainly, the parser is not needed.
            response = whole_answer(data, self.body_bytes_max)
            if response is not None:
                self.on_done = None  # (_end inlined: once per request)
                self.in_flight.discard(self)
                on_done(self, response, None)
                return
        self.parsed = True
        if self.heading:
            self.chunks.append(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not self.finished:
                self._fail(ResponseFailed(f"bad answer from the cell: {exc}"))
                self.close()
                return
            self.astray = True  # bytes behind the answer (on_message_begin)
        if self.finished:
            # Only now, with all of this data read: a connection reused at once (a pipelined client's next request,
            # sent from the callback) would have the rest of this data read as the start of its answer.
            self._done(reusable=not self.astray)

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._fail(ResponseFailed("the cell closed the connection"))

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        if self.finished:
            # Bytes behind the answer, in the same data: no request asked for them. Read on, they would be taken for
            # the start of the next request's answer, another tenant's: the parser stops, the connection ends.
            raise ResponseFailed("the cell sent bytes behind its answer")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        chunks = self.chunks
        raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        end = raw.find(b"\r\n\r\n")  # httptools has just read the head: it is all in there
        if end < 0:
            raise ResponseFailed("the cell's answer head is not CRLF-delimited")
        self.lines = raw[raw.find(b"\r\n") + 2:end + 2]
        if (self.status < 200 or self.status == 204 or self.status == 304) and _BODY_ANNOUNCED.search(
                (b"\r\n" + self.lines).lower()):
            # The parser reads no body (RFC 9112 6.3), yet the cell may send the one announced: those bytes would
            # be taken for the answer to the next request on this connection. It ends with this answer.
            self.astray = True
        if self.status < 200:
            self.chunks = [raw[end + 4:]]  # an interim answer's head: the next head starts after it
            return
        self.heading = False
        self.chunks = []
        if self.head:
            # httptools cannot be told that a HEAD answer has no body: answer now, never reuse.
            self._done(reusable=False)

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.body_bytes_max:
            self._fail(ResponseFailed("the cell's answer is too large"))
            self.close()
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:
            # An interim answer (100 Continue, 103 Early Hints): the real one follows on this connection.
            return
        if not self.parser.should_keep_alive():  # asked now: once a next message begins, its flags are that one's
            self.astray = True
        self.finished = True

    # -- internals
    def _done(self, reusable: bool) -> None:
        on_done = self._end()
        if on_done is None:
            return
        if not reusable:
            self.close()
        body = self.body
        body = body[0] if len(body) == 1 else b"".join(body)
        on_done(self, Response(self.status, relay_head(self.status, self.lines, body, self.head), body), None)

    def _fail(self, exc: ResponseFailed) -> None:
        on_done = self._end()
        if on_done is not None:
            on_done(self, None, exc)

    def _end(self):
        """The exchange's callback, once: the exchange is over."""
        on_done, self.on_done = self.on_done, None
        if on_done is not None:
            self.in_flight.discard(self)
        return on_done

    def timeout(self) -> None:
        self._fail(UpstreamTimeout("the cell did not answer in time"))
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abandon(self) -> None:
        """Nobody waits for the answer any more: drop the connection. Its state is unknown, or, when the answer
        came just as its waiter was cancelled, nobody will hand it back to the pool."""
        self._end()
        self.close()

    def send(self, request: bytes, head: bool, deadline: float, on_done) -> None:
        """Write the request; `on_done(self, response, error)` is called once, later, when the exchange ends (by
        `deadline`, in the loop's time, at the latest, give or take the pool's sweep period)."""
        if self.transport is None or self.transport.is_closing():
            self.closed = True
            raise ResponseFailed("connection already closed", sent=False)
        if self.parsed:
            self._reset()
        self.received = False
        self.head = head
        self.on_done = on_done
        self.deadline = deadline
        self.in_flight.add(self)
        self.transport.write(request)

    async def exchange(self, request: bytes, head: bool, deadline: float) -> Response:
        waiter = asyncio.get_running_loop().create_future()

        def settle(_, response: Response | None, error: ResponseFailed | None) -> None:
            if not waiter.done():
                if error is None:
                    waiter.set_result(response)
                else:
                    waiter.set_exception(error)

        self.send(request, head, deadline, settle)
        try:
            return await waiter
        except asyncio.CancelledError:
            # Our client went away mid-exchange.
            self.abandon()
            raise


def _retried(exc: ResponseFailed, method: bytes, conn: _Connection) -> bool:
    """Whether an exchange that failed on a kept-alive connection is tried once more on a fresh one: a request
    never written, or an idempotent one on a connection that died before a single byte of answer (the cell
    closed it while idle). A timeout never is. (One that fails on a fresh connection is not retried.)"""
    if isinstance(exc, UpstreamTimeout):
        return False
    return not exc.sent or (method in IDEMPOTENT_METHODS and not conn.received)


class UpstreamPool:
    """Keep-alive connections to one cell, at most `connections_max` at a time."""

    def __init__(self, base_url: str, *, connections_max: int, connect_timeout_s: float, timeout_s: float,
                 idle_s_max: float, body_bytes_max: int) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        if parts.scheme != "http":
            raise ValueError(f"only http:// cells are supported, not {base_url}")
        self.host_header = parts.netloc.encode()
        self.version_and_host = b" HTTP/1.1\r\nhost: " + self.host_header + b"\r\n"  # after the target
        self.prefix = parts.path.rstrip("/").encode()
        self.connect_timeout_s = connect_timeout_s
        self.timeout_s = timeout_s
        self.idle_s_max = idle_s_max
        self.body_bytes_max = body_bytes_max
        self.idle: list[_Connection] = []
        self.connections_max = connections_max
        self.busy = 0  # exchanges in flight, each on a connection of its own
        self.waiters: collections.deque[asyncio.Future] = collections.deque()
        self.in_flight: set[_Connection] = set()
        # Timeouts are found by a sweep every sweep_s while exchanges are in flight: one answers at most
        # sweep_s after its deadline.
        self.sweep_s = min(1.0, max(0.01, timeout_s / 10))
        self.sweeper: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ended = self._exchange_ended

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self.body_bytes_max, self.in_flight), self.host,
                                       self.port),
                self.connect_timeout_s)
        except (OSError, asyncio.TimeoutError) as exc:
            raise ConnectFailed(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        return conn

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed and now - conn.last_used < self.idle_s_max:
                return conn
            conn.close()
        return None

    def _encode(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
                memo: list | None = None) -> bytes:
        """The request's bytes. `memo`, a caller's [headers, their lines] (a client sends the same headers on
        every request of a connection), spares encoding them again when they are equal."""
        if memo is not None and (memo[0] is headers or memo[0] == headers):
            lines = memo[1]
        else:
            parts = []
            for name, value in headers:
                parts += (name, b": ", value, b"\r\n")
            lines = b"".join(parts)
            if memo is not None:
                memo[0], memo[1] = headers, lines
        if body or method not in _BODILESS_METHODS:
            lines += b"content-length: %d\r\n" % len(body)
        return b"".join((method, b" ", self.prefix, target, self.version_and_host, lines,
                         b"\r\n", body))

    # -- the slots: at most connections_max exchanges at a time, first come first served
    async def _acquire(self) -> None:
        if self.busy < self.connections_max and not self.waiters:
            self.busy += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter  # the releaser handed its slot over
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed over just as we were cancelled: pass it on
            else:
                self.waiters.remove(waiter)
            raise

    def _release(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes to the waiter: busy stays
                return
        self.busy -= 1

    def _deadline(self) -> float:
        """The deadline of an exchange starting now; and the sweep that will see it is armed."""
        loop = self.loop
        if loop is None:
            loop = self.loop = asyncio.get_running_loop()
        if self.sweeper is None:
            self.sweeper = loop.call_later(self.sweep_s, self._sweep)
        return loop.time() + self.timeout_s

    def _sweep(self) -> None:
        now = self.loop.time()
        for conn in [conn for conn in self.in_flight if conn.deadline <= now]:
            conn.timeout()
        self.sweeper = self.loop.call_later(self.sweep_s, self._sweep) if self.in_flight else None

    def _put_back(self, conn: _Connection) -> None:
        if not conn.closed:
            conn.last_used = time.monotonic()
            self.idle.append(conn)

    # -- exchanges
    def try_send(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
                 on_done, memo: list | None = None) -> bool:
        """The fast path, with no task: when a slot is free and a kept-alive connection idle, send the request
        on it and return True; `on_done(response, error)` is called once, later. Else False: use `request`."""
        if self.busy >= self.connections_max or self.waiters:
            return False
        conn = self._take_idle()
        if conn is None:
            return False
        request = self._encode(method, target, headers, body, memo)
        self.busy += 1
        conn.caller = on_done
        conn.sent_method = method
        conn.sent = request
        loop = self.loop
        try:
            conn.send(request, method == b"HEAD",
                      loop.time() + self.timeout_s if self.sweeper is not None else self._deadline(), self._ended)
        except ResponseFailed as exc:
            conn.close()
            # Nothing was written: the caller's callback must not run inside this call.
            asyncio.get_running_loop().call_soon(self._ended, conn, None, exc)
        return True

    def _exchange_ended(self, conn: _Connection, response: Response | None, error: ResponseFailed | None) -> None:
        """The end of an exchange of `try_send`'s (as `_ended`, bound once: no callback is made per request): the
        connection goes back to the idle ones and the slot is freed, or the request is tried once more on a fresh
        connection; the caller's callback is called."""
        on_done, method, request = conn.caller, conn.sent_method, conn.sent
        conn.caller = conn.sent = None
        if error is None:
            if not conn.closed:  # (_put_back and _release inlined: once per request)
                conn.last_used = time.monotonic()
                self.idle.append(conn)
            if self.waiters:
                self._release()
            else:
                self.busy -= 1
            on_done(response, None)
            return
        conn.close()
        if not _retried(error, method, conn):
            self._release()
            on_done(None, error)
            return
        # A kept-alive connection the cell had already closed: once more on a fresh one (the slot is kept).
        asyncio.get_running_loop().create_task(self._send_fresh(request, method == b"HEAD", on_done))

    async def _send_fresh(self, request: bytes, head: bool, on_done) -> None:
        try:
            response = await self._exchange_fresh(request, head)
        except UpstreamError as exc:
            on_done(None, exc)
        else:
            on_done(response, None)
        finally:
            self._release()

    async def _exchange_fresh(self, request: bytes, head: bool) -> Response:
        conn = await self._connect()
        try:
            response = await conn.exchange(request, head, self._deadline())
        except ResponseFailed:
            conn.close()
            raise
        self._put_back(conn)
        return response

    async def request(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                      body: bytes) -> Response:
        request = self._encode(method, target, headers, body)
        head = method == b"HEAD"
        await self._acquire()
        try:
            conn = self._take_idle()
            if conn is None:
                return await self._exchange_fresh(request, head)
            try:
                response = await conn.exchange(request, head, self._deadline())
            except ResponseFailed as exc:
                conn.close()
                if not _retried(exc, method, conn):
                    raise
                return await self._exchange_fresh(request, head)
            self._put_back(conn)
            return response
        finally:
            self._release()

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
