"""`python -m cell` (cell.api.server's protocol) sends each answer's head and body in one write: a client's first read
gets the whole answer. The same answers as before: HEAD without a body, pipelined and keep-alive requests each
answered whole, in order. What a client may hold of it is bounded: a head's bytes, a request's bytes and time, an idle
connection's time."""

from __future__ import annotations

import base64
import contextlib
import select
import socket
import time
from urllib.parse import urlsplit

import msgspec
import pytest

from tests.integration.conftest import Api, cell_process

READ_TIMEOUT_S = 20  # a bound on a hung answer, never a wait for one


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=READ_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _request(api, method: str, path: str, body: bytes = b"", extra: str = "") -> bytes:
    token = base64.b64encode(f"{api.tenant_id}:{api.api_key}".encode()).decode()
    return (f"{method} {path} HTTP/1.1\r\nHost: cell\r\nAuthorization: Basic {token}\r\n{extra}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def _split(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, rest = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, rest


def _read_answers(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """`count` whole answers (heads with Content-Length bodies) from the connection, in order."""
    buffer, answers = b"", []
    while len(answers) < count:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            assert chunk, f"the cell closed the connection after {len(answers)} answers"
            buffer += chunk
        status, headers, rest = _split(buffer)
        length = int(headers["content-length"])
        while len(rest) < length:
            chunk = sock.recv(65536)
            assert chunk, "the cell closed the connection inside an answer"
            rest += chunk
        answers.append((status, headers, rest[:length]))
        buffer = rest[length:]
    return answers


def _transfer_body(ledger, a, b) -> bytes:
    return (f'{{"ledger_id": "{ledger["id"]}", "status": "posted", "ledger_entries": ['
            f'{{"ledger_account_id": "{a["id"]}", "direction": "debit", "amount": 5}}, '
            f'{{"ledger_account_id": "{b["id"]}", "direction": "credit", "amount": 5}}]}}').encode()


async def test_the_first_read_gets_the_whole_answer(live_books, live_cell_url):
    api, ledger, a, b = live_books
    requests = [_request(api, "GET", f"/api/ledger_accounts/{a['id']}"),
                _request(api, "GET", "/api/ledger_accounts/00000000-0000-0000-0000-000000000000"),
                _request(api, "POST", "/api/ledger_transactions", _transfer_body(ledger, a, b)),
                _request(api, "GET", f"/api/ledgers/{ledger['id']}"),
                _request(api, "GET", "/api/ledger_accounts/nope", extra="X-Whatever: 1\r\n")]
    with _connect(live_cell_url) as sock:
        for request in requests:
            sock.sendall(request)
            first = sock.recv(65536)  # one write of head and body: one read takes it all
            status, headers, body = _split(first)
            assert len(body) == int(headers["content-length"]) > 0, (status, first)
            assert status in (200, 201, 404)
    unauthorized = _request(api, "GET", f"/api/ledger_accounts/{a['id']}").replace(
        b"Authorization: Basic ", b"Authorization: Basic x")
    with _connect(live_cell_url) as sock:
        sock.sendall(unauthorized)
        status, headers, body = _split(sock.recv(65536))
        assert status == 401 and len(body) == int(headers["content-length"])


async def test_the_answers_are_the_ones_the_app_gives(live_books, live_cell_url, cell_client):
    api, ledger, a, b = live_books
    in_process = Api(cell_client, api.tenant_id, api.api_key)  # the same app without a server: the bytes to expect
    expected = await in_process.get(f"/api/ledger_accounts/{a['id']}")
    with _connect(live_cell_url) as sock:
        sock.sendall(_request(api, "GET", f"/api/ledger_accounts/{a['id']}"))
        [(status, headers, body)] = _read_answers(sock, 1)
    assert (status, body) == (200, expected.content)
    assert headers["content-type"] == "application/json"


async def test_head_is_answered_without_a_body(live_books, live_cell_url):
    api, ledger, a, b = live_books
    with _connect(live_cell_url) as sock:
        sock.sendall(_request(api, "HEAD", "/healthz"))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            assert chunk
            head += chunk
        status, headers, rest = _split(head)
        assert status in (200, 405) and int(headers["content-length"]) > 0 and rest == b""
        sock.sendall(_request(api, "GET", "/healthz"))  # the connection goes on
        [(status, _, body)] = _read_answers(sock, 1)
        assert status == 200 and body


async def test_pipelined_requests_are_each_answered_whole_in_order(live_books, live_cell_url):
    api, ledger, a, b = live_books
    requests = [_request(api, "GET", f"/api/ledger_accounts/{a['id']}"),
                _request(api, "POST", "/api/ledger_transactions", _transfer_body(ledger, a, b)),
                _request(api, "GET", "/api/ledger_accounts/nope"),
                _request(api, "GET", f"/api/ledger_accounts/{b['id']}")]
    with _connect(live_cell_url) as sock:
        sock.sendall(b"".join(requests))
        answers = _read_answers(sock, len(requests))
    assert [status for status, _, _ in answers] == [200, 201, 404, 200]
    assert b'"id":"' + a["id"].encode() in answers[0][2] and b'"id":"' + b["id"].encode() in answers[3][2]


def _head_names(answer: bytes) -> list[str]:
    head = answer.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    return [line.partition(":")[0] for line in head[1:]]


async def test_the_fast_routes_heads_are_the_servers_usual_ones(live_books, live_cell_url):
    """The fast routes' answers are written whole by the server at once (cell.api.server.answer_at_once): the same
    status line and headers, in the same order, as the server writes for any other route's answer."""
    api, ledger, a, b = live_books
    with _connect(live_cell_url) as sock:
        sock.sendall(_request(api, "GET", f"/api/ledger_accounts/{a['id']}"))
        [(status, headers, body)] = _read_answers(sock, 1)
        sock.sendall(_request(api, "POST", "/api/ledger_transactions", _transfer_body(ledger, a, b)))
        [(created, _, _)] = _read_answers(sock, 1)
        assert (status, created) == (200, 201) and int(headers["content-length"]) == len(body)
        for request in (_request(api, "GET", f"/api/ledger_accounts/{a['id']}"),  # the fast path
                        _request(api, "GET", f"/api/ledgers/{ledger['id']}")):  # Litestar's
            sock.sendall(request)
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
            assert _head_names(answer) == ["date", "content-type", "content-length"]


async def test_a_fast_answer_to_connection_close_says_so_and_closes(live_books, live_cell_url):
    api, _, a, _ = live_books
    with _connect(live_cell_url) as sock:
        sock.sendall(_request(api, "GET", f"/api/ledger_accounts/{a['id']}", extra="Connection: close\r\n"))
        answer = b""
        while chunk := sock.recv(65536):  # to the end: the cell closes the connection after the answer
            answer += chunk
    status, headers, body = _split(answer)
    assert status == 200 and headers["connection"] == "close" and len(body) == int(headers["content-length"])
    assert _head_names(answer) == ["date", "content-type", "content-length", "connection"]


async def test_a_request_the_cell_cannot_parse_is_a_problem_then_closed(live_books, live_cell_url):
    api, _, a, _ = live_books
    answers = []
    for raw in (b"GARBAGE\x00\x01 nonsense\r\n\r\n",
                _request(api, "GET", f"/api/ledger_accounts/{a['id']}", extra="X-Bad: a\x01b\r\n")):
        with _connect(live_cell_url) as sock:
            sock.sendall(raw)
            answer = b""
            while chunk := sock.recv(65536):  # to the end: the cell closes the connection after the answer
                answer += chunk
        answers.append(_split(answer))
    for status, headers, body in answers:
        assert status == 400 and headers["content-type"] == "application/problem+json"
        assert headers["connection"] == "close" and len(body) == int(headers["content-length"])
        problem = msgspec.json.decode(body)
        assert problem["status"] == 400 and problem["code"] == "bad_request"


def _chunked(api, path: str, chunks: bytes, extra: str = "", authorized: bool = True) -> bytes:
    head = _request(api, "POST", path, extra=extra).split(b"\r\nContent-Length:", 1)[0]
    if not authorized:
        head = b"\r\n".join(line for line in head.split(b"\r\n") if not line.startswith(b"Authorization"))
    return head + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks


async def test_trailer_fields_are_neither_headers_nor_credentials(live_books, live_cell_url):
    """RFC 9110 6.5.1: a trailer field is not a header field: an Authorization after the body authenticates
    nothing (401), and a posting's trailers do not reach it."""
    api, ledger, a, b = live_books
    token = base64.b64encode(f"{api.tenant_id}:{api.api_key}".encode())
    body = _transfer_body(ledger, a, b)
    sizes = b"%x\r\n" % len(body)
    with _connect(live_cell_url) as sock:
        sock.sendall(_chunked(api, "/api/ledger_transactions", sizes + body + b"\r\n0\r\nAuthorization: Basic "
                              + token + b"\r\n\r\n", authorized=False))
        [(status, _, _)] = _read_answers(sock, 1)
    assert status == 401
    with _connect(live_cell_url) as sock:
        sock.sendall(_chunked(api, "/api/ledger_transactions", sizes + body + b"\r\n0\r\n"
                              + b"Idempotency-Key: " + b"k" * 300 + b"\r\n\r\n"))
        [(status, _, answer)] = _read_answers(sock, 1)
    assert status == 201, answer  # an over-long key as a trailer: not a key at all


async def test_a_transfer_coding_other_than_chunked_is_501_not_a_body_still_coded(live_books, live_cell_url):
    api, ledger, a, b = live_books
    body = _transfer_body(ledger, a, b)
    before = await api.balances(a["id"], **{"balances[include_unapplied]": "true"})
    with _connect(live_cell_url) as sock:
        sock.sendall(_chunked(api, "/api/ledger_transactions", b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n",
                              extra="Transfer-Encoding: gzip\r\n"))
        answer = b""
        while chunk := sock.recv(65536):  # to the end: closed after the answer
            answer += chunk
    status, headers, problem = _split(answer)
    assert status == 501 and headers["connection"] == "close"
    assert msgspec.json.decode(problem)["code"] == "transfer_coding_not_supported"
    assert await api.balances(a["id"], **{"balances[include_unapplied]": "true"}) == before  # nothing posted


async def test_two_idempotency_keys_are_400_and_write_nothing(live_books, live_cell_url):
    # Which of the two the client meant is unknown: neither is taken, on the fast route (a posting) or another.
    api, ledger, a, b = live_books
    two = "Idempotency-Key: first\r\nIdempotency-Key: second\r\n"
    before = await api.balances(a["id"])
    with _connect(live_cell_url) as sock:
        sock.sendall(_request(api, "POST", "/api/ledger_transactions", _transfer_body(ledger, a, b), extra=two))
        sock.sendall(_request(api, "POST", "/api/ledgers", b'{"name": "L"}', extra=two))
        answers = _read_answers(sock, 2)
        # Each key alone is still free.
        sock.sendall(_request(api, "POST", "/api/ledger_transactions", _transfer_body(ledger, a, b),
                              extra="Idempotency-Key: first\r\n"))
        sock.sendall(_request(api, "POST", "/api/ledgers", b'{"name": "L"}', extra="Idempotency-Key: second\r\n"))
        alone = _read_answers(sock, 2)
    for status, headers, body in answers:
        problem = msgspec.json.decode(body)
        assert (status, problem["code"]) == (400, "invalid_idempotency_key")
        assert problem["detail"] == "Idempotency-Key is given more than once"
    assert [status for status, _, _ in alone] == [201, 201]
    after = await api.balances(a["id"])
    # One transfer of 5 written: the one under a key alone (the live cell posts in sync mode).
    assert after["posted_balance"]["amount"] - before["posted_balance"]["amount"] == 5


# A cell whose bounds are small enough to cross quickly (the defaults: 64 KiB, 1 MiB, 30 s, 5 s).
BOUNDS = {"head_bytes_max": "2048", "body_bytes_max": "1000", "request_read_s": "2", "keep_alive_s": "1"}
SEND_BYTES_MAX = 1 << 20  # what a refused client sends at most before the test gives up: the bound is far below


@pytest.fixture(scope="module")
def bounded_cell_url(cell_database_url):
    with cell_process(cell_database_url, name="bounded-test", posting_mode="sync", **BOUNDS) as url:
        yield url


def _send_until_answered(sock: socket.socket, first: bytes, more: bytes) -> tuple[int, bytes]:
    """`first`, then `more` again and again until the cell answers or closes (each send a data of its own, as a
    client's line that never ends): the bytes sent, and what the cell sent until it closed."""
    sock.sendall(first)
    sent, answer = len(first), b""
    while sent < SEND_BYTES_MAX:
        if select.select([sock], [], [], 0.05)[0]:
            break
        try:
            sock.sendall(more)
        except OSError:  # closed by the cell while this was sent
            break
        sent += len(more)
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):  # to the end: the cell closes the connection after its answer
            answer += chunk
    return sent, answer


async def test_a_header_line_that_never_ends_is_431_at_the_bound_then_closed(bounded_cell_url):
    # httptools keeps a header line (and a URL) whole until its end: the cell counts the head as it comes, so a line
    # that never ends is refused at the bound, not held until it ends.
    results = []
    for first in (b"GET /api/ledgers HTTP/1.1\r\nHost: cell\r\nX-Big: ", b"GET /api/ledgers?q="):
        with _connect(bounded_cell_url) as sock:
            results.append(_send_until_answered(sock, first, b"a" * 500))
    for sent, answer in results:
        assert answer, f"closed without an answer after {sent} bytes"
        status, headers, body = _split(answer)
        assert status == 431 and headers["content-type"] == "application/problem+json"
        assert headers["connection"] == "close" and len(body) == int(headers["content-length"])
        assert msgspec.json.decode(body)["code"] == "headers_too_large"
        assert sent < SEND_BYTES_MAX


async def test_a_trailer_line_that_never_ends_is_413_at_the_bound_then_closed(bounded_cell_url, new_tenant):
    # A chunked body's trailer lines are held whole too: bounded with the request's data (head + 4 x the body's
    # bound), the request still unanswered (its body never ends), so refused with a problem.
    api = await new_tenant()
    token = base64.b64encode(f"{api.tenant_id}:{api.api_key}".encode()).decode()
    head = (f"POST /api/ledgers HTTP/1.1\r\nHost: cell\r\nAuthorization: Basic {token}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    with _connect(bounded_cell_url) as sock:
        sent, answer = _send_until_answered(sock, head + b"2\r\n{}\r\n0\r\nX-Trailer: ", b"t" * 500)
    assert answer, f"closed without an answer after {sent} bytes"
    status, headers, body = _split(answer)
    assert status == 413 and headers["content-type"] == "application/problem+json"
    assert msgspec.json.decode(body)["code"] == "body_too_large" and headers["connection"] == "close"
    assert sent < SEND_BYTES_MAX


async def test_a_connection_that_sends_nothing_is_closed_after_the_keep_alive_bound(bounded_cell_url):
    # uvicorn's keep-alive timer starts at a first answer: a connection that never sent a request was held for ever.
    with _connect(bounded_cell_url) as sock:
        start = time.monotonic()
        assert sock.recv(100) == b""  # closed (the socket's timeout, READ_TIMEOUT_S, fails the test instead)
        assert time.monotonic() - start >= 0.9  # by the bound, 1 s here


async def test_a_request_that_does_not_arrive_in_time_is_closed(bounded_cell_url):
    # A head sent a line at a time, each well within the keep-alive bound: closed request_read_s (2 s here) after its
    # first byte, however it trickles.
    with _connect(bounded_cell_url) as sock:
        sock.sendall(b"GET /api/ledgers HTTP/1.1\r\nHost: cell\r\n")
        start = time.monotonic()
        sock.settimeout(0.2)  # the client's pace: a line every 0.2 s while the cell says nothing
        closed = False
        while not closed and time.monotonic() - start < READ_TIMEOUT_S:
            try:
                sock.sendall(b"X-Slow: a\r\n")
                closed = sock.recv(100) == b""
            except TimeoutError:
                continue
            except OSError:  # reset: closed by the cell while this was sent
                closed = True
        elapsed = time.monotonic() - start
    assert closed and elapsed >= 1.9
