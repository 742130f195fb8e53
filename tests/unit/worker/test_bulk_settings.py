"""The bulk processor's settings: a request's attempts are bounded (bulk_attempts_max), by a sane, checked number."""

from __future__ import annotations

import pytest

from worker.settings import load_settings


def test_bulk_attempts_max_has_a_default_and_is_bounded():
    assert load_settings({}).bulk_attempts_max == 5
    assert load_settings({"WORKER_BULK_ATTEMPTS_MAX": "1"}).bulk_attempts_max == 1
    for bad in (0, 101):
        with pytest.raises(ValueError, match="bulk_attempts_max"):
            load_settings({}, bulk_attempts_max=bad)
