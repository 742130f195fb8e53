"""The cell's expected failures, each with a stable code; cell/api/problems.py maps them to HTTP."""

from __future__ import annotations


class LedgerError(Exception):
    code = "ledger_error"

    def __init__(self, detail: str, code: str | None = None, extra: dict | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.extra = extra or {}


class InvalidRequest(LedgerError):
    """Malformed or out-of-bounds input (400)."""

    code = "invalid_request"


class NotFound(LedgerError):
    code = "not_found"


class PostingRejected(LedgerError):
    """A well-formed request that the ledger's rules refuse (422)."""

    code = "posting_rejected"


class Conflict(LedgerError):
    code = "conflict"


class IdempotencyKeyReused(LedgerError):
    code = "idempotency_key_reused"


class IdempotencyInFlight(LedgerError):
    code = "idempotency_key_in_flight"


class TenantFrozen(LedgerError):
    code = "tenant_frozen"


class TenantMoved(LedgerError):
    code = "tenant_moved"


class RetryableConflict(LedgerError):
    """Serialization failure, deadlock or a concurrent version change: the whole use case may be retried."""

    code = "retryable_conflict"


class DatabaseUnavailable(LedgerError):
    """No database connection could be had within the bound: nothing was written; retry later (503)."""

    code = "database_unavailable"


class LockTimeout(LedgerError):
    """A balance row (or another lock) stayed held past the lock-wait bound: nothing was written (503)."""

    code = "lock_timeout"


class OutcomeUnknown(LedgerError):
    """The connection was lost while the request's statements or commit were in flight: it may or may not
    have committed. Retrying with the same Idempotency-Key is safe and tells which (503)."""

    code = "outcome_unknown"
