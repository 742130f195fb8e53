"""The two hottest routes without Litestar's per-request layers (routing, Request, signature, Response objects):
GET /api/ledger_accounts/{id} without a query (current balances) and POST /api/ledger_transactions. The same auth
(AuthMiddleware), metrics (RequestMetrics), body rules and bound, service calls, problem+json answers
(problems.answer) and bytes as their Litestar handlers; any other request goes to Litestar.
tests/integration/cell/test_fast_path.py compares both answers byte for byte."""

from __future__ import annotations

import time

from litestar import Request
from litestar.exceptions import ClientException, InternalServerException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge

from cell.api import http, problems
from cell.api.auth import remembered_tenant, verified_tenant
from cell.api.metrics import RequestMetrics
from cell.api.server import answer_at_once, body_at_once
from cell.ledger.commands import TransactionCreate
from cell.service import accounts, transactions
from cell.service.common import parse_uuid
from cell.service.idempotency import idempotency_key, one_key
from cell.store.db import ACTING_TENANT

ACCOUNT_PREFIX = "/api/ledger_accounts/"
ACCOUNT_TEMPLATE = "/api/ledger_accounts/{account_id}"  # as Litestar names the route (scope["path_template"])
TRANSACTIONS = "/api/ledger_transactions"
_JSON = http.JSON.encode()


class FastPath:
    """ASGI, in front of Litestar's router (Litestar.asgi_handler): scope["app"] is the Litestar app already. The
    layers are Litestar's for a route, in one frame (no middleware chain, no wrapped `send`): auth, the route's
    metrics around the handler, the problem the handler raises answered inside them (as Litestar's route stack
    does), and what escapes before an answer started answered as a problem too (Litestar's app-wide layer).
    cell.api.server's protocol enters at `front`, before Litestar.__call__."""

    def __init__(self, app, cell: str) -> None:
        self.app = app  # the Litestar app, whose ASGI handler this takes the place of
        self.next = app.asgi_handler
        self.metrics = RequestMetrics(self.next, cell=cell)  # its series; its middleware is Litestar's

    async def __call__(self, scope, receive, send) -> None:
        route = _route(scope)
        if route is None:
            await self.next(scope, receive, send)
        else:
            await self._serve(scope, receive, send, *route)

    async def front(self, scope, receive, send) -> None:
        """The app as the server calls it: a fast route after what Litestar.__call__ does before its ASGI handler
        (the scope's app and state; no before_send hook to wrap `send` in), one coroutine less; anything else
        through Litestar.__call__."""
        app = self.app
        route = None if app.before_send else _route(scope)
        if route is None:
            await app(scope, receive, send)
            return
        scope["app"] = scope["litestar_app"] = app
        scope.setdefault("state", {})
        await self._serve(scope, receive, send, *route)

    async def _serve(self, scope, receive, send, handler, method: str, template: str) -> None:
        """`handler` (ctx, scope, receive) -> (status, body) answered as application/json, or as the problem its
        exception is; AuthMiddleware's and RequestMetrics' rules around it."""
        started = False  # whether an answer started: then nothing more can be answered
        try:
            ctx = scope["app"].state["ctx"]  # subscript: the attribute is a failed lookup first (~2 us)
            # A remembered key without a coroutine; verified_tenant answers 401 / 421 / 503 itself.
            tenant_id = remembered_tenant(scope, ctx) or await verified_tenant(scope, send)
            if tenant_id is None:
                return
            acting = ACTING_TENANT.set(tenant_id)  # every connection this request takes acts for its tenant
            try:
                metrics = self.metrics
                running = metrics.running(method, template)
                status = 500  # unless an answer starts
                began = time.perf_counter()
                elapsed = 0.0
                running.inc()
                try:
                    at_once = False
                    try:
                        status, body = await handler(ctx, scope, receive)
                    except Exception as exc:  # noqa: BLE001 - every exception is a problem answer, as in Litestar
                        status, headers, body = _problem(scope, receive, exc)
                        started = True
                    else:
                        started = True
                        at_once = answer_at_once(send, status, _JSON, body)  # the server's one write, if it can
                        if not at_once:
                            headers = [(b"content-type", _JSON), (b"content-length", str(len(body)).encode())]
                    if not at_once:
                        await send({"type": "http.response.start", "status": status, "headers": headers})
                    elapsed = time.perf_counter() - began
                    if not at_once:
                        await send({"type": "http.response.body", "body": body})
                finally:
                    running.dec()
                    metrics.answered(method, template, status, elapsed or time.perf_counter() - began)
            finally:
                ACTING_TENANT.reset(acting)
        except Exception as exc:
            if started:
                raise
            await _send_problem(scope, receive, send, exc)


def _route(scope) -> tuple | None:
    """(handler, method, path template) of a fast route's request, its path template and parameters set in the
    scope as Litestar's router sets them; None for any other request."""
    if scope["type"] != "http" or scope.get("root_path"):
        return None
    method, path = scope["method"], scope["path"]
    if method == "GET" and path.startswith(ACCOUNT_PREFIX) and not scope["query_string"]:
        account_id = path[len(ACCOUNT_PREFIX):]
        if account_id and "/" not in account_id:
            scope["path_template"] = ACCOUNT_TEMPLATE
            scope["path_params"] = {"account_id": account_id}
            return _get_account, method, ACCOUNT_TEMPLATE
    elif method == "POST" and path == TRANSACTIONS:
        scope["path_template"] = TRANSACTIONS
        scope["path_params"] = {}
        return _create_transaction, method, TRANSACTIONS
    return None


def _problem(scope, receive, exc: Exception) -> tuple[int, list, bytes]:
    """The problem an exception is: its status, the headers Litestar sends for it (its own first, then type and
    length) and its body."""
    response = problems.answer(Request(scope, receive), exc)
    body = response.content
    headers = [*((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (response.headers or {}).items()),
               (b"content-type", response.media_type.encode()), (b"content-length", str(len(body)).encode())]
    return response.status_code, headers, body


async def _send_problem(scope, receive, send, exc: Exception) -> None:
    status, headers, body = _problem(scope, receive, exc)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_POSTING_HEADERS = frozenset({b"content-length", b"content-type", b"idempotency-key"})


def _posting_headers(scope) -> tuple[dict[bytes, str], list[str]]:
    """The first value of each header a posting reads, as Litestar's Headers.get reads it, and every Idempotency-Key
    value (http.idem_of's), in one pass."""
    found: dict[bytes, str] = {}
    keys: list[str] = []
    for k, v in scope["headers"]:
        k = k.lower()
        if k in _POSTING_HEADERS:
            if k == b"idempotency-key":
                keys.append(v.decode("latin-1"))
            elif k not in found:
                found[k] = v.decode("latin-1")
    return found, keys


async def _body(receive, announced: str | None, size_max: int) -> bytes:
    """The request body, read as Litestar's Request.body reads it (the same bound, the same exceptions);
    `announced`: its Content-Length header."""
    if announced is not None:
        try:
            length = int(announced)
        except ValueError:
            raise ClientException(f"Invalid content-length: {announced!r}") from None
        if length > size_max:
            raise RequestEntityTooLarge
    whole = body_at_once(receive)  # all of it in already (the usual case): what receive() gives, without awaiting
    if whole is not None:
        if len(whole) > size_max:
            raise RequestEntityTooLarge
        return whole
    chunks: list[bytes] = []
    total = 0
    while True:
        event = await receive()
        if event["type"] == "http.request":
            chunk = event["body"]
            if chunk:
                total += len(chunk)
                if total > size_max:
                    raise RequestEntityTooLarge
                chunks.append(chunk)
            if not event.get("more_body", False):
                break
        elif event["type"] == "http.disconnect":
            raise InternalServerException("client disconnected prematurely")
    return b"".join(chunks)


async def _get_account(ctx, scope, receive) -> tuple[int, bytes]:
    account_id = parse_uuid(scope["path_params"]["account_id"], "ledger account")
    view = await accounts.get_account(ctx, scope["state"]["tenant_id"], account_id, accounts.CURRENT)
    return 200, http.encode(view)


async def _create_transaction(ctx, scope, receive) -> tuple[int, bytes]:
    headers, keys = _posting_headers(scope)
    raw = await _body(receive, headers.get(b"content-length"), ctx.settings.body_bytes_max)
    cmd = http.checked_body(headers.get(b"content-type"), raw, TransactionCreate)
    idem = idempotency_key(one_key(keys), "POST", TRANSACTIONS, raw,
                           ctx.settings.idempotency_key_length_max)
    view = await transactions.create_transaction(ctx, scope["state"]["tenant_id"], cmd, idem)
    return 201, http.encode(view)
