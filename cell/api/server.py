"""The cell's HTTP/1.1 protocol for uvicorn: httptools' (uvicorn's HttpToolsProtocol), with an answer's head and its
body sent in one write.

uvicorn writes a head when the app sends `http.response.start` and the body when it sends `http.response.body`: two
writes, so two segments on the wire, two system calls here and, in the router reading the answer, two wake-ups and
two parser feeds. Here the head waits for the body's first write (uvicorn writes on every body message, an empty one
too, unless the request is HEAD) and leaves with it. Nothing else changes: the same bytes, in the same order.
The fast routes (cell.api.fast) skip the two messages altogether: answer_at_once writes their whole answer.
Per request, the protocol also skips two costs of uvicorn's own that buy nothing here: a keep-alive timer made and
cancelled for every answer (one timer per idle connection instead, moved on when it comes due: the same bound), and
the request cycle's keyword construction (by position: the same attributes).
It also bounds what a client holds, as the router does for the public port (uvicorn bounds none of it): a request's
line and headers past CellSettings.head_bytes_max are 431, counted as the data comes (httptools keeps a header line,
a URL, a trailer line whole until its end: a line that never ends was held whole), its data past head_bytes_max +
4 x body_bytes_max is 413 (its head, its body read or dropped, chunk lines, trailer lines), each closing the
connection; a request not all arrived request_read_s after its first byte is closed, and so is a connection idle
keep_alive_s, a new one too (uvicorn's timer starts at a first answer: a connection that sent nothing, or half a
request, was held for ever). A chunked body's trailer fields are dropped (uvicorn made them headers), and a transfer
coding other than chunked is 501 (uvicorn handed the app the body still coded). A client that leaves its answers
unread has no more of its requests read, and is dropped once it has read nothing for keep_alive_s (uvicorn waited for
it for ever, closed or not); pipelined requests are read on only once those read are answered (uvicorn read on at
every answer: a client queued requests without bound).
uvicorn 0.54's HttpToolsProtocol and RequestResponseCycle (requirements.lock).
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import NamedTuple

import httptools
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from cell.settings import CellSettings
from ledger_common.problems import PROBLEM_JSON, problem_body


class HeadWithBody:
    """The connection's transport as uvicorn's protocol and its response cycles use it: the first write of an
    answer (its head: the cycle has just started the response) is held and prepended to the next write (its body's
    first part). A HEAD answer has no body write, so its head goes at once. Anything else is the transport's."""

    __slots__ = ("_transport", "_protocol", "_held", "_answered")

    def __init__(self, transport, protocol: HttpToolsProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._held: bytes | None = None
        self._answered = None  # the cycle whose head went out (or is held)

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
            return
        cycle = self._protocol.cycle
        if (cycle is not None and cycle is not self._answered and cycle.response_started
                and not cycle.response_complete):
            self._answered = cycle  # this write is its head
            if cycle.scope["method"] != "HEAD":
                self._held = data
                return
        self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self._transport.write(held)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)  # the rest of the transport, as it is


class Cycle(RequestResponseCycle):
    """uvicorn's request cycle, made by position: the attributes its __init__ sets, without building a dict of eleven
    keyword arguments per request. Its sends and receives are uvicorn's."""

    def __init__(self, scope, transport, flow, logger, access_logger, access_log, default_headers, message_event,
                 expect_100_continue, keep_alive, on_response) -> None:  # noqa: PLR0913 - uvicorn's own arguments
        self.scope = scope
        self.transport = transport
        self.flow = flow
        self.logger = logger
        self.access_logger = access_logger
        self.access_log = access_log
        self.default_headers = default_headers
        self.message_event = message_event
        self.on_response = on_response
        self.disconnected = False
        self.keep_alive = keep_alive
        self.waiting_for_100_continue = expect_100_continue
        self.body = bytearray()
        self.more_body = True
        self.response_started = False
        self.response_complete = False
        self.chunked_encoding = None
        self.expected_content_length = 0

    async def receive(self):
        """uvicorn's, reading on only while the body is still arriving: once it is whole, what comes next is the
        connection's next requests, read when those before are answered (on_response_complete)."""
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.waiting_for_100_continue = False
        if not self.disconnected and not self.response_complete:
            if self.more_body:
                self.flow.resume_reading()
            await self.message_event.wait()
            self.message_event.clear()
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        message = {"type": "http.request", "body": bytes(self.body), "more_body": self.more_body}
        self.body = bytearray()
        return message

    async def run_asgi(self, app) -> None:
        """uvicorn's, but for a request cancelled by the drain's bound at shutdown (cell.api.serve logs those in one
        line): expected, not an error, so no traceback of its own. Any other failure is logged with its traceback,
        once, as uvicorn does. Either is answered by send_500_response unless its answer had begun (then its
        connection is closed). A coroutine closed under it (its loop gone, the coroutine collected) just ends: nothing
        can be written without a loop, and awaiting there would fail its closing."""
        try:
            result = await app(self.scope, self.receive, self.send)
        except GeneratorExit:
            raise
        except BaseException as exc:
            if not (isinstance(exc, asyncio.CancelledError) and _stopping()):
                self.logger.error("Exception in ASGI application\n", exc_info=exc)
            if not self.response_started:
                await self.send_500_response()
            else:
                self.transport.close()
        else:
            if result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
                self.transport.close()
            elif not self.response_started and not self.disconnected:
                self.logger.error("ASGI callable returned without starting response.")
                await self.send_500_response()
            elif not self.response_complete and not self.disconnected:
                self.logger.error("ASGI callable returned without completing response.")
                self.transport.close()
        finally:
            self.on_response = lambda: None

    async def send_500_response(self) -> None:
        """uvicorn's answer to a request whose app raised before answering, or returned without answering, as
        problem+json (every error is; uvicorn's was "Internal Server Error" in plain text): 500 internal_error, or, for
        a request cancelled by the drain's bound at shutdown (cell.api.serve), 503 shutting_down; the connection
        closed. What failed is in the log, never in the answer."""
        if _stopping():
            status, code, detail = 503, "shutting_down", ("The cell stopped before this request finished: it may or "
                                                          "may not have taken effect; retry with the same "
                                                          "Idempotency-Key.")
        else:
            status, code, detail = 500, "internal_error", "An internal error occurred before an answer was made."
        body = problem_body(status, code, detail)
        headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", b"%d" % len(body))]
        if status == 503:
            headers.append((b"retry-after", b"1"))
        headers.append((b"connection", b"close"))
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body, "more_body": False})


def _stopping() -> bool:
    """Whether the running request's task is being cancelled: only the drain at shutdown cancels one
    (cell.api.serve)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


_CYCLES = (RequestResponseCycle, Cycle)
_NONE, _BEGUN = -1, -2  # CellHttpProtocol._request_data: no request open; one begun in the data being read


_heads: dict[tuple[int, bytes], tuple[list, bytes]] = {}  # (status, type) -> (default headers, head up to the length)


def answer_at_once(send, status: int, content_type: bytes, body: bytes) -> bool:
    """A whole answer (`body` of `content_type`, with its content-length) written in one go when `send` is uvicorn's
    httptools cycle's: the bytes its `http.response.start` (headers: the server's, content-type, content-length) and
    `http.response.body` messages would write, and the same state after, without their two coroutines and
    per-header checks. The head up to the length is made once per status and type, again when the server's headers
    change (its date, each second). False (nothing done) for another server, or a state its sends handle (an answer
    begun, writes paused, a disconnect, HEAD, an access log): then the caller sends the two messages."""
    cycle = getattr(send, "__self__", None)
    if (type(cycle) not in _CYCLES or cycle.response_started or cycle.disconnected
            or cycle.flow.write_paused or cycle.access_log or cycle.scope["method"] == "HEAD"):
        return False
    defaults = cycle.default_headers
    made = _heads.get((status, content_type))
    if made is None or made[0] is not defaults:  # kept with the list it was made of: its identity stays its own
        head = [STATUS_LINE[status]]
        for name, value in defaults:
            head += (name, b": ", value, b"\r\n")
        head += (b"content-type: ", content_type, b"\r\ncontent-length: ")
        made = _heads[(status, content_type)] = (defaults, b"".join(head))
    transport = cycle.transport
    if type(transport) is HeadWithBody and transport._held is None:  # nothing held: HeadWithBody would pass it on
        transport = transport._transport
    transport.write(b"".join((made[1], b"%d" % len(body),
                              b"\r\n\r\n" if cycle.keep_alive else b"\r\nconnection: close\r\n\r\n", body)))
    cycle.response_started = cycle.response_complete = True
    cycle.waiting_for_100_continue = cycle.chunked_encoding = False
    cycle.expected_content_length = 0
    cycle.message_event.set()
    if not cycle.keep_alive:
        cycle.transport.close()
    cycle.on_response()
    return True


def body_at_once(receive) -> bytes | None:
    """The request's whole body when `receive` is uvicorn's httptools cycle's and all of it has come: what its
    receive() would return now (and the same state after), without its coroutines. None (nothing done) for another
    server, or a state its receive handles (a 100-continue to send, a body still coming, a disconnect, an answer
    done): then the caller awaits receive()."""
    cycle = getattr(receive, "__self__", None)
    if (type(cycle) not in _CYCLES or cycle.more_body or cycle.waiting_for_100_continue or cycle.disconnected
            or cycle.response_complete or not cycle.message_event.is_set()):
        return None
    cycle.message_event.clear()  # (the body whole: nothing to read on for it, unlike uvicorn's receive)
    body, cycle.body = bytes(cycle.body), bytearray()
    return body


class HttpBounds(NamedTuple):
    """What one request may hold of the server (CellSettings' head_bytes_max, body_bytes_max, request_read_s)."""

    head_bytes: int  # its line and headers
    request_bytes: int  # all its data: head, body, chunk lines, trailer lines
    read_s: float  # from its first byte to its last

    @classmethod
    def of(cls, settings: CellSettings) -> HttpBounds:
        return cls(settings.head_bytes_max, settings.head_bytes_max + 4 * settings.body_bytes_max,
                   settings.request_read_s)


class _UnsupportedCoding(Exception):
    """Raised from on_header (httptools wraps it): a transfer coding other than chunked, answered 501."""


class CellHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing each answer's head and body together (HeadWithBody), with one timer per
    connection (its idle bound, or its request's time), its request cycles made by position (Cycle), and each
    request's data bounded. (A connection has uvicorn's 28 attributes and these two; the bounds are the server's, on
    its state: the router's connections measured slower attribute reads, every request's, as their count grew.)"""

    _since: float = 0.0  # loop time the connection went idle (its last answer done), or the open request began
    # The open request's data so far, from the data after the one it began in: _NONE when no request is open (none
    # begun, or its last byte read), _BEGUN in the data it began in.
    _request_data: int = _NONE
    # Bytes of answers the client had left unread when the timer last found it not reading (-1: it reads). A class
    # default: set on a connection only while its client stops reading.
    _unread: int = -1

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if getattr(self.server_state, "http_bounds", None) is None:  # the server's: the app's, else the defaults
            self.server_state.http_bounds = (getattr(getattr(self.app, "state", None), "http_bounds", None)
                                             or HttpBounds.of(CellSettings()))
        front = getattr(getattr(self.app, "asgi_handler", None), "front", None)  # cell.api.fast.FastPath's
        if front is not None:
            self.app = front

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # flow control, addresses and TLS from the transport itself
        self.transport = HeadWithBody(transport, self)
        self._since = now = self.loop.time()  # idle from the start: a connection that sends nothing is closed
        self.timeout_keep_alive_task = self.loop.call_at(now + self.timeout_keep_alive, self._timer_due)

    def data_received(self, data: bytes) -> None:
        """uvicorn's (the data to the parser; a request it cannot parse, 400), then the open request's data bounded:
        httptools holds an unfinished line whole, however long, and calls back only at its end."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _UnsupportedCoding):
                raise
            if not self._close_after_answers():
                self._send_problem(501, "transfer_coding_not_supported",
                                   "Only the chunked transfer coding is supported.")
                self.transport.close()
            return
        except httptools.HttpParserError:
            if not self._close_after_answers():
                self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                # Declined: answered as plain HTTP/1.1; the parser reads nothing after an upgrade offer, so the
                # connection closes after that answer (a request behind it would never be answered).
                self._unsupported_upgrade_warning()
                if self.cycle is not None:
                    self.cycle.keep_alive = False
                self.flow.pause_reading()
        seen = self._request_data
        if seen >= 0:
            seen += len(data)
            self._request_data = seen
            bounds = self.server_state.http_bounds
            if seen > bounds.head_bytes and ("method" not in self.scope or seen > bounds.request_bytes):
                self._refuse(bounds)
        elif seen == _BEGUN:  # (where in the data it began is not known: counted from the next data)
            self._request_data = 0

    def _refuse(self, bounds: HttpBounds) -> None:
        """The open request is past its bound: its problem (unless an answer is being written: then nothing more can
        be said on this connection), and the connection closed."""
        if self._close_after_answers():
            return
        self._request_data = _NONE
        cycle = self.cycle  # in its head (no method yet), the connection's previous request's (or None); else its own
        if "method" not in self.scope:
            if cycle is None or cycle.response_complete:
                self._send_problem(431, "headers_too_large",
                                   f"The request line and headers exceed {bounds.head_bytes} bytes.")
        elif cycle is not None and not cycle.response_started:
            self._send_problem(413, "body_too_large", "The request's head, body, chunk lines and trailer lines "
                               f"exceed {bounds.request_bytes} bytes.")
        self._close()

    def _close_after_answers(self) -> bool:
        """When requests read whole before the one being read are still being answered (pipelined): their answers go
        out first, then the connection closes, the request being read unanswered and nothing more read; True. (An
        answer of the server's own written now would come before theirs: a posting committed, then a 400 in its
        place.) Else False: the caller answers now."""
        cycle = self.cycle  # the last request whose head was read
        if cycle is None or cycle.response_complete or cycle.more_body:
            return False
        self._request_data = _NONE
        cycle.keep_alive = False
        self.flow.pause_reading()
        return True

    def _close(self) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
        self.transport.close()

    def _send_problem(self, status: int, code: str, detail: str, title: str | None = None) -> None:
        body = problem_body(status, code, detail, title=title)
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"content-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
                    % (PROBLEM_JSON.encode(), len(body)))
        self.transport.write(b"".join(head) + body)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request it cannot parse, as problem+json (every error is): 400 bad_request, the
        connection closed."""
        self._send_problem(400, "bad_request", "The request is not valid HTTP/1.1.", title="Bad Request")
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        timer, self.timeout_keep_alive_task = self.timeout_keep_alive_task, None
        if timer is not None:
            timer.cancel()

    def _unset_keepalive_if_required(self) -> None:
        """The timer stays (uvicorn cancels it when data comes): when it comes due, it finds what the connection is
        doing (_timer_due)."""

    def on_response_complete(self) -> None:
        """uvicorn's, arming the timer only when none is armed: the connection is closed once it has been idle
        timeout_keep_alive seconds, as with a timer per answer (closed already, once its client has read nothing of
        what is left for that long: _timer_due)."""
        self.server_state.total_requests += 1
        now = self.loop.time()
        if self.transport.is_closing():
            if self.timeout_keep_alive_task is None:
                self.timeout_keep_alive_task = self.loop.call_at(now + self.timeout_keep_alive, self._timer_due)
            return
        if self.timeout_keep_alive_task is None:  # (dropped while the answer was made)
            self.timeout_keep_alive_task = self.loop.call_at(now + self.timeout_keep_alive, self._timer_due)
        if self.pipeline:  # the next request, whose body may still be arriving: the timer keeps its time
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif self._request_data == _NONE:  # idle now (else the next request's head is arriving: its own time)
            self._since = now
        # More requests are read once those read are answered (and their answers are being read: resume_writing):
        # pipelined requests queue a read's worth at most (a body still arriving is read on by its cycle's receive).
        if not self.pipeline and not self.flow.write_paused:
            self.flow.resume_reading()

    def pause_writing(self) -> None:
        """The client does not read its answers as fast as they come: read none of its requests until it does (what
        is written for it stays bounded), and time it (_timer_due)."""
        self.flow.pause_writing()
        self.flow.pause_reading()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_at(self.loop.time() + self.timeout_keep_alive,
                                                             self._timer_due)

    def resume_writing(self) -> None:
        self.flow.resume_writing()
        if not self.pipeline and not self.transport.is_closing():
            self.flow.resume_reading()

    def _timer_due(self) -> None:
        """The connection's one timer: answers waiting for a client that does not read them (its connection closed
        or writing paused), dropped when it has read nothing of them for timeout_keep_alive; a request arriving,
        closed request_read_s after its first byte; an answer being made, nothing (its completion arms the timer
        again); idle, closed timeout_keep_alive after its last answer (or its start). Not yet due: armed again for
        when it is."""
        self.timeout_keep_alive_task = None
        transport = self.transport
        if transport.is_closing() or self.flow.write_paused:
            unread = transport.get_write_buffer_size()
            if 0 <= self._unread <= unread:
                transport.abort()  # nothing read since the last look
                return
            self._unread = unread
            self.timeout_keep_alive_task = self.loop.call_at(self.loop.time() + self.timeout_keep_alive,
                                                             self._timer_due)
            return
        if self._unread >= 0:
            self._unread = -1
        if self._request_data != _NONE:
            due = self._since + self.server_state.http_bounds.read_s
        elif self.cycle is not None and not self.cycle.response_complete:
            return
        else:
            due = self._since + self.timeout_keep_alive
        if self.loop.time() >= due:
            self._request_data = _NONE
            self._close()
        else:
            self.timeout_keep_alive_task = self.loop.call_at(due, self._timer_due)

    def on_header(self, name: bytes, value: bytes) -> None:
        """uvicorn's, but for a chunked body's trailer fields (httptools calls this for those too): not header fields
        (RFC 9110 6.5.1), so neither the app's nor kept (their bytes are bounded as the request's data); and a
        transfer coding other than chunked is refused (the app would be handed a body still coded)."""
        if "method" in self.scope:  # (set when the headers were complete)
            return
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        elif name == b"transfer-encoding" and any(coding.strip() != b"chunked" for coding in value.lower().split(b",")):
            raise _UnsupportedCoding()
        self.headers.append((name, value))

    def on_message_begin(self) -> None:
        """uvicorn's (a new scope), and the request's data and time counted from here."""
        self._request_data = _BEGUN
        self._since = self.loop.time()
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.scope = {  # type: ignore[typeddict-item]
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,  # type: ignore[typeddict-item]
            "root_path": self.root_path,
            "headers": self.headers,
            "state": self.app_state.copy(),
        }

    def on_message_complete(self) -> None:
        """uvicorn's (the body is whole), the request's last byte read: no bound left to keep."""
        self._request_data = _NONE
        cycle = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        cycle.more_body = False
        cycle.message_event.set()

    def on_headers_complete(self) -> None:
        """uvicorn's, the same scope, cycle and task; the cycle made by position (Cycle)."""
        parser = self.parser
        scope = self.scope
        http_version = parser.get_http_version()
        scope["method"] = parser.get_method().decode("ascii")
        if http_version != "1.1":
            scope["http_version"] = http_version
        if parser.should_upgrade() and self._should_upgrade():
            return
        parsed_url = httptools.parse_url(self.url)
        raw_path = parsed_url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        root_path = self.root_path
        scope["path"] = root_path + path
        scope["raw_path"] = root_path.encode("ascii") + raw_path if root_path else raw_path
        scope["query_string"] = parsed_url.query or b""
        limit = self.limit_concurrency
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            app = service_unavailable
            self.logger.warning("Exceeded concurrency limit.")
        else:
            app = self.app
        existing_cycle = self.cycle
        self.cycle = Cycle(scope, self.transport, self.flow, self.logger, self.access_logger, self.access_log,
                           self.server_state.default_headers, asyncio.Event(), self.expect_100_continue,
                           http_version != "1.0" and parser.should_keep_alive(), self.on_response_complete)
        if existing_cycle is None or existing_cycle.response_complete:
            self._start_asgi_task(self.cycle, app)  # the standard case: process the request now
        else:  # a pipelined request waits its turn
            self.flow.pause_reading()
            self.pipeline.appendleft((self.cycle, app))
