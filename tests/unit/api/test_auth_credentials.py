"""The credentials of an Authorization header, remembered by its bytes: the same answer as decoding and hashing it
each time, for good and bad headers alike, and a bounded memory."""

from __future__ import annotations

import base64

from cell.api import auth
from cell.service.tenants import hash_secret
from ledger_common.basic_auth import parse_basic


def basic(user_password: bytes) -> bytes:
    return b"Basic " + base64.b64encode(user_password)


HEADERS = [basic(b"t1:lk_key"), basic(b"t1:lk_other"), basic(b"t2:lk_key"), b"basic " + base64.b64encode(b"t1:k:e:y"),
           basic(b"t1:"), basic(b":lk_key"), basic(b"no-colon"), b"Bearer abc", b"Basic %%%", b"", None,
           b"Basic " + b"A" * 600]


def test_credentials_are_the_decoded_tenant_and_the_keys_hash_every_time():
    for _ in range(2):  # the second time from memory
        for header in HEADERS:
            creds = parse_basic(header)
            expected = None if creds is None else (creds[0], hash_secret(creds[1]))
            assert auth.credentials(header) == expected, header


def test_the_remembered_headers_are_bounded(monkeypatch):
    monkeypatch.setattr(auth, "CREDENTIALS_REMEMBERED_MAX", 10)
    monkeypatch.setattr(auth, "_credentials", {})
    for i in range(35):
        header = basic(f"t{i}:lk_{i}".encode())
        assert auth.credentials(header) == (f"t{i}", hash_secret(f"lk_{i}"))
        assert len(auth._credentials) <= 10
    assert auth.credentials(basic(b"t0:lk_0")) == ("t0", hash_secret("lk_0"))
