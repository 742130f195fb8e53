"""The webhook deliverer's settings: a batch's attempts, a round of webhook_concurrency_max at a time, all end within
the claim's lease (past it, another deliverer would claim and send them again while they are attempted)."""

from __future__ import annotations

import pytest

from worker.settings import load_settings


def test_a_lease_shorter_than_a_batch_of_attempts_takes_is_refused():
    load_settings({}, webhook_batch_max=50, webhook_concurrency_max=16, webhook_timeout_s=5, webhook_lease_s=30)
    with pytest.raises(ValueError, match="webhook_lease_s"):
        load_settings({}, webhook_batch_max=50, webhook_concurrency_max=5, webhook_timeout_s=5, webhook_lease_s=30)
    with pytest.raises(ValueError, match="webhook_concurrency_max"):
        load_settings({}, webhook_concurrency_max=0)
