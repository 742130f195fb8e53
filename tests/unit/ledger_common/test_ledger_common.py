"""The shared package: problem+json bytes, Basic credentials, settings from the environment, named SQL."""

from __future__ import annotations

import base64

import msgspec
import pytest

from ledger_common.basic_auth import CREDENTIALS_LENGTH_MAX, UNAUTHORIZED_BODY, parse_basic
from ledger_common.problems import problem_body
from ledger_common.settings import load_from_env
from ledger_common.sql import load_queries


def test_problem_bodies_keep_their_bytes():
    assert problem_body(422, "posting_rejected", "no", errors=[1]) == (
        b'{"type":"https://ledger.dev/problems/posting_rejected","title":"posting rejected","status":422,'
        b'"code":"posting_rejected","detail":"no","errors":[1]}')
    assert problem_body(429, "rate_limited", "slow down", title="Too Many Requests") == (
        b'{"type":"https://ledger.dev/problems/rate_limited","title":"Too Many Requests","status":429,'
        b'"code":"rate_limited","detail":"slow down"}')
    assert UNAUTHORIZED_BODY == (
        b'{"type":"https://ledger.dev/problems/unauthorized","title":"unauthorized","status":401,'
        b'"code":"unauthorized","detail":"missing or invalid credentials (HTTP Basic: tenant id and API key)"}')


def _basic(text: str) -> bytes:
    return b"Basic " + base64.b64encode(text.encode())


@pytest.mark.parametrize("header", [None, b"", b"Bearer x", b"Basic !!!", _basic("t1"), _basic(":k"), _basic("t1:"),
                                    b"Basic " + b"A" * CREDENTIALS_LENGTH_MAX])
def test_anything_but_both_credentials_is_none(header):
    assert parse_basic(header) is None


def test_credentials_split_at_the_first_colon():
    assert parse_basic(_basic("t1:k:e:y")) == ("t1", "k:e:y")
    assert parse_basic(b"basic " + base64.b64encode(b"t1:k")) == ("t1", "k")


class _Settings(msgspec.Struct, frozen=True, kw_only=True):
    port: int = 1
    ratio: float = 0.5
    on: bool = False
    actor: str = ""


def test_settings_take_the_first_prefix_then_defaults_and_overrides():
    env = {"A_PORT": "7", "B_PORT": "9", "B_RATIO": "1.5", "A_ON": "true", "OTHER_ACTOR": "x"}
    s = load_from_env(_Settings, ("A_", "B_"), env, defaults={"actor": "me"})
    assert s == _Settings(port=7, ratio=1.5, on=True, actor="me")
    assert load_from_env(_Settings, ("A_",), {"A_ACTOR": "env"}, defaults={"actor": "me"}, port=3) == \
        _Settings(port=3, actor="env")
    with pytest.raises(msgspec.ValidationError):
        load_from_env(_Settings, ("A_",), {"A_PORT": "eight"})


def test_named_blocks_load_once_by_name(tmp_path):
    (tmp_path / "a.sql").write_text("-- name: one\nSELECT 1;\n\n-- name: two\nSELECT\n  2;\n")
    assert load_queries(tmp_path) == {"one": "SELECT 1;", "two": "SELECT\n  2;"}
    (tmp_path / "b.sql").write_text("-- name: one\nSELECT 3;\n")
    with pytest.raises(ValueError):
        load_queries(tmp_path)
