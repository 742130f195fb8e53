"""Which event a settlement's change makes: Modern Treasury's finish_processing / finish_archiving, else updated."""

from __future__ import annotations

import pytest

from cell.ledger.settlements import TRANSITIONS, status_event


@pytest.mark.parametrize("before, after, name", [
    ("drafting", "pending", "finish_processing"), ("drafting", "posted", "finish_processing"),
    ("drafting", "archived", "finish_archiving"), ("pending", "archived", "finish_archiving"),
    ("pending", "posted", "updated"), ("drafting", "drafting", "updated"), ("pending", "pending", "updated"),
    ("posted", "posted", "updated"), ("archived", "archived", "updated")])
def test_a_settlement_change_names_its_event(before, after, name):
    assert status_event(before, after) == f"ledger_account_settlement.{name}"


def test_every_allowed_transition_has_an_event():
    for before, targets in TRANSITIONS.items():
        for after in targets:
            assert status_event(before, after).startswith("ledger_account_settlement.")
