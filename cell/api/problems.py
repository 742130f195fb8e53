"""The only table that maps an error to an HTTP status: RFC 9457 problem+json with a stable `code`."""

from __future__ import annotations

import logging

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException

from cell.ledger.errors import (
    Conflict,
    DatabaseUnavailable,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    InvalidRequest,
    LedgerError,
    LockTimeout,
    NotFound,
    OutcomeUnknown,
    PostingRejected,
    RetryableConflict,
    TenantFrozen,
    TenantMoved,
)
from cell.service.context import database_unavailable, outcome_unknown
from cell.store.errors import connect_refused, server_fault, session_lost
from ledger_common.problems import PROBLEM_JSON, problem_body

log = logging.getLogger("cell.api")

STATUS: dict[type[LedgerError], int] = {
    InvalidRequest: 400,
    NotFound: 404,
    Conflict: 409,
    IdempotencyInFlight: 409,
    RetryableConflict: 409,
    TenantMoved: 421,
    PostingRejected: 422,
    IdempotencyKeyReused: 422,
    TenantFrozen: 503,
    DatabaseUnavailable: 503,
    LockTimeout: 503,
    OutcomeUnknown: 503,
}

HTTP_CODES = {400: "invalid_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
              413: "body_too_large", 415: "unsupported_media_type", 429: "rate_limited"}


def problem(status: int, code: str, detail: str, headers: dict | None = None, **extra) -> Response:
    return Response(problem_body(status, code, detail, **extra), status_code=status, media_type=PROBLEM_JSON,
                    headers=headers)


def ledger_error_handler(_: Request, exc: LedgerError) -> Response:
    status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 422)
    headers = {"Retry-After": "1"} if status == 503 else None
    extra = {"errors": exc.extra} if exc.extra else {}
    return problem(status, exc.code, exc.detail, headers, **extra)


def decode_error_handler(_: Request, exc: msgspec.MsgspecError) -> Response:
    if isinstance(exc, msgspec.ValidationError):
        return problem(400, "invalid_request", f"invalid request body: {exc}")
    return problem(400, "malformed_json", f"the body is not valid JSON: {exc}")


def http_error_handler(_: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    return problem(status, HTTP_CODES.get(status, "http_error"), str(exc.detail), exc.headers or None)


def database_error_handler(request: Request, exc: Exception) -> Response:
    """A driver error that escaped CellContext.run (a service step on the pool directly, e.g. the account cache's
    read or the stored idempotent answer): a refused connection is database_unavailable; a connection lost under
    a write is outcome_unknown; the server's own fault (its disk full, store.errors.server_fault) its 503; anything
    else is a programmer error and stays a loud 500."""
    if connect_refused(exc) or (session_lost(exc) and request.method in ("GET", "HEAD")):
        return ledger_error_handler(request, database_unavailable(exc))
    if session_lost(exc):
        return ledger_error_handler(request, outcome_unknown(exc))
    if (fault := server_fault(exc)) is not None:
        log.error("database fault on %s %s: %s: %s", request.method, request.url.path, exc.sqlstate, exc)
        return ledger_error_handler(request, fault)
    return internal_error_handler(request, exc)


def internal_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "internal_error", "an internal error occurred; nothing was half-applied")


# The app's exception handlers (Litestar resolves an exception to the first of its classes, in MRO order, listed).
HANDLERS = {
    LedgerError: ledger_error_handler,
    msgspec.MsgspecError: decode_error_handler,
    HTTPException: http_error_handler,
    # Driver errors that escaped CellContext.run: 503 when the database is gone, else 500.
    asyncpg.PostgresError: database_error_handler,
    asyncpg.InterfaceError: database_error_handler,
    asyncpg.InternalClientError: database_error_handler,
    OSError: database_error_handler,
    TimeoutError: database_error_handler,
    Exception: internal_error_handler,
}


def answer(request: Request, exc: Exception) -> Response:
    """The problem an exception is answered with, as Litestar answers it through HANDLERS (cell.api.fast's routes,
    which do not go through Litestar)."""
    return next(HANDLERS[cls] for cls in type(exc).__mro__ if cls in HANDLERS)(request, exc)
