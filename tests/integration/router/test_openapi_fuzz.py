"""The OpenAPI document is the truth: schemathesis (the real fuzzer, from PyPI) reads /schema/openapi.json
through the router and fuzzes every operation of a real cell behind it; no answer is a server error, and every
answer has the documented status, content type, headers and shape. Bounded in examples and time. The fuzz runs in
the background of the session from its first test on (fuzz_rig.py, tests/conftest.py); this test, run last,
takes its verdict (under pytest-xdist, its worker runs it first and in the foreground)."""

from __future__ import annotations

import pytest
from fuzz_rig import FUZZ_TIME_S_MAX


@pytest.mark.timeout(FUZZ_TIME_S_MAX + 120)
def test_schemathesis_finds_no_server_error_and_no_schema_violation(fuzz_run):
    code, report = fuzz_run.verdict()
    assert code == 0, report[-20000:]
