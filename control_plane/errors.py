"""The one error type of the control plane and ledgerctl: a stable code, a message, an exit code."""

from __future__ import annotations

# Exit codes: 1 an operator error (unknown cell, duplicate tenant...), 2 click's usage errors,
# 3 verification found violations, 4 a dependency (database, cell) is unreachable.
EXIT_ERROR = 1
EXIT_VIOLATIONS = 3
EXIT_UNAVAILABLE = 4


class LedgerctlError(Exception):
    def __init__(self, code: str, message: str, exit_code: int = EXIT_ERROR, details: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.exit_code = exit_code
        self.details = details

    def as_problem(self) -> dict:
        problem = {"type": f"urn:ledgerctl:{self.code}", "code": self.code, "title": self.message}
        if self.details is not None:
            problem["details"] = self.details
        return problem
