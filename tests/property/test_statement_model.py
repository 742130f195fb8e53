"""Ledger account statements against the model: the ledger machine of test_ledger_model.py (random postings,
backdated and in drawn time zones, transitions, reversals, balance locks) with one rule more, which asks for a
statement of a drawn account over a drawn [lower, upper). A statement's balances must be the model's balances at its
bounds (everything effective before each) at the account's lock version then, and its entries exactly the model's
entries effective in the range then (archived ones excluded); at the end of the run, after every later posting,
backdated or not, and every later archive, each statement must read the same, with the same entries.

Run in sync mode and again in hybrid mode without a queue (the ledger machine's `hybrid`: worker steps at drawn
points). A statement made while effects of the account are still queued folds them in first (cell/store/statements.py):
its lock version and both balances count every entry committed before it, exactly as in sync mode, and the account's
own reads show them applied from then on."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule, run_state_machine_as_test
from property_model import rfc3339, view
from test_ledger_model import TIMEOUT_S, ZONES, make_machine

# PROPERTY_EXAMPLES, as the other models (PROPERTY_STATEMENT_EXAMPLES, set, for this model alone: its examples cost more).
EXAMPLES = int(os.environ.get("PROPERTY_STATEMENT_EXAMPLES") or os.environ.get("PROPERTY_EXAMPLES", "10"))
STEPS = int(os.environ.get("PROPERTY_STEPS", "25"))


def make_statement_machine(cell, hybrid: bool = False):
    class StatementMachine(make_machine(cell, hybrid)):
        def __init__(self) -> None:
            super().__init__()
            self.statements: list[tuple[dict, list[str]]] = []

        @precondition(lambda self: bool(self.accounts))
        @rule(data=st.data())
        def state(self, data):
            a = data.draw(st.sampled_from(self.accounts), label="account")
            known = sorted({t.effective_at for t in self.txns})
            instant = self.times().filter(lambda t: t is not None)
            if known:  # at, and just before, instants in use: the bounds' inclusive / exclusive edges
                instant = st.one_of(instant, st.sampled_from(known),
                                    st.sampled_from(known).map(lambda t: t - timedelta(microseconds=1)))
            lower, upper = data.draw(instant, label="lower"), data.draw(instant, label="upper")
            zone = data.draw(st.sampled_from(ZONES), label="zone")
            r = self.call("POST", "/api/ledger_account_statements", {
                "ledger_account_id": a.id, "effective_at_lower_bound": rfc3339(lower, zone),
                "effective_at_upper_bound": rfc3339(upper, zone)})
            if lower > upper:
                event("statement: refused")
                assert r.status_code == 400 and r.json()["code"] == "invalid_range", r.text
                return
            event(f"statement ({a.lock_version - a.applied} effects of its account queued)")
            assert r.status_code == 201, r.text
            s = r.json()
            assert s["ledger_account_lock_version"] == a.lock_version
            assert s["starting_balance"] == view(a.effective(lambda at: at < lower), a), "balances at the lower bound"
            assert s["ending_balance"] == view(a.effective(lambda at: at < upper), a), "balances at the upper bound"
            expected = sorted(e.id for e in a.entries
                              if lower <= e.effective_at < upper and e.txn.status != "archived")
            assert self.entry_ids(ledger_account_statement_id=s["id"]) == expected, "the statement's entries"
            self.statements.append((s, expected))
            self.fold([a])  # its queued effects were applied in the statement's transaction
            self.check_current(a)

        def teardown(self):
            try:
                for s, expected in self.statements:
                    r = self.call("GET", f"/api/ledger_account_statements/{s['id']}")
                    assert r.status_code == 200 and r.json() == s, "a statement changed after it was made"
                    assert self.entry_ids(ledger_account_statement_id=s["id"]) == expected, "a statement's entries changed"
            finally:
                super().teardown()

    return StatementMachine



def _run(machine, examples: int) -> None:
    run_state_machine_as_test(machine, settings=settings(
        max_examples=examples, stateful_step_count=STEPS, deadline=None, report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


@pytest.mark.timeout(TIMEOUT_S)
def test_statements_agree_with_the_model(ledger_cell):
    _run(make_statement_machine(ledger_cell), EXAMPLES)


@pytest.mark.timeout(TIMEOUT_S)
def test_statements_agree_with_the_model_in_hybrid_mode(hybrid_cell):
    # The same rules with queued effects and worker steps (a soak: PROPERTY_EXAMPLES for both).
    _run(make_statement_machine(hybrid_cell, hybrid=True), EXAMPLES)
