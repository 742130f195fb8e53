"""The worker's metrics listener (worker/metrics_server.py) over real sockets: it serves /metrics; a connection that
sends half a request is closed after the read bound, and no more connections than its bound are served at once
(each past it is closed at once), so idle connections cannot pile threads up in the worker."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

import pytest

from worker import metrics_server

READ_S = 0.5
CONNECTIONS_MAX = 4
DEADLINE_S = 20.0  # a bound on a hung close, never a wait for one


@pytest.fixture
def server(request):
    read_s = getattr(request, "param", READ_S)
    server = metrics_server.start(0, "127.0.0.1", read_s=read_s, connections_max=CONNECTIONS_MAX)
    yield server
    server.shutdown()
    server.server_close()


def _half_request(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S)
    sock.sendall(b"GET /metrics HTTP/1.1\r\n")  # its headers never come
    return sock


def _scrape(port: int) -> bytes:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=DEADLINE_S).read()


def test_it_serves_the_metrics(server):
    assert b"# TYPE" in _scrape(server.server_port)


def test_a_half_request_is_closed_after_the_read_bound(server):
    with _half_request(server.server_port) as sock:
        start = time.monotonic()
        assert sock.recv(100) == b""  # closed by the server (the socket's timeout fails the test instead)
    assert time.monotonic() - start >= READ_S * 0.9


@pytest.mark.parametrize("server", [60.0], indirect=True)  # held connections outlast the test: only the bound closes
def test_connections_past_the_bound_are_closed_at_once_and_threads_stay_bounded(server):
    threads = threading.active_count()
    held = [_half_request(server.server_port) for _ in range(CONNECTIONS_MAX)]
    deadline = time.monotonic() + DEADLINE_S
    while threading.active_count() < threads + CONNECTIONS_MAX:  # each served in its thread, waiting for its head
        assert time.monotonic() < deadline, "the held connections are not served"
        time.sleep(0.01)
    extra = [_half_request(server.server_port) for _ in range(10)]
    for sock in extra:
        assert sock.recv(100) == b""  # closed at once (served, it would wait the 60 s read bound: the socket's
        # timeout fails the test first)
    assert threading.active_count() <= threads + CONNECTIONS_MAX
    for sock in held + extra:
        sock.close()
    # Once they are gone, scrapes are served again.
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            assert b"# TYPE" in _scrape(server.server_port)
            break
        except OSError:  # a slot not yet given back by a closed connection's thread
            assert time.monotonic() < deadline, "no scrape served after the held connections closed"
            time.sleep(0.01)
