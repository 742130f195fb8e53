"""`python -m cell` (cell.api.server's protocol) sends each answer's head and body in one write: a client's first read
gets the whole answer. The same answers as before: HEAD without a body, pipelined and keep-alive requests each
answered whole, in order."""

from __future__ import annotations

import base64
import socket
from urllib.parse import urlsplit

import msgspec

from tests.integration.conftest import Api

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
