"""Property-test fixtures: the sync-mode cell (harness.py) and hypothesis profiles."""

from __future__ import annotations

import pytest
from harness import open_cell
from hypothesis import Phase, settings


@pytest.fixture(scope="session")
def ledger_cell(cell_database_url):
    # The sync model assumes every effect is applied in the posting's own transaction.
    with open_cell(cell_database_url, posting_mode="sync") as cell:
        yield cell


@pytest.fixture(scope="session")
def hybrid_cell(cell_database_url):
    # Hybrid mode without a queue URL (a NullNudger): nothing queued is applied until a model's worker step says so.
    with open_cell(cell_database_url, posting_mode="hybrid", tenant_prefix="h") as cell:
        yield cell


# `pytest --hypothesis-profile=no-shrink`: report a failing sequence at once, unshrunk (shrinking a stateful
# run against the real API can take hypothesis' full five minutes).
settings.register_profile("no-shrink", phases=[Phase.explicit, Phase.reuse, Phase.generate])
