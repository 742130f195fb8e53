"""HTTP Basic credentials (username = tenant id, password = API key) and the one answer to bad ones."""

from __future__ import annotations

import base64
import binascii

from ledger_common.problems import problem_body

CREDENTIALS_LENGTH_MAX = 512
# An unknown tenant (router) must look exactly like a wrong key (cell): both send these bytes.
UNAUTHORIZED_BODY = problem_body(401, "unauthorized",
                                 "missing or invalid credentials (HTTP Basic: tenant id and API key)")
WWW_AUTHENTICATE = b'Basic realm="ledger"'
# The paths (percent-decoded) a cell answers only past its check of the key (cell/api/auth.py): an answer to any
# other path (the OpenAPI document, a 404) says nothing of the credentials sent with it (router/app.py).
KEY_CHECKED_PREFIX = "/api/"


def parse_basic(header: bytes | None) -> tuple[str, str] | None:
    """(tenant id, API key) of an Authorization header; None unless both are there."""
    if not header or len(header) > CREDENTIALS_LENGTH_MAX or not header[:6].lower() == b"basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep or not user or not password:
        return None
    return user, password
