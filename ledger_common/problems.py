"""The RFC 9457 problem+json body every component answers with: one vocabulary of types and stable codes."""

from __future__ import annotations

import msgspec

PROBLEM_JSON = "application/problem+json"

_encoder = msgspec.json.Encoder()


def problem_body(status: int, code: str, detail: str | None = None, *, title: str | None = None, **extra) -> bytes:
    """type, title (the code in words unless given), status, code, detail (when given), then `extra`."""
    body: dict[str, object] = {"type": f"https://ledger.dev/problems/{code}",
                               "title": code.replace("_", " ") if title is None else title,
                               "status": status, "code": code}
    if detail is not None:
        body["detail"] = detail
    body.update(extra)
    return _encoder.encode(body)
