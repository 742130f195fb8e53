"""The worker's Prometheus listener (WORKER_METRICS_HOST:WORKER_METRICS_PORT): prometheus_client's WSGI exposition,
with what a client may hold of the worker process bounded.

prometheus_client's start_http_server serves each connection in a thread of its own and never times a read out: a
connection that sends half a request (or nothing) holds its thread for ever, so a few thousand of them cost the
process that applies balance effects thousands of threads (3,000: +84 MB, measured). Here each read or write of a
connection waits at most `read_s`, and at most `connections_max` connections are served at once: one past that is
closed at once (Prometheus scrapes a target one request at a time)."""

from __future__ import annotations

import socket
import threading
from wsgiref.simple_server import WSGIRequestHandler

from prometheus_client import REGISTRY, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

READ_S = 5.0  # a connection's socket operations each wait at most this
CONNECTIONS_MAX = 8  # served at once


class _Handler(WSGIRequestHandler):
    """wsgiref's handler, silent (a line per scrape would drown the log)."""

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's signature
        pass


class _Server(ThreadingWSGIServer):
    """A thread per connection, at most `connections_max` at once; each connection's socket timed out after the
    handler's `timeout` (socketserver applies it)."""

    daemon_threads = True

    def __init__(self, host: str, port: int, handler, connections_max: int) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET  # (read by the bind below)
        super().__init__((host, port), handler)
        self._slots = threading.BoundedSemaphore(connections_max)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # as many as it serves at once already
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def start(port: int, host: str, read_s: float = READ_S, connections_max: int = CONNECTIONS_MAX) -> _Server:
    """Serve GET /metrics (the process's default registry) in a daemon thread; the server (its `server_port`,
    `shutdown()`)."""
    server = _Server(host, port, type("Handler", (_Handler,), {"timeout": read_s}), connections_max)
    server.set_app(make_wsgi_app(REGISTRY))
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
