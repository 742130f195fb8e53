"""A posting through `python -m cell` is read whole however its body comes: after a 100-continue, in chunks (no
Content-Length), or past the body bound (413 problem+json, as Litestar answers it) -- the fast path takes a body
that is all in at once and awaits one that is still coming."""

from __future__ import annotations

import json

from cell.settings import CellSettings
from tests.integration.cell.test_http_server import _connect, _read_answers, _request, _transfer_body

BODY_BYTES_MAX = CellSettings().body_bytes_max  # the live cell's (its default)


def _chunked(api, body: bytes) -> bytes:
    head = _request(api, "POST", "/api/ledger_transactions").replace(b"Content-Length: 0\r\n",
                                                                      b"Transfer-Encoding: chunked\r\n")
    half = len(body) // 2
    return head + b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:])) + b"0\r\n\r\n"


async def test_a_posting_sent_after_100_continue_is_created(live_books, live_cell_url):
    api, ledger, a, b = live_books
    body = _transfer_body(ledger, a, b)
    request = _request(api, "POST", "/api/ledger_transactions", body, extra="Expect: 100-continue\r\n")
    with _connect(live_cell_url) as sock:
        sock.sendall(request[:-len(body)])  # the head alone: the body follows the server's go-ahead
        interim = b""
        while b"\r\n\r\n" not in interim:
            chunk = sock.recv(65536)
            assert chunk, "the cell closed the connection before its 100 Continue"
            interim += chunk
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        rest = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
        assert rest == b""
        sock.sendall(body)
        [(status, headers, answer)] = _read_answers(sock, 1)
    assert status == 201 and headers["content-type"] == "application/json"
    assert [e["amount"] for e in json.loads(answer)["ledger_entries"]] == [5, 5]


async def test_a_chunked_posting_is_created_and_one_past_the_bound_refused(live_books, live_cell_url):
    api, ledger, a, b = live_books
    with _connect(live_cell_url) as sock:
        sock.sendall(_chunked(api, _transfer_body(ledger, a, b)))
        [(status, _, answer)] = _read_answers(sock, 1)
        assert status == 201, answer
        oversized = b'{"description": "' + b"x" * BODY_BYTES_MAX + b'"}'
        sock.sendall(_chunked(api, oversized))
        [(status, headers, answer)] = _read_answers(sock, 1)
    assert status == 413 and headers["content-type"] == "application/problem+json"
    assert json.loads(answer)["status"] == 413
