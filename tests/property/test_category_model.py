"""Ledger account categories against a model: random postings (pending and posted, backdated or not),
settlements, accounts moved in and out of categories, categories nested and un-nested; after every step each
category's balances, current and as of an effective time, must be the model's sums over the accounts its graph
reaches now (same as Modern Treasury: "with respect to the ledger accounts that are currently present").

The model keeps its own graph and entries and recomputes reachability and sums from first principles
(property_model), never with cell code. Runs the real app in sync mode like test_ledger_model.py, and again in hybrid
mode without a queue (test_settlement_model.py's way): every effect is queued and worker steps at drawn points
(`ledger_apply_report`, as a worker runs it) apply the queued effects of drawn accounts. A category's balances are
then the sums over the accounts it reaches of what those accounts' own reads show: their applied effects (README,
"Sync and async entries": queued entries count once applied), current, as of an effective time and as of a date;
exact for every account a worker step has applied since its last write.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest
from harness import ApiMachine
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule, run_state_machine_as_test
from property_model import Sums, rfc3339, sums, view

UTC = timezone.utc
# Six USD accounts and one EUR account in one ledger; four USD categories.
ACCOUNT_NORMALS = ["debit", "credit", "credit", "debit", "credit", "debit"]
CATEGORY_NORMALS = ["debit", "credit", "credit", "debit"]
EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "15"))
STEPS = int(os.environ.get("PROPERTY_STEPS", "30"))
TIMEOUT_S = int(os.environ.get("PROPERTY_TIMEOUT_S", "900"))
PATH = "/api/ledger_account_categories"


@dataclass(eq=False)
class Node:
    """An account or a category of the model: what `view` needs, and for a category its direct contents."""

    id: str
    normal: str
    currency: str = "USD"
    exponent: int = 2
    accounts: set = field(default_factory=set)
    children: set = field(default_factory=set)

    def __repr__(self) -> str:
        return f"<{self.normal} {self.currency} {self.id[:8]}>"


@dataclass
class Entry:
    account: str
    direction: str
    amount: int
    effective_at: datetime
    txn: dict  # {"id", "status"}: shared by the entries of one transaction


def make_machine(cell, hybrid: bool = False):
    """`hybrid`: the cell posts in hybrid mode without a queue; nothing queued is applied but by the `work` rule."""

    class CategoryMachine(ApiMachine):
        def __init__(self) -> None:
            super().__init__(cell)
            self.accounts: list[Node] = []
            self.foreign: Node | None = None  # the EUR account: no USD category may hold it
            self.categories: list[Node] = []
            self.entries: list[Entry] = []
            self.pending: list[dict] = []
            # Per account, every committed balance effect in commit (= apply) order: (entry, its status after the
            # effect); and how many of them are applied (all of them in sync mode).
            self.effects: dict[str, list[tuple[Entry, str]]] = {}
            self.applied: dict[str, int] = {}
            self.base = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

        # -- the model ---------------------------------------------------------------------------------------------

        def reach(self, c: Node, seen: frozenset = frozenset()) -> set[str]:
            found = set(c.accounts)
            for child in c.children:
                found |= self.reach(self.by_id(child), seen | {c.id})
            return found

        def by_id(self, category_id: str) -> Node:
            return next(c for c in self.categories if c.id == category_id)

        def effect(self, e: Entry, status: str) -> None:
            self.effects.setdefault(e.account, []).append((e, status))
            if not hybrid:  # applied in the posting's own transaction
                self.applied[e.account] = len(self.effects[e.account])

        def applied_sums(self, account: str, keep=lambda at: True) -> Sums:
            """What the account's applied effects add up to: each entry at its status as of the last of them."""
            seen = {id(e): (e, status) for e, status in self.effects.get(account, [])[:self.applied.get(account, 0)]}
            return sums(p for p in seen.values() if keep(p[0].effective_at))

        def expected(self, c: Node, keep=lambda at: True) -> dict:
            total = Sums()
            for account in sorted(self.reach(c)):
                total += self.applied_sums(account, keep)
            return view(total, c)

        def queued(self, c: Node) -> int:
            return sum(len(self.effects.get(a, [])) - self.applied.get(a, 0) for a in self.reach(c))

        # -- set-up --------------------------------------------------------------------------------------------------

        @initialize()
        def open_books(self):
            r = self.call("POST", "/api/ledgers", {"name": "books"})
            assert r.status_code == 201, r.text
            self.ledger = r.json()["id"]
            for normal in ACCOUNT_NORMALS:
                r = self.call("POST", "/api/ledger_accounts", {"name": "a", "ledger_id": self.ledger,
                                                               "normal_balance": normal, "currency": "USD"})
                assert r.status_code == 201, r.text
                self.accounts.append(Node(r.json()["id"], normal))
            r = self.call("POST", "/api/ledger_accounts", {"name": "eur", "ledger_id": self.ledger,
                                                           "normal_balance": "credit", "currency": "EUR"})
            self.foreign = Node(r.json()["id"], "credit", "EUR")
            for normal in CATEGORY_NORMALS:
                r = self.call("POST", PATH, {"name": "c", "ledger_id": self.ledger, "normal_balance": normal,
                                             "currency": "USD"})
                assert r.status_code == 201, r.text
                self.categories.append(Node(r.json()["id"], normal))

        def times(self):
            return st.builds(lambda d, h: self.base + timedelta(days=d, hours=h), st.integers(-4, 4),
                             st.sampled_from([0, 0, 6, 23]))

        # -- postings ------------------------------------------------------------------------------------------------

        @rule(data=st.data())
        def post(self, data):
            debit, credit = data.draw(st.lists(st.sampled_from(self.accounts), min_size=2, max_size=2, unique=True))
            amount = data.draw(st.integers(1, 1000))
            at = data.draw(self.times(), label="effective_at")  # often before what is already there: backdated
            status = data.draw(st.sampled_from(["pending", "posted"]))
            r = self.call("POST", "/api/ledger_transactions", {
                "ledger_id": self.ledger, "status": status, "effective_at": rfc3339(at), "ledger_entries": [
                    {"ledger_account_id": debit.id, "direction": "debit", "amount": amount},
                    {"ledger_account_id": credit.id, "direction": "credit", "amount": amount}]})
            assert r.status_code == 201, r.text
            txn = {"id": r.json()["id"], "status": status}
            new = [Entry(debit.id, "debit", amount, at, txn), Entry(credit.id, "credit", amount, at, txn)]
            self.entries += new
            for e in new:
                self.effect(e, status)
            if status == "pending":
                self.pending.append(txn)

        @precondition(lambda self: self.pending)
        @rule(data=st.data(), to=st.sampled_from(["posted", "archived"]))
        def settle(self, data, to):
            txn = data.draw(st.sampled_from(self.pending))
            r = self.call("PATCH", f"/api/ledger_transactions/{txn['id']}", {"status": to})
            assert r.status_code == 200, r.text
            txn["status"] = to
            self.pending.remove(txn)
            for e in self.entries:  # one effect per entry, in entry order
                if e.txn is txn:
                    self.effect(e, to)

        @precondition(lambda self: hybrid)
        @rule(data=st.data())
        def work(self, data):
            """A worker step: the queued effects of some accounts (all of them, now and then) are applied."""
            chosen = data.draw(st.lists(st.sampled_from(self.accounts), min_size=1, unique_by=id) | st.just(
                self.accounts), label="accounts applied")
            self.cell.apply([a.id for a in chosen])
            for a in chosen:
                self.applied[a.id] = len(self.effects.get(a.id, []))

        # -- the graph -----------------------------------------------------------------------------------------------

        @rule(data=st.data())
        def add_account(self, data):
            c = data.draw(st.sampled_from(self.categories))
            a = data.draw(st.sampled_from([*self.accounts, self.foreign]))
            r = self.call("PUT", f"{PATH}/{c.id}/ledger_accounts/{a.id}")
            if a is self.foreign:
                assert r.status_code == 422 and r.json()["code"] == "category_currency_mismatch", r.text
                return
            assert r.status_code == 204, r.text
            c.accounts.add(a.id)

        @rule(data=st.data())
        def remove_account(self, data):
            c = data.draw(st.sampled_from(self.categories))
            # In the model's order, never by id: ids differ from one run to the next, and a draw must pick the
            # same node when Hypothesis replays it (or it sees data generation depend on external state).
            a = data.draw(st.sampled_from([x.id for x in self.accounts if x.id in c.accounts] or [self.accounts[0].id]))
            r = self.call("DELETE", f"{PATH}/{c.id}/ledger_accounts/{a}")
            assert r.status_code == 204, r.text
            c.accounts.discard(a)

        @rule(data=st.data())
        def nest(self, data):
            parent = data.draw(st.sampled_from(self.categories))
            child = data.draw(st.sampled_from(self.categories))
            r = self.call("PUT", f"{PATH}/{parent.id}/ledger_account_categories/{child.id}")
            # A cycle: the parent is the child or sits below it.
            if parent is child or self.below(child, parent):
                assert r.status_code == 422 and r.json()["code"] == "category_cycle", r.text
                return
            assert r.status_code == 204, r.text
            parent.children.add(child.id)

        def below(self, top: Node, node: Node) -> bool:
            return any(child == node.id or self.below(self.by_id(child), node) for child in top.children)

        @rule(data=st.data())
        def unnest(self, data):
            parent = data.draw(st.sampled_from(self.categories))
            child = data.draw(st.sampled_from([x.id for x in self.categories if x.id in parent.children]
                                              or [self.categories[-1].id]))
            if child == parent.id:
                return
            r = self.call("DELETE", f"{PATH}/{parent.id}/ledger_account_categories/{child}")
            assert r.status_code == 204, r.text
            parent.children.discard(child)

        # -- reads ---------------------------------------------------------------------------------------------------

        @invariant()
        def balances_are_the_sums_of_the_accounts_reached(self):
            for c in self.categories:
                r = self.call("GET", f"{PATH}/{c.id}")
                assert r.status_code == 200, r.text
                assert r.json()["balances"] == self.expected(c), \
                    f"current balances of {c} ({self.queued(c)} effects of its accounts queued)"
            if hybrid and self.accounts:  # the accounts' own reads show the same applied effects
                r = self.call("GET", "/api/ledger_accounts",
                              params={"id[]": [a.id for a in self.accounts], "per_page": "100"})
                assert r.status_code == 200, r.text
                by_id = {x["id"]: x for x in r.json()}
                for a in self.accounts:
                    assert by_id[a.id]["lock_version"] == self.applied.get(a.id, 0), f"applied lock_version of {a}"
                    got = {k: v for k, v in by_id[a.id]["balances"].items() if not k.startswith("effective_at")}
                    assert got == view(self.applied_sums(a.id), a), f"applied balances of {a}"

        @rule(data=st.data())
        def read_as_of(self, data):
            known = sorted({e.effective_at for e in self.entries})
            at = data.draw(st.sampled_from(known) if known and data.draw(st.booleans()) else self.times(),
                           label="as of")
            for c in self.categories:
                r = self.call("GET", f"{PATH}/{c.id}", params={"balances[effective_at]": rfc3339(at)})
                assert r.status_code == 200, r.text
                assert r.json()["balances"] == self.expected(c, lambda t: t <= at), f"balances of {c} as of {at}"

        @rule(data=st.data())
        def read_as_of_date(self, data):
            """`balances[as_of_date]`: everything effective before the end of that UTC day."""
            day = data.draw(self.times(), label="as of date").date()
            end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
            for c in self.categories:
                r = self.call("GET", f"{PATH}/{c.id}", params={"balances[as_of_date]": day.isoformat()})
                assert r.status_code == 200, r.text
                assert r.json()["balances"] == self.expected(c, lambda t: t < end), f"balances of {c} on {day}"

        @rule()
        def list_by_account(self):
            for a in self.accounts:
                r = self.call("GET", PATH, params={"ledger_account_id": a.id, "per_page": "100"})
                assert r.status_code == 200, r.text
                assert {c["id"] for c in r.json()} == {c.id for c in self.categories if a.id in self.reach(c)}

        def teardown(self):
            if hybrid and self.accounts:  # the last worker step: then every category is exact
                self.cell.apply([a.id for a in self.accounts])
                for a in self.accounts:
                    self.applied[a.id] = len(self.effects.get(a.id, []))
                self.balances_are_the_sums_of_the_accounts_reached()
                for c in self.categories:
                    assert self.queued(c) == 0
            problems = self.cell.verify(self.tenant)
            assert problems == [], f"invariants violated for {self.tenant}: {problems}"

    return CategoryMachine



def _run(machine, examples: int) -> None:
    run_state_machine_as_test(machine, settings=settings(
        max_examples=examples, stateful_step_count=STEPS, deadline=None, report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


@pytest.mark.timeout(TIMEOUT_S)
def test_category_balances_are_the_models_sums(ledger_cell):
    _run(make_machine(ledger_cell), EXAMPLES)


@pytest.mark.timeout(TIMEOUT_S)
def test_category_balances_are_the_models_sums_in_hybrid_mode(hybrid_cell):
    # The same rules with queued effects and worker steps (a soak: PROPERTY_EXAMPLES for both).
    _run(make_machine(hybrid_cell, hybrid=True), EXAMPLES)
