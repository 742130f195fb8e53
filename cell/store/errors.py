"""The one boundary where driver errors become domain errors (SQLSTATE class LG is ours, see routines/README.md)."""

from __future__ import annotations

import logging
import socket

import asyncpg
import msgspec

from cell.ledger.errors import (
    Conflict,
    DatabaseUnavailable,
    IdempotencyInFlight,
    InvalidRequest,
    LedgerError,
    LockTimeout,
    NotFound,
    PostingRejected,
    RetryableConflict,
    TenantFrozen,
    TenantMoved,
)

log = logging.getLogger("cell.store")


def _extra(exc: asyncpg.PostgresError) -> dict:
    return _detail(getattr(exc, "detail", None))


def _detail(detail: str | None) -> dict:
    if not detail:
        return {}
    try:
        value = msgspec.json.decode(detail)
    except msgspec.DecodeError:
        return {}
    return value if isinstance(value, dict) else {}


# Errors that mean the session is gone: whatever was in flight (a statement, a COMMIT) may or may not have
# committed. Class 08 (connection exception), an administrator's or a crash's termination, the server's
# idle-in-transaction timeout; OSError and a closed connection's InterfaceError are caught by the caller.
_SESSION_LOST_STATES = ("57P01", "57P02", "25P03")


def session_lost(exc: BaseException) -> bool:
    """True when the error means the connection died mid-request (the outcome of what was in flight is unknown)."""
    if isinstance(exc, (OSError, asyncpg.PostgresConnectionError)):
        return True
    if isinstance(exc, asyncpg.InternalClientError):  # the driver's protocol state broke (PostgreSQL crashing)
        return True
    state = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, asyncpg.PostgresError) and (state.startswith("08") or state in _SESSION_LOST_STATES)


# Refusals of a new connection: the server starting or stopping, too many connections, the database gone.
_CONNECT_REFUSED_STATES = ("57P03", "53300", "3D000")


def connect_refused(exc: BaseException) -> bool:
    """True when the error is a refused or timed-out connection attempt: nothing was sent on it."""
    if isinstance(exc, (ConnectionRefusedError, TimeoutError, socket.gaierror)):
        return True
    if not isinstance(exc, asyncpg.PostgresError):
        return False
    state = getattr(exc, "sqlstate", None) or ""
    return (state in _CONNECT_REFUSED_STATES or state.startswith("28")
            or (state == "55000" and "accepting connections" in str(exc)))  # ALLOW_CONNECTIONS false


# The server short of a resource (class 53: its disk full, out of memory, a configured limit such as
# temp_file_limit), failing its own file I/O (class 58), or taking no writes (25006: a standby, a primary demoted in a
# failover, default_transaction_read_only; the cell opens no read-only transaction of its own around a write): the
# statement failed and its transaction rolled back, so nothing was written. An operational fault of the database,
# neither the request's nor the code's: 503 with a stable code (a client retries it as it does
# database_unavailable), logged for the operator, never a 500. Keyed by SQLSTATE, or by its class.
_SERVER_FAULTS = {"53": ("database_out_of_resources", "the database is out of a resource (disk space, memory)"),
                  "58": ("database_io_error", "the database failed to read or write its files"),
                  "25006": ("database_read_only", "the database takes no writes now (a standby, or a failover)")}


def server_fault(exc: BaseException) -> DatabaseUnavailable | None:
    """The 503 for a statement the database server failed by a fault of its own (_SERVER_FAULTS), else None."""
    state = getattr(exc, "sqlstate", None) or ""
    fault = _SERVER_FAULTS.get(state) or _SERVER_FAULTS.get(state[:2])
    if not isinstance(exc, asyncpg.PostgresError) or fault is None:
        return None
    code, what = fault
    return DatabaseUnavailable(f"{what}; nothing was written, retry shortly", code)


def rejection(state: str, detail: str | None) -> PostingRejected:
    """A violated balance lock (LG001) or a stale lock_version (LG002), raised by the database or returned by
    ledger_post_in_group (routines/post_in_group.sql) with the same detail."""
    extra = _detail(detail)
    if state == "LG001":
        return PostingRejected(
            f"balance lock failed on ledger account {extra.get('ledger_account_id')}: "
            f"{extra.get('balance')} would be {extra.get('resulting_amount')}, "
            f"which is not {extra.get('operator')} {extra.get('value')}",
            "balance_lock_failed", extra)
    return PostingRejected(
        f"ledger account {extra.get('ledger_account_id')} is at lock_version {extra.get('actual')}, "
        f"not {extra.get('expected')}", "lock_version_mismatch", extra)


def translate(exc: asyncpg.PostgresError) -> LedgerError | None:
    """The domain error for a driver error, or None when it is a programmer error (stays loud)."""
    state = getattr(exc, "sqlstate", None)
    if state in ("LG001", "LG002"):
        return rejection(state, getattr(exc, "detail", None))
    if state == "LG013":
        extra = _extra(exc)
        return PostingRejected(
            f"ledger account {extra.get('ledger_account_id')}: a balance would leave the signed 64-bit range "
            f"(pending debits {extra.get('pending_debits')}, credits {extra.get('pending_credits')})",
            "balance_overflow", extra)
    if state == "LG015":
        extra = _extra(exc)
        return PostingRejected(f"ledger account {extra.get('ledger_account_id')} does not exist (it was deleted)",
                               "ledger_account_not_found", extra)
    if state == "LG003":
        return TenantFrozen("the tenant is being moved between cells; retry shortly")
    if state == "LG004":
        return IdempotencyInFlight("a request with this Idempotency-Key is still in flight")
    if state == "LG005":
        return NotFound(str(exc))
    if state == "LG006":
        return PostingRejected(str(exc), "invalid_status_transition")
    if state == "LG007":
        return PostingRejected("this ledger transaction has already been reversed", "already_reversed")
    if state == "LG008":
        return RetryableConflict(str(exc))
    if state in ("LG011", "LG012"):
        return TenantMoved("this cell does not serve the tenant")
    if state == "55P03":
        return LockTimeout("a balance this request needs stayed locked past the lock-wait bound; "
                           "nothing was written, retry shortly")
    if state == "57014":
        return DatabaseUnavailable("the database did not answer within the statement bound; nothing was written, "
                                   "retry shortly", "statement_timeout")
    if state in ("40001", "40P01"):
        return RetryableConflict("concurrent update; retry")
    if state == "23505":
        constraint = getattr(exc, "constraint_name", "") or ""
        if constraint == "ledger_transactions_external_id":
            return Conflict("a pending or posted ledger transaction with this external_id exists in the ledger",
                            "external_id_taken")
        if constraint == "ledger_accounts_external_id":
            return Conflict("a ledger account with this external_id exists in the ledger", "external_id_taken")
        if constraint == "ledger_account_categories_external_id":
            return Conflict("a ledger account category with this external_id exists in the ledger",
                            "external_id_taken")
        if constraint == "idempotency_keys_pkey":
            return IdempotencyInFlight("a request with this Idempotency-Key is still in flight")
        return Conflict(f"duplicate: {constraint}", "duplicate")
    if (fault := server_fault(exc)) is not None:
        log.error("database fault %s: %s", state, exc)  # the server's own message, for the operator
        return fault
    if state in ("22021", "22P05"):
        return InvalidRequest("a string holds a character PostgreSQL cannot store", "invalid_request")
    if state == "22003":
        return PostingRejected("a number is out of range", "number_out_of_range")
    return None
