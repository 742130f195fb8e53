"""The cell's HTTP API against a model: random postings, transitions, reversals and balance locks, audited.

A hypothesis RuleBasedStateMachine drives the real app (litestar's sync TestClient, real PostgreSQL) and keeps
its own books: every entry with its transaction's status, and per account the sums after every applied
balance effect. Balances are recomputed here from first principles (Modern Treasury's definitions, written
out below), never with cell.ledger.balances, so a bug there shows up as a disagreement.

Why sync: hypothesis' stateful machines are synchronous, and litestar's TestClient runs the app on its own
portal thread, so no pytest-asyncio loop is involved; admin work (tenants, verify) runs on a private loop
(tests/property/conftest.py). Each example gets a fresh tenant, so examples never see each other's books.

A failing run is shrunk for up to hypothesis' five-minute bound; `--hypothesis-profile=no-shrink` reports the
unshrunk sequence at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest
from harness import ApiMachine
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
    sums,
    view,
)

UTC = timezone.utc
# Time zones instants are written in (the API must compare instants, not local wall-clock times).
ZONES = [timedelta(0), timedelta(hours=5, minutes=30), timedelta(hours=-8)]

# PROPERTY_EXAMPLES / PROPERTY_STEPS (and PROPERTY_TIMEOUT_S): a longer soak than make test can afford. make test
# runs these rules in 22 examples: 12 here and 10 more in test_statement_model.py's machine, which is this one and a
# rule more (and 10 more there in hybrid mode).
EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "12"))
STEPS = int(os.environ.get("PROPERTY_STEPS", "25"))
TIMEOUT_S = int(os.environ.get("PROPERTY_TIMEOUT_S", "900"))


# -- the model ------------------------------------------------------------------------------------------------


@dataclass
class MAccount:
    id: str
    ledger: int
    currency: str
    exponent: int
    normal: str
    entries: list = field(default_factory=list, repr=False)
    # Sums right after every applied effect: history[v - 1] is the account at lock_version v.
    history: list = field(default_factory=list, repr=False)
    # Each entry's status as of the last effect applied to this account.
    seen: dict = field(default_factory=dict, repr=False)
    # Every entry ever written to it, discarded ones too, in the order written.
    written: list = field(default_factory=list, repr=False)
    # How many of its effects are applied (hybrid mode: the rest are queued); lock_version in sync mode.
    applied: int = 0

    def __repr__(self) -> str:  # short, for hypothesis' report of a failing sequence
        return f"<{self.currency} {self.normal}-normal account {self.id[:8]} in ledger {self.ledger}>"

    def _repr_pretty_(self, p, cycle) -> None:  # hypothesis' pretty printer would list every field
        p.text(repr(self))

    @property
    def lock_version(self) -> int:
        return len(self.history)

    def effect(self, entry, status: str) -> int:
        self.seen[entry.id] = (entry, status)
        self.history.append(sums(self.seen.values()))
        return self.lock_version

    def current(self) -> Sums:
        return sums((e, e.txn.status) for e in self.entries)

    def effective(self, keep) -> Sums:
        return sums((e, e.txn.status) for e in self.entries if keep(e.effective_at))

    def at_version(self, v: int) -> Sums:
        return Sums() if v == 0 else self.history[v - 1]


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
        return f"<{self.status} txn {self.id[:8]} at {self.effective_at.isoformat()}>"

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(repr(self))


@dataclass
class MEntry:
    id: str
    txn: MTxn
    account: MAccount
    direction: str
    amount: int
    effective_at: datetime
    lock_version: int = 0
    discarded_version: int | None = None  # the account's lock version of its discard's archive


def parse(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def spread(items: list, n: int) -> list:
    """At most n of the items, first and last included, evenly spaced: bounded audits of long histories."""
    if len(items) <= n:
        return items
    step = (len(items) - 1) / (n - 1)
    return [items[round(i * step)] for i in range(n)]


# -- the machine ----------------------------------------------------------------------------------------------


# An entry's keys that make the posting apply its account now (hybrid mode): a balance lock, a lock_version, resulting
# balances shown (only ever sent as true here).
APPLIED_NOW = {"pending_balance_amount", "posted_balance_amount", "available_balance_amount", "lock_version",
               "show_resulting_ledger_account_balances"}


def make_machine(cell, hybrid: bool = False):
    """`hybrid`: the cell posts in hybrid mode without a queue (harness.open_cell): an entry without a balance lock, a
    lock_version or resulting balances is queued, and nothing queued is applied but by a worker step (`work`, and
    before each audit). The plain read is then the applied effects, `balances[include_unapplied]` every one."""

    class LedgerMachine(ApiMachine):
        def __init__(self) -> None:
            super().__init__(cell)
            self.ledger_ids: list[str] = []
            self.accounts: list[MAccount] = []
            self.txns: list[MTxn] = []
            # Midnight UTC today: offsets of 0 and -1 µs straddle a day boundary of the effective-time cache.
            self.base = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

        # -- reads checked against the model ---------------------------------------------------------------------

        def check_current(self, a: MAccount) -> dict:
            body = self.read_account(a)
            expected = a.current()
            assert (a.history[-1] if a.history else Sums()) == expected, "the model disagrees with itself"
            if hybrid:
                full = self.read_account(a, {"balances[include_unapplied]": "true"})
                assert full["balances"] == account_view(expected, a), f"include_unapplied balances of {a}"
                expected = a.at_version(a.applied)
            assert body["balances"] == account_view(expected, a), \
                f"current balances of {a.normal}-normal account ({a.applied} of {a.lock_version} effects applied)"
            assert body["lock_version"] == a.applied
            return body

        def applied_now(self, entries_body: list[dict], touched) -> set[str]:
            """The accounts a write applies in its own transaction (folding what was queued for them first)."""
            if not hybrid:
                return {a.id for a in touched}
            return {e["ledger_account_id"] for e in entries_body if APPLIED_NOW & e.keys()}

        def fold(self, accounts) -> None:
            for a in accounts:
                a.applied = a.lock_version

        def work_on(self, accounts) -> None:
            """A worker step (hybrid mode): every queued effect of these accounts applied, as a worker applies it."""
            if hybrid and accounts:
                cell.apply([a.id for a in accounts])
                self.fold(accounts)

        # -- strategies over the current state -----------------------------------------------------------------

        def times(self):
            offsets = st.one_of(
                st.builds(lambda d, h, m: timedelta(days=d, hours=h, minutes=m),
                          st.integers(-3, 3), st.integers(-23, 23), st.sampled_from([0, 0, 17])),
                st.sampled_from([timedelta(0), timedelta(microseconds=-1), timedelta(days=1),
                                 timedelta(days=-1, microseconds=1)]),
            )
            choices = [st.none(), offsets.map(lambda o: self.base + o)]
            known = sorted({t.effective_at for t in self.txns})
            if known:  # ties: several transactions at the same instant
                choices.append(st.sampled_from(known))
            return st.one_of(*choices)

        # -- rules ---------------------------------------------------------------------------------------------

        @initialize(normals=st.lists(st.sampled_from(["credit", "debit"]), min_size=len(LAYOUT),
                                     max_size=len(LAYOUT)))
        def open_books(self, normals):
            for i in range(2):
                r = self.call("POST", "/api/ledgers", {"name": f"ledger-{i}"})
                assert r.status_code == 201, r.text
                self.ledger_ids.append(r.json()["id"])
            for (ledger, currency), normal in zip(LAYOUT, normals):
                r = self.call("POST", "/api/ledger_accounts", {
                    "name": f"{currency}-{normal}", "ledger_id": self.ledger_ids[ledger],
                    "normal_balance": normal, "currency": currency})
                assert r.status_code == 201, r.text
                body = r.json()
                a = MAccount(body["id"], ledger, currency, body["currency_exponent"], normal)
                assert body["balances"] == account_view(Sums(), a) and body["lock_version"] == 0
                self.accounts.append(a)

        @rule(data=st.data())
        def post(self, data):
            for _ in range(data.draw(st.integers(1, 3), label="postings")):
                self.post_one(data.draw)

        def post_one(self, draw):
            ledger, legs = draw_legs(draw, self.accounts)
            status = draw(st.sampled_from(["pending", "posted"]), label="status")
            effective_at = draw(self.times(), label="effective_at")
            entries_body, expected_code = self.entry_bodies(draw, legs, status)
            if self.overflow(legs, status):
                expected_code = "balance_overflow"  # checked before any balance lock
            body = {"ledger_id": self.ledger_ids[ledger], "status": status, "ledger_entries": entries_body}
            if effective_at is not None:
                body["effective_at"] = rfc3339(effective_at, draw(st.sampled_from(ZONES)))
            r = self.call("POST", "/api/ledger_transactions", body)
            event(f"post: {expected_code or status}")
            if expected_code is not None:
                assert r.status_code == 422, r.text
                assert r.json()["code"] == expected_code, r.text
                for a in {id(a): a for a, _, _ in legs}.values():
                    self.check_current(a)  # a refused posting changes nothing
                return
            assert r.status_code == 201, r.text
            self.record(r.json(), legs, status, effective_at,
                        [bool(e.get("show_resulting_ledger_account_balances")) for e in entries_body],
                        self.applied_now(entries_body, [a for a, _, _ in legs]))

        def entry_bodies(self, draw, legs, status: str, discarded=(), show: bool = True) -> tuple[list, str | None]:
            """The request's entries for these legs, with drawn balance locks and lock_versions, and the code that
            must refuse them (None: accepted). The locks are drawn around what each touched account would hold once
            the legs are written (and `discarded`'s entries archived); a lock_version is the account's now."""
            locks = draw(st.sampled_from([None, None, "balance", "lock_version", "both"]), label="locks")
            projected = {a.id: amounts(self.after(a, legs, status, discarded), a.normal)
                         for a in {id(a): a for a, _, _ in legs}.values()}
            entries_body, expected_code = [], None
            for a, direction, amount in legs:
                e = {"ledger_account_id": a.id, "direction": direction, "amount": amount}
                lock = draw(st.sampled_from([None, None, locks])) if locks else None
                failing = None
                if lock in ("balance", "both"):
                    name, e[name], holds = draw_balance_lock(draw, projected[a.id])
                    if not holds:
                        failing = "balance_lock_failed"
                if lock in ("lock_version", "both"):
                    version = max(0, a.lock_version + draw(st.sampled_from([0, 0, 0, 0, -1, 1])))
                    e["lock_version"] = version
                    if version != a.lock_version:
                        failing = "lock_version_mismatch"  # checked before the entry's balance locks
                if show and draw(st.booleans()):
                    e["show_resulting_ledger_account_balances"] = True
                expected_code = expected_code or failing
                entries_body.append(e)
            return entries_body, expected_code

        def after(self, a, legs, status: str, discarded=()) -> Sums:
            """Account `a`'s sums once this posting's legs on it are written (and the `discarded` entries archived)."""
            gone = {e.id for e in discarded}
            new = [(MEntry("new", None, a, d, x, None), status) for b, d, x in legs if b is a]
            return sums([*(p for i, p in a.seen.items() if i not in gone), *new])

        def overflow(self, legs, status: str, discarded=()) -> bool:
            return any(overflows(self.after(a, legs, status, discarded))
                       for a in {id(a): a for a, _, _ in legs}.values())

        def record(self, txn: dict, legs, status: str, effective_at: datetime | None, shown: list[bool],
                   applied: set[str]) -> MTxn:
            """Apply an accepted posting to the model and check its response (`applied`: the accounts it applied
            now; its entries on the others are queued, their lock versions null until a worker applies them)."""
            assert txn["status"] == status
            at = parse(txn["effective_at"])
            if effective_at is not None:
                assert at == effective_at
            else:  # defaulted to the time of posting
                assert abs(at - datetime.now(UTC)) < timedelta(minutes=1)
            ledger = legs[0][0].ledger
            assert txn["ledger_id"] == self.ledger_ids[ledger]
            m = MTxn(txn["id"], ledger, status, at)
            assert len(txn["ledger_entries"]) == len(legs)
            for (a, direction, amount), got, show in zip(legs, txn["ledger_entries"], shown):
                e = MEntry(got["id"], m, a, direction, amount, at)
                e.lock_version = a.effect(e, status)
                a.entries.append(e)
                a.written.append(e)
                m.entries.append(e)
                assert (got["ledger_account_id"], got["direction"], got["amount"]) == (a.id, direction, amount)
                assert got["ledger_account_lock_version"] == (e.lock_version if a.id in applied else None), \
                    f"lock_version of the entry's effect ({'applied now' if a.id in applied else 'queued'})"
                expected = view(a.at_version(e.lock_version), a) if show else None
                assert got["resulting_ledger_account_balances"] == expected, "resulting balances in the response"
            self.txns.append(m)
            touched = {id(a): a for a, _, _ in legs}.values()
            self.fold(a for a in touched if a.id in applied)
            for a in touched:
                self.check_current(a)
            return m

        @precondition(lambda self: bool(self.txns))
        @rule(data=st.data())
        def settle(self, data):
            """pending -> posted | archived; posted and archived are final (422, nothing changes). An archived
            pending reversal frees its original: it can be reversed again."""
            txn, to = draw_transition(data.draw, self.txns, pending_weight=3)
            r = self.call("PATCH", f"/api/ledger_transactions/{txn.id}", {"status": to})
            event(f"settle: {txn.status} -> {to}")
            if txn.status != "pending":
                refused(r, "invalid_status_transition")
            else:
                assert r.status_code == 200, r.text
                assert r.json()["status"] == to
                txn.status = to
                for e in txn.entries:  # one effect per entry, in entry order
                    e.account.effect(e, to)
                if (original := freed_by_archiving(txn)) is not None:
                    got = self.call("GET", f"/api/ledger_transactions/{original.id}").json()
                    assert got["reversed_by_ledger_transaction_id"] is None
                touched = {id(e.account): e.account for e in txn.entries}.values()
                self.fold(a for a in touched if a.id in self.applied_now([], touched))  # queued in hybrid mode
            for a in {id(e.account): e.account for e in txn.entries}.values():
                self.check_current(a)

        @precondition(lambda self: bool(self.txns))
        @rule(data=st.data())
        def replace(self, data):
            """PATCH `ledger_entries` and/or `effective_at`: a pending transaction's entries are discarded (an
            archive effect each, in entry order, at their own time) and the new ones written after them, at the new
            time (the same entries again when only the time changes); balance locks see the old amounts released,
            a lock_version is the account's before the change. A final transaction is refused (422, nothing
            changes), unless the PATCH changes nothing."""
            for _ in range(data.draw(st.integers(1, 3), label="replacements")):
                self.replace_one(data.draw)

        def replace_one(self, draw):
            txn = draw_pending(draw, self.txns, pending_weight=3)
            # "raise": the same legs, each amount times k (a card's authorization raised in place), new conditions.
            what = draw(st.sampled_from(["entries", "raise", "effective_at", "both"]), label="replace")
            effective_at = None if what in ("entries", "raise") else draw(
                self.times().filter(lambda t: t is not None), label="effective_at")
            at = txn.effective_at if effective_at is None else effective_at
            if what == "effective_at":
                legs = [(e.account, e.direction, e.amount) for e in txn.entries]
                body, expected_code, requested = {}, None, []
            else:
                legs = draw_legs(draw, self.accounts, txn.ledger)[1] if what != "raise" else raised(
                    [(e.account, e.direction, e.amount) for e in txn.entries], draw(st.integers(1, 3), label="k"))
                entries_body, expected_code = self.entry_bodies(draw, legs, "pending", txn.entries, show=False)
                body = {"ledger_entries": entries_body}
                requested = entries_body
            applied = self.applied_now(requested, [*(a for a, _, _ in legs), *(e.account for e in txn.entries)])
            if effective_at is not None:
                body["effective_at"] = rfc3339(effective_at, draw(st.sampled_from(ZONES)))
            unchanged = what == "effective_at" and at == txn.effective_at
            if not unchanged and txn.status != "pending":
                expected_code = "invalid_status_transition"  # checked before the new entries
            elif not unchanged and self.overflow(legs, "pending", txn.entries):
                expected_code = "balance_overflow"  # checked before any balance lock
            touched = {id(a): a for a, _, _ in legs} | {id(e.account): e.account for e in txn.entries}
            r = self.call("PATCH", f"/api/ledger_transactions/{txn.id}", body)
            event(f"replace {what}: {'unchanged' if unchanged else expected_code or 'replaced'}")
            if expected_code is not None:
                refused(r, expected_code)
            else:
                assert r.status_code == 200, r.text
                got = r.json()
                assert (got["id"], got["status"], parse(got["effective_at"])) == (txn.id, txn.status, at)
                if not unchanged:
                    for e in txn.entries:
                        e.discarded_version = e.account.effect(e, "archived")
                        e.account.entries.remove(e)
                    txn.entries, txn.effective_at = [], at
                    for (a, direction, amount), new in zip(legs, got["ledger_entries"], strict=True):
                        e = MEntry(new["id"], txn, a, direction, amount, at)
                        e.lock_version = a.effect(e, "pending")
                        a.entries.append(e)
                        a.written.append(e)
                        txn.entries.append(e)
                    self.fold(a for a in touched.values() if a.id in applied)
                assert [(x["id"], x["ledger_account_id"], x["direction"], x["amount"], x["ledger_account_lock_version"])
                        for x in got["ledger_entries"]] == [
                    (e.id, e.account.id, e.direction, e.amount, e.lock_version if e.lock_version <= e.account.applied
                     else None) for e in txn.entries]
            for a in touched.values():
                self.check_current(a)

        @precondition(lambda self: bool(self.txns))
        @rule(data=st.data())
        def reverse(self, data):
            txn = data.draw(st.sampled_from(self.txns), label="txn to reverse")
            status = data.draw(st.sampled_from(["posted", "posted", "pending"]), label="reversal status")
            effective_at = data.draw(self.times(), label="reversal effective_at")
            body = {"status": status}
            if effective_at is not None:
                body["effective_at"] = rfc3339(effective_at, data.draw(st.sampled_from(ZONES)))
            r = self.call("POST", f"/api/ledger_transactions/{txn.id}/reversal", body)
            event(f"reverse: {r.status_code}")
            legs = [(e.account, flip(e.direction), e.amount) for e in txn.entries]
            if reversal_refused(r, txn, self.overflow(legs, status)):
                return
            got = r.json()
            # Effective when the original was, unless told (Modern Treasury's default).
            m = self.record(got, legs, status, effective_at or txn.effective_at, [False] * len(legs),
                            self.applied_now([], [a for a, _, _ in legs]))  # a reversal carries no conditions
            txn.reversed_by, m.reverses = m.id, txn
            r = self.call("GET", f"/api/ledger_transactions/{txn.id}")
            assert r.json()["reversed_by_ledger_transaction_id"] == m.id

        @precondition(lambda self: bool(self.txns))
        @rule(data=st.data())
        def audit_sample(self, data):
            """A spot check mid-run: drawn instants (in drawn time zones), windows and lock versions."""
            known = sorted({t.effective_at for t in self.txns})
            instant = st.one_of(st.sampled_from(known),
                                st.sampled_from(known).map(lambda t: t - timedelta(microseconds=1)),
                                self.times().filter(lambda t: t is not None))
            instants = data.draw(st.lists(instant, min_size=1, max_size=3), label="instants")
            windows = data.draw(st.lists(st.tuples(st.none() | instant, st.none() | instant), max_size=2),
                                label="windows")
            windows = [(lo, hi) if lo is None or hi is None or lo <= hi else (hi, lo) for lo, hi in windows]
            zone = data.draw(st.sampled_from(ZONES))
            accounts = data.draw(st.lists(st.sampled_from(self.accounts), min_size=1, max_size=3, unique_by=id))
            self.work_on(accounts)  # effective-time and version reads are of applied effects: exact once applied
            for a in accounts:
                versions = data.draw(st.lists(st.integers(0, a.lock_version), max_size=2), label="versions")
                self.audit_account(a, instants, windows, versions, zone)

        @precondition(lambda self: hybrid and bool(self.accounts))
        @rule(data=st.data())
        def work(self, data):
            """A worker step at a drawn point: the queued effects of some accounts (now and then all) applied."""
            chosen = data.draw(st.lists(st.sampled_from(self.accounts), min_size=1, unique_by=id)
                               | st.just(self.accounts), label="accounts applied")
            self.work_on(chosen)
            for a in chosen:
                self.check_current(a)

        def teardown(self):
            try:
                if self.accounts:
                    self.work_on(self.accounts)
                    self.audit_everything()
            finally:
                problems = cell.verify(self.tenant)
            assert problems == [], f"invariants violated for {self.tenant}: {problems}"

        # -- audits --------------------------------------------------------------------------------------------

        def audit_account(self, a: MAccount, instants, windows, versions, zone=timedelta(0)):
            for t in instants:
                got = self.read_account(a, {"balances[effective_at]": rfc3339(t, zone)})["balances"]
                assert got == account_view(a.effective(lambda at: at <= t), a), f"balances at effective_at {t}"
            for lo, hi in windows:
                params = {}
                if lo is not None:
                    params["balances[effective_at_lower_bound]"] = rfc3339(lo, zone)
                if hi is not None:
                    params["balances[effective_at_upper_bound]"] = rfc3339(hi, zone)
                got = self.read_account(a, params)["balances"]
                expected = a.effective(lambda at: (lo is None or lo <= at) and (hi is None or at < hi))
                assert got == account_view(expected, a, lo, hi), f"balances in [{lo}, {hi})"
            for v in versions:
                got = self.read_account(a, {"balances[as_of_lock_version]": str(v)})
                assert got["lock_version"] == v
                assert got["balances"] == account_view(a.at_version(v), a), f"balances as of lock_version {v}"

        def audit_entries(self, a: MAccount):
            listed = self.list_entries(a)
            by_id = {e.id: e for e in a.entries}
            assert [x["id"] for x in listed] == [e.id for e in a.entries], "entries of the account, in order"
            for got in listed:
                e = by_id[got["id"]]
                assert (got["direction"], got["amount"], got["status"], got["ledger_transaction_id"]) == (
                    e.direction, e.amount, e.txn.status, e.txn.id)
                assert parse(got["effective_at"]) == e.effective_at
                assert got["ledger_account_lock_version"] == e.lock_version
                assert got["resulting_ledger_account_balances"] == view(a.at_version(e.lock_version), a), \
                    f"resulting balances of entry at lock_version {e.lock_version}"

        def audit_everything(self):
            """Every account: current balances, entries with resulting balances, a few lock versions, and
            effective-time reads at and around every instant in use; per ledger and currency, debits == credits."""
            known = sorted({t.effective_at for t in self.txns})
            instants = spread(sorted({*known, *(t - timedelta(microseconds=1) for t in known),
                                      self.base, self.base - timedelta(microseconds=1)}), 6)
            windows = [*zip(instants, instants[1:])][:2] + [(instants[len(instants) // 2], None),
                                                            (None, instants[len(instants) // 2])]
            totals: dict[tuple[int, str], list[int]] = {}
            for a in self.accounts:
                body = self.check_current(a)
                self.audit_entries(a)
                if not a.entries:
                    continue  # nothing else to see (and it keeps shrinking runs cheap)
                # Every entry's version is checked through the entries list; reads as of a version take a few.
                self.audit_account(a, instants, windows, spread(list(range(a.lock_version + 1)), 4))
                for v in spread(list(range(a.lock_version + 1)), 4):  # the entries it held then, discarded later too
                    listed = [x["id"] for x in self.list_entries(a, as_of_lock_version=str(v))]
                    assert listed == [e.id for e in a.written if e.lock_version <= v and (
                        e.discarded_version is None or e.discarded_version > v)], f"entries as of lock_version {v}"
                r = self.call("GET", f"/api/ledger_accounts/{a.id}",
                              params={"balances[as_of_lock_version]": str(a.lock_version + 1)})
                assert r.status_code == 400 and r.json()["code"] == "lock_version_not_found", r.text
                b = body["balances"]
                t = totals.setdefault((a.ledger, a.currency), [0, 0, 0, 0])
                t[0] += b["pending_balance"]["debits"]
                t[1] += b["pending_balance"]["credits"]
                t[2] += b["posted_balance"]["debits"]
                t[3] += b["posted_balance"]["credits"]
            for key, (pd, pc, od, oc) in totals.items():
                assert pd == pc and od == oc, f"ledger {key[0]} {key[1]}: debits != credits ({pd}/{pc}, {od}/{oc})"

    return LedgerMachine


# A failure is shrunk for up to ~5 minutes (hypothesis' own bound): let that finish and report.
@pytest.mark.timeout(TIMEOUT_S)
def test_the_api_agrees_with_the_model(ledger_cell):
    run_state_machine_as_test(make_machine(ledger_cell), settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
