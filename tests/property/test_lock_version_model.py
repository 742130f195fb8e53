"""Lock versions against the model: what an account held at each of its versions, as a user reads it.

The ledger machine of test_ledger_model.py (postings pending or posted, backdated, with lock_version conditions right
or stale and balance locks; transitions; replacements of a pending transaction's entries; reversals; in hybrid mode
worker steps at drawn points) keeps, per account, every effect in commit (= apply) order and every entry ever written
with the version of its own effect and of its discard's archive. This machine adds what Modern Treasury's lock
versions promise a user, checked after every step on each account the step changed (and on every account, every
version, at the end):

- each entry's `ledger_account_lock_version` is its account's version once the entry applied (null while queued),
  discarded entries too (`show_deleted=true`), with the resulting balances of that version and `discarded_at` set
  exactly on the discarded ones;
- `GET /api/ledger_entries?ledger_account_id=...&as_of_lock_version=N` lists exactly the entries the account held at
  N: applied by N and not discarded by N (an entry discarded later is still listed), in the order written; with
  `show_deleted=true` every entry applied by N; `balances[as_of_lock_version]=N` are the sums of its first N effects;
- `ledger_account_lock_version[op]=n` (gt, gte, lt, lte, eq, and two at once) lists the entries whose version
  satisfies it (queued ones match no bound), live ones or, with `show_deleted`, discarded ones too;
- a lock_version condition is refused 422 `lock_version_mismatch` exactly when it is not the account's version
  (the ledger machine's rule: its committed effects, queued ones counted), and the refusal's `errors` name an account
  the request got wrong, the version it sent and the account's (a PATCH of entries named versions raised by its own
  archives: tests/integration/cell/test_entry_replacement.py keeps that example);
- a malformed version (or as_of_lock_version without an account) is 400 `invalid_parameter`.

Run in sync mode and in hybrid mode without a queue (nothing queued is applied but by a worker step)."""

from __future__ import annotations

import os

import pytest
from harness import every_page
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule, run_state_machine_as_test
from property_model import account_view, view
from test_ledger_model import TIMEOUT_S, make_machine, spread

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "6"))
STEPS = int(os.environ.get("PROPERTY_STEPS", "20"))
# Versions older than a step's new ones re-read after it, per changed account (every one at the end).
OLDER_VERSIONS_READ_MAX = 3
OPERATORS = {"gt": lambda v, n: v > n, "gte": lambda v, n: v >= n, "lt": lambda v, n: v < n,
             "lte": lambda v, n: v <= n, "eq": lambda v, n: v == n}


def make_lock_machine(cell, hybrid: bool = False):
    class LockVersionMachine(make_machine(cell, hybrid)):
        def __init__(self) -> None:
            super().__init__()
            self.audited: dict[str, tuple[int, int]] = {}  # account id -> (committed, applied) when last audited

        def call(self, method: str, path: str, json=None, params=None):
            """Every request; a lock_version refusal (a post or a PATCH of entries: the model is still the state
            before it) names an account whose version the request got wrong, at the version the model gives it."""
            r = super().call(method, path, json=json, params=params)
            if r.status_code == 422 and r.json()["code"] == "lock_version_mismatch":
                self.check_mismatch(json, r.json())
            return r

        def check_mismatch(self, body: dict, problem: dict) -> None:
            errors = problem["errors"]
            a = next(a for a in self.accounts if a.id == errors["ledger_account_id"])
            asked = {e["lock_version"] for e in body["ledger_entries"]
                     if e["ledger_account_id"] == a.id and "lock_version" in e}
            assert (int(errors["actual"]), int(errors["expected"]) in asked) == (a.lock_version, True), \
                f"lock_version_mismatch on {a} at {a.lock_version} ({a.applied} applied), asked {asked}: {problem}"
            event(f"lock_version_mismatch ({a.lock_version - a.applied} effects queued)")

        # -- the model's answers -------------------------------------------------------------------------------

        def version_of(self, a, e) -> int | None:
            """The entry's ledger_account_lock_version as a user reads it: its effect's, once applied."""
            return e.lock_version if e.lock_version <= a.applied else None

        def held_at(self, a, v: int, deleted: bool = False) -> list:
            """The entries account `a` held at applied version v (with `deleted`: every one applied by v)."""
            return [e for e in a.written if e.lock_version <= v and (
                deleted or e.discarded_version is None or e.discarded_version > v)]

        def status_of(self, e) -> str:
            return "archived" if e.discarded_version is not None else e.txn.status

        # -- reads checked against it ----------------------------------------------------------------------------

        def audit_written(self, a) -> None:
            """Every entry ever written to `a`, as listed with show_deleted: version, balances then, discard."""
            listed = self.list_entries(a, show_deleted="true")
            assert [x["id"] for x in listed] == [e.id for e in a.written], f"entries of {a} with show_deleted"
            for x, e in zip(listed, a.written):
                v = self.version_of(a, e)
                assert x["ledger_account_lock_version"] == v, \
                    f"ledger_account_lock_version of entry {e.id[:8]} on {a} ({a.applied} of {a.lock_version} applied)"
                assert x["resulting_ledger_account_balances"] == (None if v is None else view(a.at_version(v), a)), \
                    f"resulting balances of entry {e.id[:8]} at lock_version {v}"
                assert x["status"] == self.status_of(e), f"status of entry {e.id[:8]}"
                assert (x["discarded_at"] is not None) == (e.discarded_version is not None), \
                    f"discarded_at of entry {e.id[:8]}"

        def audit_version(self, a, v: int) -> None:
            """What `a` held at version v: its entries (live then; with show_deleted, all applied by then) and its
            balances."""
            for deleted in (False, True):
                extra = {"show_deleted": "true"} if deleted else {}
                listed = self.list_entries(a, as_of_lock_version=str(v), **extra)
                expected = self.held_at(a, v, deleted)
                assert [x["id"] for x in listed] == [e.id for e in expected], \
                    f"entries of {a} as of lock_version {v}{' with show_deleted' if deleted else ''}"
                for x, e in zip(listed, expected):
                    assert x["ledger_account_lock_version"] == e.lock_version
                    assert x["status"] == self.status_of(e)
            got = self.read_account(a, {"balances[as_of_lock_version]": str(v)})
            assert (got["lock_version"], got["balances"]) == (v, account_view(a.at_version(v), a)), \
                f"balances of {a} as of lock_version {v}"

        def audit_range(self, a, bounds: dict[str, int], deleted: bool) -> None:
            """Entries by their versions: of account `a`, or (None) of every account of the tenant."""
            params = {f"ledger_account_lock_version[{op}]": str(n) for op, n in bounds.items()}
            if deleted:
                params["show_deleted"] = "true"
            if a is not None:
                params["ledger_account_id"] = a.id
            listed = [x["id"] for x in self.entries_listed(**params)]
            expected = [e.id for b in ([a] if a is not None else self.accounts) for e in b.written
                        if (deleted or e.discarded_version is None) and (v := self.version_of(b, e)) is not None
                        and all(OPERATORS[op](v, n) for op, n in bounds.items())]
            if a is None:  # the tenant's entries in the order written, over accounts
                listed, expected = sorted(listed), sorted(expected)
            assert listed == expected, f"entries with {params}"

        def audit_pages(self, a, v: int) -> None:
            """As of version v, newest effective first, two a page: the same entries, in (effective_at, written)
            order, each once across the pages."""
            listed = every_page(self.call, "/api/ledger_entries", per_page="2", ledger_account_id=a.id,
                                as_of_lock_version=str(v), **{"order_by[effective_at]": "desc"})
            held = self.held_at(a, v)
            expected = sorted(held, key=lambda e: (e.effective_at, a.written.index(e)), reverse=True)
            assert [x["id"] for x in listed] == [e.id for e in expected], \
                f"entries of {a} as of lock_version {v}, by effective_at desc, two a page"

        @invariant()
        def versions_as_seen(self):
            """After every step, each account it changed: its entries' versions, its new versions and a few older."""
            for a in self.accounts:
                before = self.audited.get(a.id, (0, 0))
                if before == (a.lock_version, a.applied):
                    continue
                self.audited[a.id] = (a.lock_version, a.applied)
                self.audit_written(a)
                older = spread(list(range(min(before[1], a.applied))), OLDER_VERSIONS_READ_MAX)
                for v in [*older, *range(min(before[1], a.applied), a.applied + 1)]:
                    self.audit_version(a, v)

        @precondition(lambda self: bool(self.txns))
        @rule(data=st.data())
        def filter_by_version(self, data):
            """Entries by ledger_account_lock_version bounds, of an account or of all: one or two drawn operators around
            the applied versions."""
            a = data.draw(st.sampled_from([*self.accounts, None]), label="account (None: all)")
            top = max(b.applied for b in self.accounts) if a is None else a.applied
            ops = data.draw(st.lists(st.sampled_from(sorted(OPERATORS)), min_size=1, max_size=2, unique=True),
                            label="operators")
            bounds = {op: data.draw(st.integers(0, top + 1), label=op) for op in ops}
            deleted = data.draw(st.booleans(), label="show_deleted")
            event(f"filter by version: {'+'.join(ops)}{' show_deleted' if deleted else ''}")
            self.audit_range(a, bounds, deleted)

        @rule(data=st.data())
        def malformed_version(self, data):
            """A version that is no version (negative, past the 64-bit range, not a number, an unknown operator) or
            as_of_lock_version without an account: 400 invalid_parameter, never a 5xx."""
            a = data.draw(st.sampled_from(self.accounts), label="account")
            bad = data.draw(st.sampled_from(["-1", "9223372036854775808", "1.5", "x", ""]), label="value")
            params = data.draw(st.sampled_from([
                {"ledger_account_id": a.id, "as_of_lock_version": bad},
                {"ledger_account_id": a.id, "ledger_account_lock_version[gte]": bad},
                {"ledger_account_id": a.id, "ledger_account_lock_version[not_eq]": "1"},
                {"as_of_lock_version": "1"}]), label="params")
            r = self.call("GET", "/api/ledger_entries", params=params)
            assert r.status_code == 400 and r.json()["code"] == "invalid_parameter", f"{params}: {r.text}"
            assert r.headers["content-type"].startswith("application/problem+json")

        def teardown(self):
            try:
                if self.accounts:
                    self.work_on(self.accounts)
                    for a in self.accounts:
                        self.audit_written(a)
                        for v in range(a.applied + 1):
                            self.audit_version(a, v)
                        for v in spread(list(range(1, a.applied + 1)), 3):
                            self.audit_pages(a, v)
                        for op in OPERATORS:
                            self.audit_range(a, {op: a.applied // 2}, deleted=op in ("lt", "eq"))
            finally:
                super().teardown()

    return LockVersionMachine



def _run(machine) -> None:
    run_state_machine_as_test(machine, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


@pytest.mark.timeout(TIMEOUT_S)
def test_lock_versions_agree_with_the_model(ledger_cell):
    _run(make_lock_machine(ledger_cell))


@pytest.mark.timeout(TIMEOUT_S)
def test_lock_versions_agree_with_the_model_in_hybrid_mode(hybrid_cell):
    _run(make_lock_machine(hybrid_cell, hybrid=True))
