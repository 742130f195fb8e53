"""The cell's HTTP/1.1 protocol for uvicorn: httptools' (uvicorn's HttpToolsProtocol), with an answer's head and its
body sent in one write.

uvicorn writes a head when the app sends `http.response.start` and the body when it sends `http.response.body`: two
writes, so two segments on the wire, two system calls here and, in the router reading the answer, two wake-ups and
two parser feeds. Here the head waits for the body's first write (uvicorn writes on every body message, an empty one
too, unless the request is HEAD) and leaves with it. Nothing else changes: the same bytes, in the same order.
The fast routes (cell.api.fast) skip the two messages altogether: answer_at_once writes their whole answer.
uvicorn 0.54's RequestResponseCycle (requirements.lock).
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)


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


def answer_at_once(send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
    """A whole answer (`headers`: lowercase names, content-length among them, values the caller's own) written in one
    go when `send` is uvicorn's httptools cycle's: the bytes its `http.response.start` and `http.response.body`
    messages would write, and the same state after, without their two coroutines and per-header checks. False
    (nothing done) for another server, or a state its sends handle (an answer begun, writes paused, a disconnect,
    HEAD, an access log): then the caller sends the two messages."""
    cycle = getattr(send, "__self__", None)
    if (type(cycle) is not RequestResponseCycle or cycle.response_started or cycle.disconnected
            or cycle.flow.write_paused or cycle.access_log or cycle.scope["method"] == "HEAD"):
        return False
    head = [STATUS_LINE[status]]
    for name, value in (*cycle.default_headers, *headers):
        head += (name, b": ", value, b"\r\n")
    if not cycle.keep_alive:
        head.append(b"connection: close\r\n")
    head.append(b"\r\n")
    head.append(body)
    cycle.transport.write(b"".join(head))  # before response_started: HeadWithBody passes it through as it is
    cycle.response_started = cycle.response_complete = True
    cycle.waiting_for_100_continue = cycle.chunked_encoding = False
    cycle.expected_content_length = 0
    cycle.message_event.set()
    if not cycle.keep_alive:
        cycle.transport.close()
    cycle.on_response()
    return True


class CellHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing each answer's head and body together (HeadWithBody)."""

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # flow control, addresses and TLS from the transport itself
        self.transport = HeadWithBody(transport, self)
