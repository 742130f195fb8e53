"""Hybrid posting mode against a model: queued effects, sync entries, worker steps, read-your-writes.

A hypothesis RuleBasedStateMachine drives a cell app in posting_mode="hybrid" with no SQS queue (a NullNudger:
nothing queued is applied until this test applies it). The model keeps, per account, every committed balance
effect in commit order (an entry written, a pending transaction posted or archived) and how many of them are
applied. Sequential requests commit in order and `apply` folds an account's queued effects in sequence order,
before any effect of the posting that applies them, so the account's lock version v is the v-th committed
effect and its balances are the sum of the first v effects.

What the model predicts (DESIGN.md section 4):
- an entry is applied inside its posting when its account is sync-only or some entry of the posting on that
  account carries a balance lock, a lock_version or show_resulting_ledger_account_balances; the apply folds
  every queued effect of the account first; everything else is queued (lock version null in the response);
- a PATCH pending -> posted/archived and a reversal queue their effects unless the account is sync-only;
- a balance lock is checked on the account's balances with every committed effect counted, a lock_version
  against the number of committed effects; a failing lock answers 422 and changes nothing;
- a worker step (`ledger_apply_report(accounts, false)`, called on a separate connection, as a worker does)
  folds every queued effect of the accounts it names.

Checked: `balances[include_unapplied]=true` equals the model's full balances and lock version (every committed
effect), and the plain read its applied prefix (so never more than committed, and exact after a worker step), after
every step; the response's lock versions and resulting balances; per account, `balances[as_of_lock_version]=v` for
v in 1..lock_version (one known effect per version, in commit order), and each applied entry's resulting balances; at
the end, after applying everything, every balance and `verify()`.

Balances are recomputed here from first principles (Modern Treasury's definitions), never with cell code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from harness import ApiMachine, Cell
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)
from property_model import (
    LAYOUT,
    Sums,
    account_view,
    amounts,
    draw_balance_lock,
    draw_legs,
    draw_pending,
    draw_transition,
    flip,
    freed_by_archiving,
    refused,
    overflows,
    raised,
    reversal_refused,
    rfc3339,
    view,
)


# PROPERTY_EXAMPLES / PROPERTY_STEPS (and PROPERTY_TIMEOUT_S): a longer soak than make test can afford.
EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "15"))
STEPS = int(os.environ.get("PROPERTY_STEPS", "25"))
TIMEOUT_S = int(os.environ.get("PROPERTY_TIMEOUT_S", "900"))


# -- the app under test: hybrid mode, no queue ----------------------------------------------------------------



# -- the model ------------------------------------------------------------------------------------------------


def delta(direction: str, amount: int, kind: str, posted: bool = False) -> Sums:
    """A balance effect: an entry written (pending, and posted too when written posted), posted, archived."""
    if kind == "entry":
        p, o = amount, amount if posted else 0
    elif kind == "post":
        p, o = 0, amount
    else:  # archive: a pending entry stops counting
        p, o = -amount, 0
    return Sums(p, 0, o, 0) if direction == "debit" else Sums(0, p, 0, o)


@dataclass
class MAccount:
    id: str
    ledger: int
    currency: str
    exponent: int
    normal: str
    sync_only: bool
    # Every committed effect, in commit (= apply) order: (kind, entry, delta); running[v - 1] is the account
    # after its first v effects, i.e. at lock_version v once applied.
    effects: list = field(default_factory=list, repr=False)
    running: list = field(default_factory=list, repr=False)
    applied: int = 0

    def __repr__(self) -> str:
        return (f"<{self.currency} {self.normal}-normal{' sync-only' if self.sync_only else ''} account "
                f"{self.id[:8]} in ledger {self.ledger}>")

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(repr(self))

    def add(self, kind: str, entry, d: Sums) -> int:
        """Record a committed effect; returns its index (its lock version minus one, once applied)."""
        self.effects.append((kind, entry, d))
        self.running.append((self.running[-1] if self.running else Sums()) + d)
        return len(self.effects) - 1

    def at(self, v: int) -> Sums:
        return Sums() if v == 0 else self.running[v - 1]

    def total(self) -> Sums:
        return self.at(len(self.effects))

    @property
    def queued(self) -> int:
        return len(self.effects) - self.applied

    def apply_all(self) -> None:
        self.applied = len(self.effects)


@dataclass
class MTxn:
    id: str
    ledger: int
    status: str
    effective_at: datetime
    entries: list = field(default_factory=list, repr=False)
    reversed_by: str | None = None
    reverses: "MTxn | None" = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"<{self.status} txn {self.id[:8]}>"


@dataclass
class MEntry:
    id: str
    txn: MTxn
    account: MAccount
    direction: str
    amount: int
    index: int = -1  # of its 'entry' effect in account.effects
    discarded: bool = False  # its transaction's entries were replaced: listed only with show_deleted

    @property
    def lock_version(self) -> int | None:
        return self.index + 1 if self.index < self.account.applied else None


def parse(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def unique(accounts) -> list[MAccount]:
    return list({id(a): a for a in accounts}.values())


# -- the machine ----------------------------------------------------------------------------------------------


def make_machine(cell: Cell):
    class HybridMachine(ApiMachine):
        def __init__(self) -> None:
            super().__init__(cell)
            self.ledger_ids: list[str] = []
            self.accounts: list[MAccount] = []
            self.txns: list[MTxn] = []
            self.base = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

        # -- reads checked against the model ---------------------------------------------------------------------

        def check(self, a: MAccount) -> None:
            """Properties 1 and 3: read-your-writes equals every committed effect, the plain read the applied ones."""
            full = self.read_account(a, {"balances[include_unapplied]": "true"})
            assert full["balances"] == account_view(a.total(), a), \
                f"include_unapplied balances of {a} ({a.queued} queued of {len(a.effects)})"
            plain = self.read_account(a)
            assert plain["lock_version"] == a.applied, f"applied lock_version of {a}"
            assert plain["balances"] == account_view(a.at(a.applied), a), \
                f"applied balances of {a} ({a.applied} of {len(a.effects)} applied)"
            assert full["lock_version"] == len(a.effects), f"lock_version of {a}, queued effects counted"
            assert plain["sync_only"] == a.sync_only

        def check_entries_of(self, got_entries: list[dict], m: MTxn) -> None:
            """The transaction's entries as rendered: lock version of the entry's own effect when applied."""
            assert [g["id"] for g in got_entries] == [e.id for e in m.entries]
            for g, e in zip(got_entries, m.entries):
                assert g["ledger_account_lock_version"] == e.lock_version, \
                    f"lock version of entry {e.id[:8]} on {e.account}"
                assert g["status"] == m.status

        def times(self):
            return st.one_of(st.none(), st.integers(-3 * 24, 3 * 24).map(lambda h: self.base + timedelta(hours=h)))

        # -- rules ---------------------------------------------------------------------------------------------

        @initialize(normals=st.lists(st.sampled_from(["credit", "debit"]), min_size=len(LAYOUT),
                                     max_size=len(LAYOUT)),
                    sync=st.lists(st.sampled_from([False, False, False, True]), min_size=len(LAYOUT),
                                  max_size=len(LAYOUT)))
        def open_books(self, normals, sync):
            for i in range(2):
                r = self.call("POST", "/api/ledgers", {"name": f"ledger-{i}"})
                assert r.status_code == 201, r.text
                self.ledger_ids.append(r.json()["id"])
            for (ledger, currency), normal, sync_only in zip(LAYOUT, normals, sync):
                body = {"name": f"{currency}-{normal}", "ledger_id": self.ledger_ids[ledger],
                        "normal_balance": normal, "currency": currency}
                if sync_only:
                    body["sync_only"] = True
                r = self.call("POST", "/api/ledger_accounts", body)
                assert r.status_code == 201, r.text
                got = r.json()
                a = MAccount(got["id"], ledger, currency, got["currency_exponent"], normal, sync_only)
                assert got["balances"] == account_view(Sums(), a) and got["lock_version"] == 0
                assert got["sync_only"] == sync_only
                self.accounts.append(a)

        @rule(data=st.data())
        def post(self, data):
            for _ in range(data.draw(st.integers(1, 2), label="postings")):
                self.post_one(data.draw)

        def post_one(self, draw):
            ledger, legs = draw_legs(draw, self.accounts)
            status = draw(st.sampled_from(["pending", "posted"]), label="status")
            effective_at = draw(self.times(), label="effective_at")
            # Most postings plain (queued unless sync-only); some with locks, lock versions, resulting balances.
            mode = draw(st.sampled_from([None, None, None, "balance", "lock_version", "show", "mixed"]),
                        label="locks")

            # Property 2: a lock is checked on every committed effect of the account plus this posting's.
            # Targets are drawn around that result and around the stale one (applied effects only), so a lock
            # checked on a stale balance answers differently whenever the account has effects queued.
            projected, stale = {}, {}
            for a in unique(a for a, _, _ in legs):
                mine = self.mine(a, legs, status)
                projected[a.id] = amounts(a.total() + mine, a.normal)
                stale[a.id] = amounts(a.at(a.applied) + mine, a.normal)

            entries_body, expected_code, applied_now = [], None, {a.id for a, _, _ in legs if a.sync_only}
            for a, direction, amount in legs:
                e = {"ledger_account_id": a.id, "direction": direction, "amount": amount}
                failing, conditioned = self.condition(draw, e, a, mode, projected[a.id], stale[a.id])
                if conditioned:
                    applied_now.add(a.id)
                expected_code = expected_code or failing
                entries_body.append(e)

            if self.overflow(legs, status):
                expected_code = "balance_overflow"  # checked before any balance lock
            body = {"ledger_id": self.ledger_ids[ledger], "status": status, "ledger_entries": entries_body}
            if effective_at is not None:
                body["effective_at"] = rfc3339(effective_at)
            before = {a.id: (len(a.effects), a.applied) for a, _, _ in legs}
            r = self.call("POST", "/api/ledger_transactions", body)
            event(f"post: {expected_code or ('some sync' if applied_now else 'all queued')}")
            touched = unique(a for a, _, _ in legs)
            if expected_code is not None:
                assert r.status_code == 422, r.text
                assert r.json()["code"] == expected_code, r.text
                for a in touched:  # refused: nothing written, nothing applied (not even the queued effects)
                    assert (len(a.effects), a.applied) == before[a.id]
                    self.check(a)
                return
            assert r.status_code == 201, r.text
            self.record(r.json(), legs, status, [bool(e.get("show_resulting_ledger_account_balances"))
                                                 for e in entries_body], applied_now)

        @staticmethod
        def condition(draw, e: dict, a: MAccount, mode, projected: dict, stale: dict) -> tuple[str | None, bool]:
            """A drawn condition of `mode` ("mixed": any) or none on entry body `e` of account `a`: a lock_version
            around the account's committed effects, a balance lock around `projected` (every committed effect and
            the request's) or `stale` (applied ones only), resulting balances shown. Returns the code that must
            refuse it (None: none) and whether it has a condition (its account is then applied now)."""
            kind = mode if mode != "mixed" else draw(st.sampled_from(["balance", "lock_version", "show"]))
            kind = draw(st.sampled_from([None, kind])) if kind else None
            failing = None
            if kind == "lock_version":
                version = max(0, len(a.effects) + draw(st.sampled_from([0, 0, 0, -1, 1])))
                e["lock_version"] = version
                if version != len(a.effects):
                    failing = "lock_version_mismatch"
            elif kind == "balance":
                if a.queued:
                    event("balance lock on an account with effects queued")
                name, e[name], holds = draw_balance_lock(draw, projected, stale)
                if not holds:
                    failing = "balance_lock_failed"
            if kind == "show" or (kind is not None and draw(st.booleans())):
                e["show_resulting_ledger_account_balances"] = True
            return failing, kind is not None

        @staticmethod
        def mine(a, legs, status: str) -> Sums:
            """What this posting's legs on account `a` add to it."""
            total = Sums()
            for b, d, x in legs:
                if b is a:
                    total = total + delta(d, x, "entry", status == "posted")
            return total

        def overflow(self, legs, status: str) -> bool:
            """Counted on every effect of the account, queued ones too."""
            return any(overflows(a.total() + self.mine(a, legs, status)) for a in unique(a for a, _, _ in legs))

        def record(self, got: dict, legs, status: str, shown: list[bool], applied_now: set[str]) -> MTxn:
            """An accepted posting: its effects are committed; the applied accounts fold everything queued."""
            assert got["status"] == status
            m = MTxn(got["id"], legs[0][0].ledger, status, parse(got["effective_at"]))
            for (a, direction, amount), g in zip(legs, got["ledger_entries"]):
                e = MEntry(g["id"], m, a, direction, amount)
                e.index = a.add("entry", e, delta(direction, amount, "entry", status == "posted"))
                m.entries.append(e)
                assert (g["ledger_account_id"], g["direction"], g["amount"]) == (a.id, direction, amount)
            for a in unique(a for a, _, _ in legs):
                if a.id in applied_now:
                    a.apply_all()
            assert len(got["ledger_entries"]) == len(legs)
            for e, g, show in zip(m.entries, got["ledger_entries"], shown):
                a = e.account
                assert g["ledger_account_lock_version"] == e.lock_version, \
                    f"lock version of an entry on {a} ({'applied now' if a.id in applied_now else 'queued'})"
                expected = view(a.at(e.lock_version), a) if show else None
                assert g["resulting_ledger_account_balances"] == expected, f"resulting balances on {a}"
            self.txns.append(m)
            for a in unique(a for a, _, _ in legs):
                self.check(a)
            return m

        @precondition(lambda self: bool(self.txns))
        @rule(data=st.data())
        def settle(self, data):
            """PATCH pending -> posted | archived: queued, except on sync-only accounts; final states are final. An
            archived pending reversal frees its original: it can be reversed again."""
            txn, to = draw_transition(data.draw, self.txns, pending_weight=4)
            r = self.call("PATCH", f"/api/ledger_transactions/{txn.id}", {"status": to})
            event(f"settle: {txn.status} -> {to}")
            accounts = unique(e.account for e in txn.entries)
            if txn.status != "pending":
                refused(r, "invalid_status_transition")
            else:
                assert r.status_code == 200, r.text
                txn.status = to
                kind = "post" if to == "posted" else "archive"
                for e in txn.entries:  # one effect per entry, in entry order
                    e.account.add(kind, e, delta(e.direction, e.amount, kind))
                for a in accounts:
                    if a.sync_only:
                        a.apply_all()
                got = r.json()
                assert got["status"] == to
                self.check_entries_of(got["ledger_entries"], txn)
                if (original := freed_by_archiving(txn)) is not None:
                    got = self.call("GET", f"/api/ledger_transactions/{original.id}").json()
                    assert got["reversed_by_ledger_transaction_id"] is None
            for a in accounts:
                self.check(a)

        @precondition(lambda self: bool(self.txns))
        @rule(data=st.data())
        def replace(self, data):
            """PATCH `ledger_entries` and/or `effective_at` of a pending transaction: an archive effect per old entry
            (entry order), then the new entries' effects, committed in that order. Applied now: the accounts of the
            new entries with a condition and every sync-only account of the old or new entries (folding what they
            have queued); the rest queued. A lock sees every committed effect with the old amounts released; a
            lock_version is the account's committed effects before the change. A final transaction is refused."""
            for _ in range(data.draw(st.integers(1, 3), label="replacements")):
                self.replace_one(data.draw)

        def replace_one(self, draw):
            txn = draw_pending(draw, self.txns, pending_weight=3)
            # "raise": the same legs, each amount times k (a card's authorization raised in place), new conditions.
            what = draw(st.sampled_from(["entries", "raise", "raise", "effective_at", "both"]), label="replace")
            other = self.times().filter(lambda t: t is not None)
            times = st.sampled_from([txn.effective_at]) | other | other
            effective_at = None if what in ("entries", "raise") else draw(times, label="effective_at")
            unchanged = what == "effective_at" and effective_at == txn.effective_at
            old = [(e.account, e.direction, e.amount) for e in txn.entries]
            if what == "raise":
                legs = raised(old, draw(st.integers(1, 3), label="k"))
            else:
                legs = old if what == "effective_at" else draw_legs(draw, self.accounts, txn.ledger)[1]
            released = {a.id: self.mine(a, [(b, d, -x) for b, d, x in old], "pending") for a in unique(
                a for a, _, _ in old)}
            applied_now = {a.id for a, _, _ in [*legs, *old] if a.sync_only}
            body, expected_code = {}, None
            if what != "effective_at":
                body["ledger_entries"] = []
                mode = draw(st.sampled_from([None, "balance", "lock_version", "show", "mixed"]), label="locks")
                for a, direction, amount in legs:
                    e = {"ledger_account_id": a.id, "direction": direction, "amount": amount}
                    mine = released.get(a.id, Sums()) + self.mine(a, legs, "pending")
                    failing, conditioned = self.condition(draw, e, a, mode, amounts(a.total() + mine, a.normal),
                                                          amounts(a.at(a.applied) + mine, a.normal))
                    if conditioned:
                        applied_now.add(a.id)
                    expected_code = expected_code or failing
                    body["ledger_entries"].append(e)
            if effective_at is not None:
                body["effective_at"] = rfc3339(effective_at)
            if not unchanged and txn.status != "pending":
                expected_code = "invalid_status_transition"  # checked before the new entries
            elif not unchanged and any(overflows(a.total() + released.get(a.id, Sums()) + self.mine(a, legs, "pending"))
                                       for a in unique(a for a, _, _ in legs)):
                expected_code = "balance_overflow"  # checked before any balance lock
            touched = unique(a for a, _, _ in [*legs, *old])
            before = {a.id: (len(a.effects), a.applied) for a in touched}
            r = self.call("PATCH", f"/api/ledger_transactions/{txn.id}", body)
            event(f"replace {what}: {'unchanged' if unchanged else expected_code or 'replaced'}")
            if expected_code is not None or unchanged:
                if expected_code is not None:
                    refused(r, expected_code)
                else:
                    assert r.status_code == 200, r.text
                for a in touched:  # nothing written, nothing applied
                    assert (len(a.effects), a.applied) == before[a.id]
                    self.check(a)
                return
            assert r.status_code == 200, r.text
            for e in txn.entries:
                e.account.add("archive", e, delta(e.direction, e.amount, "archive"))
                e.discarded = True
            txn.entries = []
            got = r.json()
            for (a, direction, amount), g in zip(legs, got["ledger_entries"], strict=True):
                e = MEntry(g["id"], txn, a, direction, amount)
                e.index = a.add("entry", e, delta(direction, amount, "entry"))
                txn.entries.append(e)
                assert (g["ledger_account_id"], g["direction"], g["amount"]) == (a.id, direction, amount)
            for a in touched:
                if a.id in applied_now:
                    a.apply_all()
            if effective_at is not None:
                txn.effective_at = effective_at
            assert (got["status"], parse(got["effective_at"])) == ("pending", txn.effective_at)
            self.check_entries_of(got["ledger_entries"], txn)
            for a in touched:
                self.check(a)

        @precondition(lambda self: bool(self.txns))
        @rule(data=st.data())
        def reverse(self, data):
            open_ = [t for t in self.txns if t.status == "posted" and t.reversed_by is None]
            txn = data.draw(st.sampled_from(open_) if open_ and data.draw(st.integers(0, 3)) else
                            st.sampled_from(self.txns), label="txn to reverse")
            status = data.draw(st.sampled_from(["posted", "posted", "pending"]), label="reversal status")
            r = self.call("POST", f"/api/ledger_transactions/{txn.id}/reversal", {"status": status})
            event(f"reverse: {r.status_code}")
            legs = [(e.account, flip(e.direction), e.amount) for e in txn.entries]
            if reversal_refused(r, txn, self.overflow(legs, status)):
                return
            got = r.json()
            # A reversal carries no conditions: queued, except on sync-only accounts.
            m = self.record(got, legs, status, [False] * len(legs), {a.id for a, _, _ in legs if a.sync_only})
            txn.reversed_by, m.reverses = m.id, txn

        @rule(data=st.data())
        def worker_step(self, data):
            """A worker applies a random subset of accounts: every queued effect of each, in sequence order."""
            queued = [a for a in self.accounts if a.queued]
            pool = queued if queued and data.draw(st.integers(0, 2)) else self.accounts
            subset = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique_by=id),
                               label="accounts applied")
            expected = sum(a.queued for a in subset)
            applied = cell.apply([a.id for a in subset])
            event(f"worker step: {'nothing' if not expected else 'some'} to apply")
            assert applied == expected, f"ledger_apply_report applied {applied}, queued {expected}"
            for a in subset:
                a.apply_all()
                self.check(a)  # property 3: exact once applied

        @rule(data=st.data())
        def toggle_sync_only(self, data):
            """Flip an account's sync_only flag: from then on its postings and transitions apply it (and fold
            whatever it has queued)."""
            a = data.draw(st.sampled_from(self.accounts), label="account")
            r = self.call("PATCH", f"/api/ledger_accounts/{a.id}", {"sync_only": not a.sync_only})
            assert r.status_code == 200, r.text
            a.sync_only = not a.sync_only
            assert r.json()["sync_only"] == a.sync_only
            self.check(a)  # the flag alone applies nothing

        @rule(data=st.data())
        def read(self, data):
            """Every account's reads, and a few of its applied lock versions."""
            for a in self.accounts:
                self.check(a)
            a = data.draw(st.sampled_from(self.accounts), label="account")
            for v in data.draw(st.lists(st.integers(0, a.applied), max_size=3), label="versions"):
                got = self.read_account(a, {"balances[as_of_lock_version]": str(v)})
                assert got["lock_version"] == v
                assert got["balances"] == account_view(a.at(v), a), f"balances of {a} as of lock_version {v}"

        def teardown(self):
            try:
                if self.accounts:
                    for a in self.accounts:
                        self.audit_versions(a)  # with effects still queued
                    expected = sum(a.queued for a in self.accounts)
                    assert cell.apply([a.id for a in self.accounts]) == expected
                    for a in self.accounts:  # property 5: everything applied, every read exact
                        a.apply_all()
                        self.check(a)
                        self.audit_versions(a)
            finally:
                problems = cell.verify(self.tenant)
            assert problems == [], f"invariants violated for {self.tenant}: {problems}"

        # -- audits --------------------------------------------------------------------------------------------

        def audit_versions(self, a: MAccount):
            """Property 4: applied versions are 1..n, version v is the first v committed effects (so each one
            adds exactly the model's v-th effect), and each applied entry's resulting balances match."""
            for v in range(1, a.applied + 1):
                got = self.read_account(a, {"balances[as_of_lock_version]": str(v)})
                assert got["lock_version"] == v
                kind, entry, _ = a.effects[v - 1]
                assert got["balances"] == account_view(a.at(v), a), \
                    f"{a} as of lock_version {v} (a {kind} effect of entry {entry.id[:8]})"
            r = self.call("GET", f"/api/ledger_accounts/{a.id}",
                          params={"balances[as_of_lock_version]": str(a.applied + 1)})
            assert r.status_code == 400 and r.json()["code"] == "lock_version_not_found", r.text

            listed = self.list_entries(a)
            entries = [e for kind, e, _ in a.effects if kind == "entry" and not e.discarded]
            assert sorted(x["id"] for x in listed) == sorted(e.id for e in entries), f"entries of {a}"
            by_id = {e.id: e for e in entries}
            applied = sorted((x for x in listed if x["ledger_account_lock_version"] is not None),
                             key=lambda x: x["ledger_account_lock_version"])
            assert [x["ledger_account_lock_version"] for x in applied] == \
                sorted(e.lock_version for e in entries if e.lock_version is not None), f"entry versions of {a}"
            for x in listed:
                e = by_id[x["id"]]
                assert x["ledger_account_lock_version"] == e.lock_version, f"entry {e.id[:8]} on {a}"
                assert (x["direction"], x["amount"], x["status"]) == (e.direction, e.amount, e.txn.status)
                expected = None if e.lock_version is None else view(a.at(e.lock_version), a)
                assert x["resulting_ledger_account_balances"] == expected, \
                    f"resulting balances of entry {e.id[:8]} on {a} at lock_version {e.lock_version}"

    return HybridMachine


@pytest.mark.timeout(TIMEOUT_S)
def test_hybrid_mode_agrees_with_the_model(hybrid_cell):
    run_state_machine_as_test(make_machine(hybrid_cell), settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
