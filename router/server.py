"""The router's own HTTP/1.1 server: asyncio protocols and httptools, no ASGI in between.

Every request of every tenant crosses the router, so its cost is paid on the whole platform's traffic.
Under uvicorn, the ASGI layer (a scope dict, receive/send coroutines, message dicts, header checks) was
most of the router's ~140 us of CPU per request. Here a connection parses with httptools, hands the whole
request to `Router.handle`, and writes the answer in one buffer when `answer` is called: from the cell
connection's callback on the common path, with no task, no future and no extra turn of the event loop. A client
sends the same header lines on every request of a connection: a request alone in its data whose lines are the
connection's last ones, behind a plain request line, is read without the parser, its headers as they were (_Head).

What it does, and deliberately not more (the router is the only client of it):
- keep-alive and pipelining (requests on one connection are answered in order, one at a time; reading
  pauses while too many wait, or while the client leaves its answers unread past the transport's high-water mark),
  `Connection: close` and HTTP/1.0; a chunked body's trailer fields are read and dropped;
- bounded input: a request head over `head_bytes_max` is 431 and a malformed request 400, then close; a
  body over `body_bytes_max` is 413 (its bytes are read and dropped, not stored; one that goes on past
  four times the bound, or says it will, is answered at once and the connection closed); problem+json;
- `Expect: 100-continue`; an `Upgrade` offer is declined (answered as HTTP/1.1, then the connection closes);
- time bounds: an idle keep-alive connection closes after `keep_alive_s`, a request whose head and body
  have not all arrived `request_read_s` after its first byte is dropped (a slow client holds nothing), and a
  closed connection whose client reads nothing of what is left for it for `keep_alive_s` is dropped;
- graceful stop: stop accepting, let the requests in flight finish, then close.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import signal
from http import HTTPStatus

import httptools
import msgspec

from router.app import Router, problem_answer
from router.settings import RouterSettings

log = logging.getLogger("router")

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_STATUS_LINES = {status: b"HTTP/1.1 %d %s\r\n" % (status, reason) for status, reason in _REASONS.items()}
_PIPELINE_MAX = 16
# Why a connection's reading is paused (Connection.paused): its pipeline is full, its client does not read answers.
_PIPELINE_FULL = 1
_ANSWERS_UNREAD = 2
# Hop-by-hop headers (RFC 9110 7.6.1) are the connection's, not the message's: they are not handed on (the
# router sets its own host and content-length). expect: the router has the whole body before it forwards, so a
# cell never needs to say 100 Continue.
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te",
                         b"trailer", b"upgrade", b"proxy-authorization", b"proxy-authenticate", b"host",
                         b"content-length", b"expect"})
# The paths the router answers itself all start so (Router.handle decides); others are not decoded here.
_LOCAL_PREFIXES = (b"/healthz", b"/readyz", b"/startupz", b"/metrics")
_LOCAL_STARTS = frozenset(prefix[:2] for prefix in _LOCAL_PREFIXES)  # looked at first: a set look-up is cheaper


class _Refused(Exception):
    """Raised from a parser callback (httptools wraps it): the request crossed a bound; its answer is in
    `request.error`."""


class _Head:
    """What the header lines of a request on a connection come to (on_header's work and the x-forwarded-for the
    server adds), kept for the connection's next requests: a client sends the same lines on every request, and one
    with these lines and a plain request line, alone in its data, is `read` without the parser."""

    __slots__ = ("authorization", "body_bytes", "ending", "headers", "lines", "size", "stop")

    def __init__(self, lines: bytes, request: _Request, size: int, body_bytes: int) -> None:
        self.lines = lines  # between the request line's CRLF and the empty line's, each line ending in CRLF
        self.headers = request.headers  # shared by the requests read so: nobody changes it
        self.authorization = request.authorization
        self.size = size  # what the lines count towards head_bytes_max
        self.body_bytes = body_bytes  # the body its content-length frames (no other framing is learnt)
        self.ending = lines + b"\r\n"  # the lines, then the empty line
        self.stop = len(self.ending)  # from the request line's end to the body's start

    @classmethod
    def learnt(cls, data: bytes, request: _Request, size: int, body_bytes: int) -> _Head | None:
        """The head of `request`, which the parser has just read from `data`, when `data` held it whole and nothing
        else: a plain request line, CRLF-delimited lines and a body framed by its length (no 100-continue)."""
        line = _PLAIN_REQUEST_LINE.match(data)
        end = data.find(b"\r\n\r\n")
        if (line is None or end < 0 or len(data) != end + 4 + body_bytes or not request.keep_alive
                or request.expect_continue or request.too_large or request.body is None):
            return None
        lines = data[line.end():end + 2]
        if not lines.count(b"\r") == lines.count(b"\n") == lines.count(b"\r\n"):
            return None
        return cls(lines, request, size, body_bytes)

    def read(self, data: bytes, head_bytes_max: int) -> _Request | None:
        """`data` as a request, when it is one whole request with a plain request line and these lines and within
        the head bound; else None (the parser reads it)."""
        line = _PLAIN_REQUEST_LINE.match(data)
        if line is None:
            return None
        method, url = line.groups()
        start = len(method) + len(url) + 12  # the request line: method, space, url, " HTTP/1.1\r\n"
        stop = start + self.stop
        # (A slice compared: twice as fast as bytes.startswith at an offset.)
        if (len(data) != stop + self.body_bytes or data[start:stop] != self.ending
                or len(url) + self.size > head_bytes_max):
            return None
        return _Request(method, url, self.headers, self.authorization, data[stop:])


# A request line the parser reads the same (tests/unit/router/test_router_known_heads.py asks it): a known method,
# an origin-form target of printable ASCII, HTTP/1.1 (whose keep-alive the header lines decide alone).
_PLAIN_REQUEST_LINE = re.compile(rb"(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) (/[!-~]*) HTTP/1\.1\r\n")


class _Request(msgspec.Struct, gc=False):
    """A request as read (a msgspec Struct: made several times faster than a class with an __init__ of its own; not
    tracked by the garbage collector, as nothing it holds can lead back to it)."""

    method: bytes
    url: bytes
    # The end-to-end headers (names in lower case), in order, then x-forwarded-for naming the client: the hop-by-hop
    # ones are kept apart.
    headers: list[tuple[bytes, bytes]]
    authorization: bytes | None  # the first Authorization value (also in headers)
    # What came of the body, in parts while it is read, then whole (bytes); None: over body_bytes_max.
    body: list[bytes] | bytes | None
    too_large: bool = False  # a Content-Length says more than the connection will read
    expect_continue: bool = False
    chunked: bool = False  # a Transfer-Encoding came (chunked: any other coding is refused)
    keep_alive: bool = True
    # (status, code, detail) of an answer the server gives itself, then closes.
    error: tuple[int, str, str] | None = None


class Connection(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: "RouterServer", public: bool = True) -> None:
        self.server = server
        self.router = server.router
        # The public port routes; the metrics listener serves /metrics and nothing else.
        self.handle = server.router.handle if public else server.metrics_handle
        self.handle_local = server.router.handle_local if public else server.metrics_handle_local
        self.settings = server.settings
        self.head_bytes_max = server.settings.head_bytes_max
        # A body over body_bytes_max is read and dropped, up to this; beyond it the connection closes.
        self.discard_bytes_max = 4 * server.settings.body_bytes_max
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.client_host: str | None = None
        self.forwarded_for = b""
        # The last Authorization value on this connection, parsed (Router._admit): (value, tenant, digest).
        self.auth: tuple[bytes | None, str | None, bytes | None] | None = None
        # The last forwarded headers on this connection and their encoding (UpstreamPool._encode).
        self.encoded: list = [None, b""]
        self.parser = httptools.HttpRequestParser(self)
        # The header lines of the connection's last request that was alone in its data, and what they came to.
        self.known: _Head | None = None
        self.request: _Request | None = None  # the one being parsed
        self.host_seen = False  # the request being read named its Host
        # Bytes of the data that came while the request being read was open (-1: none counted yet, data_received).
        # (A connection has 28 attributes, the most CPython 3.11 reads at full speed here (a plain class's attribute
        # reads measured ~8% slower from 29): at 30, every relayed read cost ~4% more instructions, known heads too,
        # `router_overhead --path-cost` 57,500-58,200 against 55,700-56,100. Add one only where nothing else can.)
        self.request_data = -1
        self.head_bytes = 0
        self.body_bytes = 0
        self.queue: collections.deque[_Request] = collections.deque()
        self.current: _Request | None = None  # the one being answered
        self.task: asyncio.Task | None = None  # the task answering it, if it needs one
        self.stepping = False  # inside _next
        self.paused = 0  # reading paused: _PIPELINE_FULL and/or _ANSWERS_UNREAD
        self.closing = False
        self.refused = False
        # When the connection may be closed if it is still idle (no answer in flight); inf: never. The
        # server's reaper looks every so often: no timer is made and cancelled per request.
        self.deadline = float("inf")

    # -- asyncio.Protocol ------------------------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client_host = peer[0] if isinstance(peer, tuple) else None
        self.forwarded_for = self.client_host.encode() if self.client_host else b""
        self.server.connections.add(self)
        self._arm(self.settings.keep_alive_s)

    def connection_lost(self, exc) -> None:
        self.closing = True
        self.server.connections.discard(self)
        self._disarm()
        if self.task is not None and not self.task.done():
            # The client is gone: whatever the cell answers has nobody to go to. A POST that reached the cell
            # stays applied (the client retries with its Idempotency-Key).
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        if self.closing or self.refused:
            return
        fresh = self.request is None  # data that starts with a request's first byte
        if fresh and self.known is not None:
            request = self.known.read(data, self.head_bytes_max)
            if request is not None:
                self._queue(request)
                if self.current is None:
                    self._next()
                return
        queued = len(self.queue)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self.request is None and self.queue:
                # An offer to upgrade (RFC 9110 7.8) on a complete request: declined by answering it as plain
                # HTTP/1.1. The parser reads nothing after an upgrade, so the connection closes after the answer.
                self.queue[-1].keep_alive = False
                self.refused = True
                self.transport.pause_reading()
            else:
                self._reject(400, "bad_request", "Protocol upgrades (and CONNECT) are not supported.")
        except httptools.HttpParserCallbackError:
            # Raised around an exception of our callbacks: a bound crossed (its answer is on the request)
            # or a bug of ours.
            if self.request is not None and self.request.error is not None:
                self._reject(*self.request.error)
            else:
                log.exception("request parsing failed in the router")
                self._reject(500, "internal_error", "The router failed to read the request.")
        except httptools.HttpParserError:
            self._reject(400, "bad_request", "The request is not valid HTTP/1.1.")
        if self.request is not None:
            # A request still open after this data: the parser keeps a header line (or a chunked body's trailer
            # line) whole until its end and calls on_header only then, so what it holds is bounded here by the
            # data as it comes (a line of gigabytes never ends): the request's data from its first byte when the
            # data began with it, else from the next data.
            if self.request_data < 0:  # the request began in this data
                self.request_data = len(data) if fresh and len(self.queue) == queued else 0
            else:
                self.request_data += len(data)
            if self.request_data > self.head_bytes_max:
                if not self.request.method:  # in its head (on_headers_complete names the method)
                    self._reject(431, "headers_too_large",
                                 f"The request line and headers exceed {self.head_bytes_max} bytes.")
                elif self.request_data > self.head_bytes_max + self.discard_bytes_max:
                    # In its body: its head, the body read and dropped, chunk lines and trailer lines.
                    self._reject(413, "body_too_large", "The request's head, body, chunk lines and trailer lines "
                                 f"exceed {self.head_bytes_max + self.discard_bytes_max} bytes.")
        if fresh and self.request is None and len(self.queue) == queued + 1 and not self.refused:
            # One whole request, alone in its data: its lines may be the connection's next requests' too.
            request = self.queue[-1]
            self.known = _Head.learnt(data, request, self.head_bytes - len(request.url), self.body_bytes) or self.known
        # Served once the parser is done with this data, so that what it found (an upgrade offer, a bad
        # request behind good ones) applies to the requests queued.
        if self.queue and self.current is None:
            self._next()

    def pause_writing(self) -> None:
        # The client does not read its answers as fast as they come (the transport's buffer is past its high-water
        # mark): read no more of its requests until it does, so that what is buffered for it stays bounded.
        self._pause(_ANSWERS_UNREAD)

    def resume_writing(self) -> None:
        self._resume(_ANSWERS_UNREAD)
        if self.closing or (self.current is None and self.request is None):
            # The client reads its answers, so it is not idle: another keep-alive bound from now (reap drops a
            # client that reads nothing for that long, its connection closed or not).
            self.deadline = self.loop.time() + self.settings.keep_alive_s

    # -- httptools callbacks ---------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.request = _Request(b"", b"", [], None, [])
        self.host_seen = False
        self.request_data = -1
        self.head_bytes = 0
        self.body_bytes = 0
        self.deadline = self.loop.time() + self.settings.request_read_s  # (_arm inlined: once per request)

    def on_url(self, url: bytes) -> None:
        self.request.url += url
        self.head_bytes += len(url)  # (_count_head inlined: once or more per request)
        if self.head_bytes > self.head_bytes_max:
            self._head_too_large()

    def on_header(self, name: bytes, value: bytes) -> None:
        # Runs for every header: the few that matter to the router are picked out here, in one pass.
        request = self.request
        if request.method:
            # A chunked body's trailer field (the parser calls this for those too): not a header field, so neither
            # forwarded nor read for credentials (RFC 9110 6.5.1); its bytes are bounded as the data comes.
            return
        name = name.lower()
        if name in _HOP_BY_HOP:
            if name == b"content-length":
                if value.isdigit() and int(value) > self.discard_bytes_max:
                    request.too_large = True
            elif name == b"transfer-encoding":
                if any(coding.strip() != b"chunked" for coding in value.lower().split(b",")):
                    # gzip, deflate...: the router would hand the body on still coded, as if it were not (RFC 9112
                    # 6.1).
                    request.error = (501, "transfer_coding_not_supported",
                                     "Only the chunked transfer coding is supported.")
                    raise _Refused()
                request.chunked = True
            elif name == b"expect" and value.lower() == b"100-continue":
                request.expect_continue = True
            elif name == b"host":  # one at most (RFC 9112 3.2: more is a 400); the router sends the cell its own
                if self.host_seen:
                    request.error = (400, "bad_request", "A request carries one Host header.")
                    raise _Refused()
                self.host_seen = True
        else:
            if name == b"authorization" and request.authorization is None:
                request.authorization = value
            request.headers.append((name, value))
        self.head_bytes += len(name) + len(value) + 4  # (_count_head inlined)
        if self.head_bytes > self.head_bytes_max:
            self._head_too_large()

    def on_headers_complete(self) -> None:
        request = self.request
        if self.forwarded_for:
            request.headers.append((b"x-forwarded-for", self.forwarded_for))
        request.method = self.parser.get_method()
        request.keep_alive = self.parser.should_keep_alive()
        version = self.parser.get_http_version()
        if version != "1.1":
            if version != "1.0":
                request.error = (505, "http_version_not_supported", "The router speaks HTTP/1.1 (and 1.0).")
                raise _Refused()
            if request.chunked:
                # HTTP/1.0 has no transfer codings: a server in front may have framed this body otherwise, and read
                # part of it as a request of its own. Faulty framing: the connection closes after the answer (RFC
                # 9112 6.1), whatever keep-alive says.
                request.keep_alive = False
        elif not self.host_seen:  # RFC 9112 3.2: an HTTP/1.1 request without Host is a 400
            request.error = (400, "bad_request", "An HTTP/1.1 request carries a Host header.")
            raise _Refused()
        if not request.url.startswith(b"/"):
            request.error = (400, "bad_request", "The request target must be a path (origin-form).")
            raise _Refused()
        if request.too_large:
            self._too_large()
        if request.expect_continue and not self.queue and self.current is None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        request = self.request
        if request.body is not None:
            if self.body_bytes > self.settings.body_bytes_max:
                # Over the bound: read on and keep nothing, so that the client hears the router's 413 (after
                # the tenant checks) on a connection that stays usable...
                request.body = None
            else:
                request.body.append(body)
        elif self.body_bytes > self.discard_bytes_max:
            self._too_large()  # ... unless the body goes on far beyond it: then answer now and close.

    def _too_large(self) -> None:
        self.request.error = (413, "body_too_large", f"The body exceeds {self.settings.body_bytes_max} bytes.")
        raise _Refused()

    def on_message_complete(self) -> None:
        request, self.request = self.request, None
        if request.body is not None:
            request.body = b"".join(request.body)
        self._queue(request)

    def _queue(self, request: _Request) -> None:
        """A whole request read: in the queue of those to answer."""
        self.queue.append(request)
        if len(self.queue) >= _PIPELINE_MAX and not self.paused & _PIPELINE_FULL:
            self._pause(_PIPELINE_FULL)
        self.deadline = float("inf")  # (_disarm inlined: once per request)

    # -- internals -------------------------------------------------------------------------------------------

    def _pause(self, why: int) -> None:
        if not self.paused and not self.closing:
            self.transport.pause_reading()
        self.paused |= why

    def _resume(self, why: int) -> None:
        self.paused &= ~why
        if not self.paused and not self.refused and not self.closing:
            self.transport.resume_reading()

    def _head_too_large(self) -> None:
        self.request.error = (431, "headers_too_large",
                              f"The request line and headers exceed {self.head_bytes_max} bytes.")
        raise _Refused()

    def _next(self) -> None:
        """Answer the queued requests in order, one at a time: those the router answers at once in this loop,
        up to one that goes to a cell (its answer comes back through `answer`, which calls this again)."""
        self.stepping = True
        try:
            while self.queue and self.current is None and not self.closing:
                request = self.queue.popleft()
                if self.paused and len(self.queue) < _PIPELINE_MAX // 2 and self.paused & _PIPELINE_FULL:
                    self._resume(_PIPELINE_FULL)
                if request.error is not None:
                    self._write(*problem_answer(*request.error), False, False)
                    self._close()
                    return
                self.current = request
                url = request.url
                try:
                    if url[:2] in _LOCAL_STARTS and url.startswith(_LOCAL_PREFIXES) and self.handle_local(
                            self, url.split(b"?", 1)[0].decode("latin-1")):
                        task = None
                    else:
                        task = self.handle(self, request.method, url, request.headers, request.authorization,
                                           request.body)
                except Exception:  # noqa: BLE001 - a bug of ours must not hang the client: 500, and log it
                    log.exception("request failed in the router")
                    self.answer(*problem_answer(500, "internal_error", "The router failed to handle the request."))
                    continue
                if task is not None:
                    self.hold(task)
        finally:
            self.stepping = False
        if self.current is None and not self.closing:
            self._idle()

    def _idle(self) -> None:
        """Nothing to answer: idle now, or the next request's head is still arriving (its own bound, restarted)."""
        self.deadline = self.loop.time() + (self.settings.keep_alive_s if self.request is None
                                            else self.settings.request_read_s)
        if self.server.stopping:
            self._close()

    def hold(self, task: asyncio.Task) -> None:
        """The task that answers the current request: cancelled if the client goes first."""
        if self.current is not None and not self.closing:
            self.task = task
        else:
            task.cancel()  # the client went, or it was answered already: nothing left to do

    def answer(self, status: int, headers, payload: bytes) -> None:
        """The answer to the current request (the router calls this once per request)."""
        request, self.current = self.current, None
        self.task = None
        if request is None or self.closing:
            return  # the client went away: whatever the cell answered has nobody to go to
        if request.keep_alive:
            line = _STATUS_LINES.get(status)
            if headers.__class__ is bytes and line is not None and request.method != b"HEAD":
                # The common case, header lines relayed as they came from the cell (its framing headers were
                # dropped by router/upstream.py: the framing is this connection's), in one write.
                self.transport.write(b"".join((line, headers, b"\r\n", payload)))
            else:
                self._write(status, headers, payload, request.method == b"HEAD", True)
            if not self.stepping:
                if self.queue:
                    self._next()
                else:
                    self._idle()
        else:
            self._write(status, headers, payload, request.method == b"HEAD", False)
            self._close()

    def _write(self, status: int, headers, body: bytes, head: bool, keep_alive: bool) -> None:
        parts = [_STATUS_LINES.get(status) or b"HTTP/1.1 %d Unknown\r\n" % status]
        # The cell's framing headers were dropped (router/upstream.py): the framing is this connection's.
        if headers.__class__ is bytes:
            parts.append(headers)  # header lines relayed as they came from the cell
        else:
            for name, value in headers:
                parts += (name, b": ", value, b"\r\n")
        if not keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        if not head:
            parts.append(body)
        self.transport.write(b"".join(parts))

    def _reject(self, status: int, code: str, detail: str) -> None:
        """An answer of the server's own to a request it cannot take, after the answers to the requests before
        it; then the connection closes. Nothing more is read from it."""
        self.refused = True
        self.request = None
        self.transport.pause_reading()
        self.router.metrics.rejected.labels(code).inc()
        refusal = _Request(b"", b"", [], None, [])
        refusal.error = (status, code, detail)
        refusal.keep_alive = False
        self.queue.append(refusal)

    def _arm(self, seconds: float) -> None:
        self.deadline = self.loop.time() + seconds

    def _disarm(self) -> None:
        self.deadline = float("inf")

    def reap(self, now: float) -> None:
        # Idle past the keep-alive bound, or a request that did not arrive in time: close (nothing in flight).
        # Closed already: the client has left what was written for it unread for that long: let it go.
        if now >= self.deadline and self.current is None:
            if self.closing:
                self.transport.abort()
            else:
                self._close()

    def _close(self) -> None:
        self.closing = True
        self._disarm()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()  # what is left to write goes out first...
            if transport.get_write_buffer_size():
                # ... as the client reads it, within a keep-alive bound (moved on as it reads: resume_writing)
                self.deadline = self.loop.time() + self.settings.keep_alive_s

    def shutdown(self) -> None:
        """Graceful stop: an idle connection closes now; a busy one after its current answer."""
        if self.current is None:
            self._close()


class RouterServer:
    """The router (routing table, rate limits, upstream pools) behind its own HTTP server."""

    def __init__(self, settings: RouterSettings, router: Router | None = None) -> None:
        self.settings = settings
        self.router = router or Router(settings)
        self.connections: set[Connection] = set()
        self.stopping = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._metrics_server: asyncio.base_events.Server | None = None
        self._reaper: asyncio.Task | None = None

    @property
    def port(self) -> int:
        return self._server.sockets[0].getsockname()[1]

    @property
    def metrics_port(self) -> int | None:
        return self._metrics_server.sockets[0].getsockname()[1] if self._metrics_server is not None else None

    def metrics_handle(self, client: Connection, method: bytes, target: bytes, headers, authorization, body):
        self.metrics_handle_local(client, target.split(b"?", 1)[0].decode("latin-1"))

    def metrics_handle_local(self, client: Connection, path: str) -> bool:
        client.answer(*self.router.metrics_answer(path))
        return True

    async def start(self) -> "RouterServer":
        self.loop = asyncio.get_running_loop()
        await self.router.start()
        try:
            if self.settings.metrics_port:
                self._metrics_server = await self.loop.create_server(
                    lambda: Connection(self, public=False), self.settings.metrics_host, self.settings.metrics_port,
                    reuse_address=True)
            self._server = await self.loop.create_server(lambda: Connection(self), self.settings.host,
                                                         self.settings.port, backlog=2048, reuse_address=True)
        except BaseException:
            if self._metrics_server is not None:
                self._metrics_server.close()
            await self.router.stop()
            raise
        self._reaper = self.loop.create_task(self._reap())
        return self

    async def _reap(self) -> None:
        # A connection outlives its bound by at most one period.
        period_s = min(1.0, max(0.05, min(self.settings.keep_alive_s, self.settings.request_read_s) / 4))
        while True:
            await asyncio.sleep(period_s)
            now = self.loop.time()
            for conn in list(self.connections):
                conn.reap(now)

    async def stop(self) -> None:
        """Stop accepting, let the answers in flight go out (up to `shutdown_s`), then close everything."""
        self.stopping = True
        for server in (self._server, self._metrics_server):
            if server is not None:
                server.close()
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for conn in list(self.connections):
            conn.shutdown()
        deadline = self.loop.time() + self.settings.shutdown_s
        while any(conn.current is not None for conn in self.connections) and self.loop.time() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn._close()
        await self.router.stop()

    async def serve_until_signalled(self) -> None:
        await self.start()
        log.info("router listening on %s:%s", self.settings.host, self.port)
        if self.metrics_port is not None:
            log.info("router metrics on http://%s:%s/metrics", self.settings.metrics_host, self.metrics_port)
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await self.stop()
