"""A customer's webhook receiver, as a test double (the one thing outside the system): a plain local HTTP server
in a thread that records every request it gets and answers as the test tells it, checking each signature with
the official SDK's `webhooks.validate_signature`."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from modern_treasury import ModernTreasury

_SDK = ModernTreasury(api_key="unused", organization_id="unused", base_url="http://127.0.0.1:9")


@dataclass
class Received:
    webhook_id: str
    event: dict
    signed: bool  # the SDK accepted X-Signature with the key the test gave
    answered: int  # NO_ANSWER: it hung up or kept the sender waiting past its timeout
    at: float
    headers: dict = field(default_factory=dict)
    path: str = ""
    raw: bytes = b""


NO_ANSWER = -1
CLOSE = "close"  # an answer: the connection closed with no reply


def signed_with(raw: bytes, headers: dict, key: str) -> bool:
    """Whether the SDK accepts X-Signature on this body under `key`."""
    return _SDK.webhooks.validate_signature(raw.decode(), headers, key=key)


class _Server(ThreadingHTTPServer):
    # A customer's server takes the connections a deliverer opens at once (socketserver's backlog of 5 left the rest
    # unanswered past a short timeout).
    request_queue_size = 128


class Receiver:
    """Start on a port (given, or any free one); `answer(event) -> status` decides each reply (default 200), or
    `(status, headers, body)`, or CLOSE, or `("hang", seconds)` (an answer that late); `answer_to(path, event)`, when
    set, decides instead (endpoints at paths of one receiver). `key` is the endpoint's webhook_key (set once it is
    known). GETs (a followed redirect would be one) are recorded in `gets`."""

    def __init__(self, port: int = 0, key: str | None = None) -> None:
        self.port = port
        self.key = key
        self.received: list[Received] = []
        self.answer = lambda event: 200
        self.answer_to = None
        self.gets: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = dict(self.headers.items())
                payload = raw.decode()
                signed = receiver.key is not None and _SDK.webhooks.validate_signature(payload, headers,
                                                                                       key=receiver.key)
                event = json.loads(payload)
                answer = receiver.answer(event) if receiver.answer_to is None else receiver.answer_to(self.path, event)
                late = isinstance(answer, tuple) and answer[0] == "hang"
                status, extra, body = ((200, {}, b"ok") if late else answer if isinstance(answer, tuple)
                                       else (answer, {}, b"ok"))
                with receiver._lock:  # recorded before it answers: the sender may have given up by then
                    receiver.received.append(Received(headers.get("X-Webhook-ID", ""), event, signed,
                                                      NO_ANSWER if late or answer == CLOSE else status,
                                                      time.monotonic(), headers, self.path, raw))
                if answer == CLOSE:
                    self.close_connection = True
                    return
                if late:
                    time.sleep(answer[1])
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass  # the sender stopped reading (it reads a bounded prefix)

            def do_GET(self) -> None:  # noqa: N802
                receiver.gets.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def delivered(self) -> dict[str, Received]:
        """The first 2xx receipt of each event, by event id."""
        firsts: dict[str, Received] = {}
        for r in self.snapshot():
            if 200 <= r.answered < 300:
                firsts.setdefault(r.event["id"], r)
        return firsts
