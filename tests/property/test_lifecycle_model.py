"""A ledger transaction's lifecycle against a model: create, partial post, post/archive, replace, reverse, versions.

A hypothesis RuleBasedStateMachine drives a real cell through its HTTP API (sync mode; and hybrid mode, where a
`work` rule is the worker step that folds every queued effect) on a few accounts of one ledger (USD and EUR, debit
and credit normal), and keeps its own books: every transaction with its status, live entries, links (reverses /
reversed_by / partially_posts), metadata and versions, and per account the entries that count and the number of
balance effects written (its lock_version).

What the model says, from the README ("Transactions") and Modern Treasury's SDK types:
- POST /api/ledger_transactions writes version 1 (pending, posted, or archived at creation: no balance effect, its
  locks not checked); a violated balance lock or stale lock_version is 422 balance_lock_failed /
  lock_version_mismatch, or with archive_on_balance_lock_failure a 201 archived transaction, archived_reason
  "balance_lock_failure", no balance effect;
- POST .../partial_post of a pending transaction: one posted entry per pending entry (in any order), same account
  and direction, an amount at most the pending one's (else 422 partial_post_entries_mismatch), balanced
  (entries_must_balance); a new posted transaction linked by partially_posts_ledger_transaction_id, effective when
  the pending one was unless told, its description and metadata unless given; the pending one archived (its next
  version), its entries' effects undone before the posted ones' are written and their balance locks checked; a
  lock_version is the account's before the call; a pending reversal partially posted did reverse its original;
  a second partial post, or one of a posted or archived transaction, is 422 invalid_status_transition;
- PATCH status pending -> posted | archived (one effect per entry, a version); a final one is 422
  invalid_status_transition; PATCH ledger_entries of a pending one: a version with the new entries (the old ones
  archived, one effect each), and with a status too, a second version; PATCH metadata / description: a version (a
  PATCH that changes nothing writes none);
- POST .../reversal of a posted, unreversed transaction (else invalid_status_transition / already_reversed): a new
  transaction (posted, pending, or archived: a record that reverses nothing) with every direction flipped, linked
  both ways; the original gets no version (reversed_by is shown on its current version only); an archived pending
  reversal frees its original;
- an Idempotency-Key replays the first answer for the same request, and is 422 idempotency_key_reused for another.

Checked after every step: a 201's resulting balances (where asked for, on an account with one entry in the
posting: its balances once the posting is written); every transaction as listed (status, posted_at, entries with
their status, amounts and lock versions, links, version, metadata) and the reversal and partial post list filters;
every version as GET /api/ledger_transaction_versions lists it (per transaction 1..n in order, each one's status,
entries and links) and the touched transaction's own /versions; every account's balances (pending / posted /
available) and lock_version (in hybrid mode between worker steps: balances[include_unapplied], entries' lock
versions unchecked). At the end, each account's entries with their lock versions and DESIGN.md section 8's
invariants (verify()). Balances are recomputed here from first principles (tests/property/property_model.py),
never with cell code.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field

import pytest
from harness import ApiMachine, every_page
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, precondition, rule, run_state_machine_as_test
from property_model import Sums, account_view, amounts, draw_balance_lock, flip, sums, view

# PROPERTY_EXAMPLES / PROPERTY_STEPS (and PROPERTY_TIMEOUT_S): a longer soak than make test can afford.
EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "10"))
STEPS = int(os.environ.get("PROPERTY_STEPS", "25"))
TIMEOUT_S = int(os.environ.get("PROPERTY_TIMEOUT_S", "900"))

# One ledger: three USD accounts and two EUR ones, each of a drawn normal balance.
CURRENCIES = ["USD", "USD", "USD", "EUR", "EUR"]


# -- the model ------------------------------------------------------------------------------------------------


@dataclass
class MAccount:
    id: str
    currency: str
    exponent: int
    normal: str
    ledger: int = 0
    live: dict = field(default_factory=dict, repr=False)  # entry id -> MEntry: the entries its balances count
    effects: int = 0  # balance effects written: its lock_version

    def __repr__(self) -> str:
        return f"<{self.currency} {self.normal}-normal account {self.id[:8]}>"

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(repr(self))

    def current(self) -> Sums:
        return sums((e, e.txn.status) for e in self.live.values())


@dataclass
class MEntry:
    id: str
    txn: "MTxn"
    account: MAccount
    direction: str
    amount: int
    lock_version: int | None  # the account's lock version of the entry's own effect (None: it has none)


@dataclass
class MTxn:
    id: str
    status: str
    description: str | None
    metadata: dict
    effective_at: str
    entries: list = field(default_factory=list, repr=False)
    reverses: str | None = None
    reversed_by: str | None = None
    partially_posts: str | None = None
    archived_reason: str | None = None
    versions: list = field(default_factory=list, repr=False)  # snapshots, versions[v - 1] is version v

    def __repr__(self) -> str:
        return f"<{self.status} txn {self.id[:8]}>"

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(repr(self))

    def snapshot(self) -> None:
        self.versions.append((self.status, self.description, dict(self.metadata),
                              [(e.id, e.account.id, e.direction, e.amount) for e in self.entries]))


def matches(pending: list[tuple], posted: list[tuple]) -> bool:
    """Whether the posted (account, direction, amount) legs are one per pending leg, same account and direction, an
    amount at most its: per (account, direction), the posted amounts sorted down are each at most the pending ones
    sorted down (a dominance check, not the cell's greedy matching)."""
    if len(pending) != len(posted):
        return False
    groups: dict = {}
    for side, legs in ((0, pending), (1, posted)):
        for a, d, x in legs:
            groups.setdefault((a.id, d), ([], []))[side].append(x)
    return all(len(p) == len(q) and all(y <= x for x, y in zip(sorted(p, reverse=True), sorted(q, reverse=True)))
               for p, q in groups.values())


def balanced(legs: list[tuple]) -> bool:
    net: dict = {}
    for a, d, x in legs:
        net[a.currency] = net.get(a.currency, 0) + (x if d == "debit" else -x)
    return not any(net.values())


def draw_legs(draw, accounts: list[MAccount]) -> list[tuple]:
    """A balanced posting's (account, direction, amount) legs, in one or two currencies, small amounts."""
    by_currency: dict[str, list] = {}
    for a in accounts:
        by_currency.setdefault(a.currency, []).append(a)
    legs: list[tuple] = []
    for currency in draw(st.lists(st.sampled_from(sorted(by_currency)), min_size=1, max_size=2, unique=True)):
        pool = st.sampled_from(by_currency[currency])
        debits = draw(st.lists(st.integers(1, 300), min_size=1, max_size=2))
        total = sum(debits)
        cut = draw(st.integers(1, total - 1)) if total > 1 and draw(st.booleans()) else None
        credits = [total] if cut is None else [cut, total - cut]
        legs += [(draw(pool), "debit", x) for x in debits] + [(draw(pool), "credit", x) for x in credits]
    return draw(st.permutations(legs))


def draw_part(draw, legs: list[tuple]) -> list[tuple]:
    """Balanced posted legs for these pending ones: each amount in 1..its pending amount (the pending amounts
    themselves when no such split exists)."""
    out = list(legs)
    for currency in {a.currency for a, _, _ in legs}:
        debit_ix = [i for i, (a, d, _) in enumerate(legs) if a.currency == currency and d == "debit"]
        credit_ix = [i for i, (a, d, _) in enumerate(legs) if a.currency == currency and d == "credit"]
        whole = draw(st.booleans(), label=f"{currency} whole")
        if whole:
            continue
        takes = {i: draw(st.integers(1, legs[i][2])) for i in debit_ix}
        total = sum(takes.values())
        if total < len(credit_ix):
            continue  # the whole amounts
        fill = {i: 1 for i in credit_ix}
        rest = total - len(credit_ix)
        for i in draw(st.permutations(credit_ix)):
            more = min(rest, legs[i][2] - 1)
            fill[i] += more
            rest -= more
        assert rest == 0, "pending credits cover the pending debits"
        for i, x in {**takes, **fill}.items():
            out[i] = (legs[i][0], legs[i][1], x)
    return out


# -- the machine ----------------------------------------------------------------------------------------------


def make_machine(cell, mode: str):
    class LifecycleMachine(ApiMachine):
        def __init__(self) -> None:
            super().__init__(cell)
            self.ledger_id = ""
            self.accounts: list[MAccount] = []
            self.txns: list[MTxn] = []
            self.by_id: dict[str, MTxn] = {}
            self.keys: dict[str, tuple] = {}  # Idempotency-Key -> (path, body, first answer)

        def send(self, method: str, path: str, body=None, key: str | None = None):
            headers = {"Idempotency-Key": key} if key else None
            r = self.cell.client.request(method, path, json=body, auth=self.auth, headers=headers)
            assert r.status_code < 500, f"{method} {path}: {r.status_code} {r.text}"
            return r

        def refused(self, r, codes) -> None:
            codes = {codes} if isinstance(codes, str) else codes
            assert r.status_code == 422 and r.json().get("code") in codes, (codes, r.text)
            assert r.headers["content-type"].startswith("application/problem+json"), r.headers

        def keyed(self, draw) -> str | None:
            return uuid.uuid4().hex if draw(st.integers(0, 2), label="idempotency key") == 0 else None

        def remember(self, key: str | None, path: str, body: dict, answer: dict) -> None:
            if key is not None:
                self.keys[key] = (path, body, answer)

        # -- the model's effects -------------------------------------------------------------------------------

        def effect(self, a: MAccount) -> int:
            a.effects += 1
            return a.effects

        def write_entries(self, m: MTxn, legs: list[tuple], got: list[dict], counts: bool) -> None:
            """The entries of a new transaction (or a replacement), one effect each when they count, in entry order."""
            assert [(x["ledger_account_id"], x["direction"], x["amount"]) for x in got] == [
                (a.id, d, amount) for a, d, amount in legs]
            for (a, d, amount), x in zip(legs, got):
                e = MEntry(x["id"], m, a, d, amount, self.effect(a) if counts else None)
                if counts:
                    a.live[e.id] = e
                m.entries.append(e)

        def resulting(self, legs: list[tuple], bodies: list[dict], got: list[dict], counts: bool) -> None:
            """Resulting balances in a 201: only on the entries that asked, and on an account with one entry in the
            posting, its balances once the whole posting is written (none on an entry that changed nothing)."""
            once = {a.id for a, _, _ in legs if sum(b is a for b, _, _ in legs) == 1}
            for (a, _, _), body, x in zip(legs, bodies, got):
                shown = x["resulting_ledger_account_balances"]
                if not body.get("show_resulting_ledger_account_balances") or not counts:
                    assert shown is None, x
                elif a.id in once:
                    assert shown == view(a.current(), a), f"resulting balances of {a}"
                else:
                    assert shown is not None, x

        def release(self, m: MTxn) -> None:
            """A pending transaction's entries archived (discarded by a replacement, or the transaction archived):
            one effect each, in entry order."""
            for e in m.entries:
                self.effect(e.account)
                e.account.live.pop(e.id, None)

        def new_txn(self, got: dict, status: str, **links) -> MTxn:
            m = MTxn(got["id"], status, got["description"], got["metadata"], got["effective_at"], **links)
            self.txns.append(m)
            self.by_id[m.id] = m
            return m

        def projected(self, legs: list[tuple], status: str, gone=()) -> dict[str, dict[str, int]]:
            """Each touched account's amounts once `gone`'s entries are archived and these legs written."""
            gone_ids = {e.id for e in gone}
            out = {}
            for a in {a.id: a for a, _, _ in legs}.values():
                pairs = [(e, e.txn.status) for i, e in a.live.items() if i not in gone_ids]
                pairs += [(MEntry("new", None, a, d, x, None), status) for b, d, x in legs if b is a]
                out[a.id] = amounts(sums(pairs), a.normal)
            return out

        def entry_bodies(self, draw, legs, status: str, gone=()) -> tuple[list[dict], str | None]:
            """The request's entries with drawn balance locks and lock_versions, and the code that must refuse them
            (None: accepted). Balance locks are drawn around each account's balances once the posting is written;
            a lock_version is the account's now."""
            locks = draw(st.sampled_from([None, None, "balance", "lock_version", "both"]), label="locks")
            projected = self.projected(legs, status, gone)
            bodies, code = [], None
            for a, d, x in legs:
                e = {"ledger_account_id": a.id, "direction": d, "amount": x}
                lock = draw(st.sampled_from([None, locks])) if locks else None
                failing = None
                if lock in ("balance", "both"):
                    name, e[name], holds = draw_balance_lock(draw, projected[a.id])
                    failing = None if holds else "balance_lock_failed"
                if lock in ("lock_version", "both"):
                    e["lock_version"] = max(0, a.effects + draw(st.sampled_from([0, 0, 0, -1, 1])))
                    if e["lock_version"] != a.effects:
                        failing = "lock_version_mismatch"  # checked before the entry's balance locks
                if draw(st.integers(0, 3), label="show resulting balances") == 0:
                    e["show_resulting_ledger_account_balances"] = True
                code = code or failing
                bodies.append(e)
            return bodies, code

        # -- rules ---------------------------------------------------------------------------------------------

        @initialize(normals=st.lists(st.sampled_from(["credit", "debit"]), min_size=len(CURRENCIES),
                                     max_size=len(CURRENCIES)))
        def open_books(self, normals):
            r = self.call("POST", "/api/ledgers", {"name": "lifecycle"})
            assert r.status_code == 201, r.text
            self.ledger_id = r.json()["id"]
            for currency, normal in zip(CURRENCIES, normals):
                r = self.call("POST", "/api/ledger_accounts", {
                    "name": f"{currency}-{normal}", "ledger_id": self.ledger_id, "normal_balance": normal,
                    "currency": currency})
                assert r.status_code == 201, r.text
                body = r.json()
                self.accounts.append(MAccount(body["id"], currency, body["currency_exponent"], normal))

        @rule(data=st.data())
        def create(self, data):
            for _ in range(data.draw(st.integers(1, 2), label="postings")):
                self.create_one(data.draw)

        def create_one(self, draw):
            legs = draw_legs(draw, self.accounts)
            status = draw(st.sampled_from(["pending", "pending", "pending", "posted", "posted", "archived"]),
                          label="status")
            bodies, code = self.entry_bodies(draw, legs, status)
            body = {"ledger_id": self.ledger_id, "status": status, "ledger_entries": bodies,
                    "metadata": draw(st.sampled_from([{}, {"k": "v"}]), label="metadata")}
            archive_on_failure = draw(st.booleans(), label="archive_on_balance_lock_failure")
            if archive_on_failure:
                body["archive_on_balance_lock_failure"] = True
            key = self.keyed(draw)
            r = self.send("POST", "/api/ledger_transactions", body, key)
            if status == "archived":
                code = None  # a record: its locks are not checked, it changes no balance
            event(f"create {status}: {code or 'ok'}")
            if code is not None and not archive_on_failure:  # a stale lock_version is archived on failure too
                self.refused(r, code)
                return
            assert r.status_code == 201, r.text
            got = r.json()
            written = "archived" if code else status
            assert (got["status"], got["archived_reason"]) == (written, "balance_lock_failure" if code else None)
            m = self.new_txn(got, written)
            if code:
                m.archived_reason = "balance_lock_failure"
            self.write_entries(m, legs, got["ledger_entries"], counts=written != "archived")
            self.resulting(legs, bodies, got["ledger_entries"], counts=written != "archived")
            m.snapshot()
            self.remember(key, "/api/ledger_transactions", body, got)
            self.check(m)

        def draw_txn(self, draw):
            """A transaction to change: a pending one three times in four (when there is one), else any."""
            pendings = [t for t in self.txns if t.status == "pending"]
            return draw(st.sampled_from(pendings) if pendings and draw(st.integers(0, 3)) else
                        st.sampled_from(self.txns), label="txn")

        @precondition(lambda self: bool(self.txns))
        @rule(data=st.data())
        def partial_post(self, data):
            draw = data.draw
            txn = self.draw_txn(draw)
            pending = [(e.account, e.direction, e.amount) for e in txn.entries]
            legs = draw_part(draw, pending)
            how = draw(st.sampled_from(["part"] * 6 + ["above", "account", "direction", "missing", "unbalanced"]),
                       label="how")
            i = draw(st.integers(0, len(legs) - 1), label="which entry")
            a, d, x = legs[i]
            if how == "above":
                legs[i] = (a, d, pending[i][2] + draw(st.integers(1, 50)))
            elif how == "account":
                legs[i] = (draw(st.sampled_from([b for b in self.accounts if b is not a])), d, x)
            elif how == "direction":
                legs[i] = (a, flip(d), x)
            elif how == "missing":
                del legs[i]
            elif how == "unbalanced":
                legs[i] = (a, d, x + 1)
            legs = draw(st.permutations(legs), label="posted entries' order")  # matched by account, not position
            bodies, lock_code = self.entry_bodies(draw, legs, "posted", txn.entries if txn.status == "pending" else ())
            body = {"posted_ledger_entries": bodies}
            if draw(st.booleans(), label="described"):
                body["description"] = "settled in part"
            if draw(st.booleans(), label="with metadata"):
                body["metadata"] = {"part": "yes"}
            if draw(st.integers(0, 3), label="effective_at given") == 0:
                body["effective_at"] = "2026-01-02T03:04:05.678901Z"
            # The code that refuses it: a transaction no longer pending says so first, whatever its parts.
            codes = set()
            if txn.status != "pending":
                codes.add("invalid_status_transition")
            elif not matches(pending, legs):
                codes.add("partial_post_entries_mismatch")
            elif not balanced(legs):
                codes.add("entries_must_balance")
            if not codes and lock_code:
                codes.add(lock_code)
            key = self.keyed(draw)
            path = f"/api/ledger_transactions/{txn.id}/partial_post"
            r = self.send("POST", path, body, key)
            event(f"partial_post {how} of {txn.status}: {'/'.join(sorted(codes)) or 'ok'}")
            if codes:
                self.refused(r, codes)
                self.check(txn)
                return
            assert r.status_code == 201, r.text
            got = r.json()
            assert got["status"] == "posted" and got["partially_posts_ledger_transaction_id"] == txn.id, got
            assert got["description"] == body.get("description", txn.description)
            assert got["metadata"] == (body.get("metadata") or txn.metadata)
            assert got["effective_at"] == body.get("effective_at", txn.effective_at), \
                "effective when the pending transaction was, unless told"
            assert {x["effective_at"] for x in got["ledger_entries"]} == {got["effective_at"]}
            # The pending one archived (its effects undone) before the posted entries are written.
            self.release(txn)
            txn.status = "archived"
            txn.snapshot()
            m = self.new_txn(got, "posted", partially_posts=txn.id)
            self.write_entries(m, legs, got["ledger_entries"], counts=True)
            self.resulting(legs, bodies, got["ledger_entries"], counts=True)
            m.snapshot()
            # A pending reversal partially posted did reverse its original (README: the original stays reversed).
            self.remember(key, path, body, got)
            self.check(txn, m)

        @precondition(lambda self: bool(self.txns))
        @rule(data=st.data())
        def settle(self, data):
            """PATCH status (and now and then metadata): pending -> posted | archived; final ones are refused."""
            draw = data.draw
            txn = self.draw_txn(draw)
            to = draw(st.sampled_from(["posted", "archived"] if txn.status == "pending" else
                                      sorted({"pending", "posted", "archived"} - {txn.status})), label="to")
            body = {"status": to}
            if draw(st.booleans(), label="with metadata"):
                body["metadata"] = {"settled": to}
            r = self.send("PATCH", f"/api/ledger_transactions/{txn.id}", body)
            event(f"settle {txn.status} -> {to}")
            if txn.status != "pending":
                self.refused(r, "invalid_status_transition")
                self.check(txn)
                return
            assert r.status_code == 200, r.text
            for e in txn.entries:  # one effect per entry, in entry order
                self.effect(e.account)
                if to == "archived":
                    e.account.live.pop(e.id)
            txn.status = to
            txn.metadata = {**txn.metadata, **body.get("metadata", {})}
            txn.snapshot()
            self.check(txn, *self.freed(txn), answer=r.json())

        def freed(self, txn: MTxn) -> list[MTxn]:
            """The original of `txn`, a reversal just archived by a PATCH, no longer reversed by it (an archived
            reversal reversed nothing: the original is reversible again)."""
            original = self.by_id.get(txn.reverses) if txn.reverses else None
            if txn.status == "archived" and original is not None and original.reversed_by == txn.id:
                original.reversed_by = None
                return [original]
            return []

        @precondition(lambda self: bool(self.txns))
        @rule(data=st.data())
        def annotate(self, data):
            """PATCH description / metadata of any transaction: a version when something changes, else none."""
            draw = data.draw
            txn = draw(st.sampled_from(self.txns), label="txn")
            body = draw(st.sampled_from([{"metadata": {"note": "a"}}, {"metadata": {"note": "b"}},
                                         {"metadata": {"note": ""}}, {"description": "annotated"}]), label="body")
            r = self.send("PATCH", f"/api/ledger_transactions/{txn.id}", body)
            assert r.status_code == 200, r.text
            metadata = {k: v for k, v in {**txn.metadata, **body.get("metadata", {})}.items() if v != ""}
            description = body.get("description", txn.description)
            changed = (metadata, description) != (txn.metadata, txn.description)
            event(f"annotate: {'changed' if changed else 'unchanged'}")
            if changed:
                txn.metadata, txn.description = metadata, description
                txn.snapshot()
            self.check(txn, answer=r.json())

        @precondition(lambda self: bool(self.txns))
        @rule(data=st.data())
        def replace(self, data):
            """PATCH ledger_entries of a pending transaction: the old entries archived, the new ones written."""
            draw = data.draw
            txn = self.draw_txn(draw)
            legs = draw_legs(draw, self.accounts)
            body = {"ledger_entries": [{"ledger_account_id": a.id, "direction": d, "amount": x} for a, d, x in legs]}
            to = draw(st.sampled_from([None, None, "posted", "archived"]), label="and status")
            if to is not None:  # the entries replaced, then the status moved: two versions
                body["status"] = to
            r = self.send("PATCH", f"/api/ledger_transactions/{txn.id}", body)
            event(f"replace {txn.status}{' and ' + to if to else ''}")
            if txn.status != "pending":
                self.refused(r, "invalid_status_transition")
                self.check(txn)
                return
            assert r.status_code == 200, r.text
            self.release(txn)
            txn.entries = []
            self.write_entries(txn, legs, r.json()["ledger_entries"], counts=True)
            txn.snapshot()
            if to is not None:
                for e in txn.entries:
                    self.effect(e.account)
                    if to == "archived":
                        e.account.live.pop(e.id)
                txn.status = to
                txn.snapshot()
            self.check(txn, *self.freed(txn), answer=r.json())

        @precondition(lambda self: bool(self.txns))
        @rule(data=st.data())
        def reverse(self, data):
            draw = data.draw
            posted = [t for t in self.txns if t.status == "posted"]
            txn = draw(st.sampled_from(posted) if posted and draw(st.integers(0, 3)) else
                       st.sampled_from(self.txns), label="txn to reverse")
            status = draw(st.sampled_from(["posted", "pending", "pending", "archived"]), label="reversal status")
            body = {"status": status}
            key = self.keyed(draw)
            path = f"/api/ledger_transactions/{txn.id}/reversal"
            r = self.send("POST", path, body, key)
            event(f"reverse {txn.status}{' reversed' if txn.reversed_by else ''} as {status}: {r.status_code}")
            if txn.reversed_by is not None:
                self.refused(r, "already_reversed")
                self.check(txn)
                return
            if txn.status != "posted":
                self.refused(r, "invalid_status_transition")
                self.check(txn)
                return
            assert r.status_code == 201, r.text
            got = r.json()
            assert (got["status"], got["reverses_ledger_transaction_id"]) == (status, txn.id), got
            assert got["description"] == f"Reversal of {txn.id}"
            assert got["effective_at"] == txn.effective_at, "effective when the original was"
            m = self.new_txn(got, status, reverses=txn.id)
            self.write_entries(m, [(e.account, flip(e.direction), e.amount) for e in txn.entries],
                               got["ledger_entries"], counts=status != "archived")
            m.snapshot()
            if status != "archived":  # a record of a reversal that did not happen reverses nothing
                txn.reversed_by = m.id
            self.remember(key, path, body, got)
            self.check(txn, m)

        @precondition(lambda self: bool(self.keys))
        @rule(data=st.data())
        def replay(self, data):
            """An Idempotency-Key sent again: the same request is the first answer, whatever changed since, and
            nothing happens; another request under it is 422 idempotency_key_reused."""
            draw = data.draw
            key = draw(st.sampled_from(sorted(self.keys)), label="key")
            path, body, answer = self.keys[key]
            same = draw(st.booleans(), label="same request")
            if same:
                r = self.send("POST", path, body, key)
                assert r.status_code == 201, r.text
                assert r.json() == answer, "a replay answers the first answer"
            else:
                other = {**body, "metadata": {"other": "request"}}
                r = self.send("POST", path, other, key)
                self.refused(r, "idempotency_key_reused")
            event(f"replay: {'same' if same else 'other'}")
            self.check()

        def teardown(self):
            try:
                if self.accounts:
                    self.check(exact=True)
                    self.audit_entries()
            finally:
                problems = cell.verify(self.tenant)
            assert problems == [], f"invariants violated for {self.tenant}: {problems}"

        # -- what a user sees, against the model -----------------------------------------------------------------

        @precondition(lambda self: mode == "hybrid" and bool(self.accounts))
        @rule()
        def work(self):
            """A worker step: every queued effect folded; then every lock version is known."""
            self.check(exact=True)

        def shown(self, m: MTxn) -> dict:
            return {"id": m.id, "status": m.status, "description": m.description, "metadata": m.metadata,
                    "version": len(m.versions), "reverses_ledger_transaction_id": m.reverses,
                    "reversed_by_ledger_transaction_id": m.reversed_by,
                    "partially_posts_ledger_transaction_id": m.partially_posts, "archived_reason": m.archived_reason,
                    "posted": m.status == "posted",
                    "entries": [(e.id, e.account.id, e.direction, e.amount, m.status, e.lock_version)
                                for e in m.entries]}

        def seen(self, got: dict) -> dict:
            return {"id": got["id"], "status": got["status"], "description": got["description"],
                    "metadata": got["metadata"], "version": got["version"],
                    "reverses_ledger_transaction_id": got["reverses_ledger_transaction_id"],
                    "reversed_by_ledger_transaction_id": got["reversed_by_ledger_transaction_id"],
                    "partially_posts_ledger_transaction_id": got["partially_posts_ledger_transaction_id"],
                    "archived_reason": got["archived_reason"], "posted": got["posted_at"] is not None,
                    "entries": [(e["id"], e["ledger_account_id"], e["direction"], e["amount"], e["status"],
                                 e["ledger_account_lock_version"]) for e in got["ledger_entries"]]}

        def version_shown(self, m: MTxn, v: int) -> dict:
            status, description, metadata, entries = m.versions[v - 1]
            current = v == len(m.versions)
            return {"ledger_transaction_id": m.id, "version": v, "status": status, "description": description,
                    "metadata": metadata, "reverses_ledger_transaction_id": m.reverses,
                    "partially_posts_ledger_transaction_id": m.partially_posts,
                    "reversed_by_ledger_transaction_id": m.reversed_by if current else None,
                    "posted": status == "posted",
                    "entries": [(*e, status, None) for e in entries]}

        def version_seen(self, got: dict) -> dict:
            return {"ledger_transaction_id": got["ledger_transaction_id"], "version": got["version"],
                    "status": got["status"], "description": got["description"], "metadata": got["metadata"],
                    "reverses_ledger_transaction_id": got["reverses_ledger_transaction_id"],
                    "partially_posts_ledger_transaction_id": got["partially_posts_ledger_transaction_id"],
                    "reversed_by_ledger_transaction_id": got["reversed_by_ledger_transaction_id"],
                    "posted": got["posted_at"] is not None,
                    "entries": [(e["id"], e["ledger_account_id"], e["direction"], e["amount"], e["status"],
                                 e["ledger_account_lock_version"]) for e in got["ledger_entries"]]}

        def check(self, *touched: MTxn, answer: dict | None = None, exact: bool = mode == "sync") -> None:
            """Every transaction, version and account balance as the model says; the touched transactions' own
            reads and versions too. In hybrid mode, until a worker step (`exact`) folds every queued effect, entries
            may have no lock version yet and an account's own lock_version counts only what is applied: balances are
            then read with include_unapplied (read-your-writes)."""
            def same(got: dict, expected: dict, what) -> None:
                if not exact:
                    got = {**got, "entries": [x[:-1] for x in got["entries"]]}
                    expected = {**expected, "entries": [x[:-1] for x in expected["entries"]]}
                assert got == expected, (what, {k: (got[k], v) for k, v in expected.items() if got[k] != v})

            if answer is not None:
                same(self.seen(answer), self.shown(touched[0]), "the PATCH's answer")
            if exact and mode == "hybrid":
                cell.apply([a.id for a in self.accounts])
            listed = every_page(self.call, "/api/ledger_transactions", ledger_id=self.ledger_id, per_page="100")
            got = {t["id"]: self.seen(t) for t in listed}
            assert sorted(got) == sorted(m.id for m in self.txns), "every transaction listed"
            for m in self.txns:
                same(got[m.id], self.shown(m), m)
            versions = every_page(self.call, "/api/ledger_transaction_versions", per_page="100")
            per_txn: dict[str, list] = {}
            for v in versions:
                per_txn.setdefault(v["ledger_transaction_id"], []).append(self.version_seen(v))
            assert per_txn == {m.id: [self.version_shown(m, v) for v in range(1, len(m.versions) + 1)]
                               for m in self.txns}, "every version, in order"
            for m in touched:
                r = self.call("GET", f"/api/ledger_transactions/{m.id}")
                assert r.status_code == 200, r.text
                same(self.seen(r.json()), self.shown(m), m)
                r = self.call("GET", f"/api/ledger_transactions/{m.id}/versions")
                assert r.status_code == 200, r.text
                assert [self.version_seen(v) for v in r.json()] == per_txn[m.id], "its own versions"
                for link, target in (("partially_posts", m.partially_posts), ("reverses", m.reverses)):
                    if target is not None:  # the list filters that find a transaction's partial post or reversal
                        found = every_page(self.call, "/api/ledger_transactions",
                                           **{f"{link}_ledger_transaction_id": target})
                        assert sorted(t["id"] for t in found) == sorted(
                            t.id for t in self.txns if getattr(t, link) == target), link
            if not exact:
                for a in self.accounts:
                    got = self.read_account(a, {"balances[include_unapplied]": "true"})
                    assert got["balances"] == account_view(a.current(), a), f"balances of {a}, unapplied counted"
                return
            accounts = every_page(self.call, "/api/ledger_accounts", ledger_id=self.ledger_id, per_page="100")
            by_id = {a["id"]: a for a in accounts}
            for a in self.accounts:
                got = by_id[a.id]
                assert got["balances"] == account_view(a.current(), a), f"balances of {a}"
                assert got["lock_version"] == a.effects, f"lock_version of {a}"

        def audit_entries(self) -> None:
            """Each account's entries that count, with the lock version of their own effect."""
            for a in self.accounts:
                listed = self.entries_listed(ledger_account_id=a.id)
                counted = [x for x in listed if x["status"] != "archived"]
                assert sorted((x["id"], x["ledger_account_lock_version"]) for x in counted) == sorted(
                    (e.id, e.lock_version) for e in a.live.values()), f"entries of {a}"

    return LifecycleMachine



def run(cell, mode: str, examples: int) -> None:
    run_state_machine_as_test(make_machine(cell, mode), settings=settings(
        max_examples=examples, stateful_step_count=STEPS, deadline=None, report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


# A failure is shrunk for up to ~5 minutes (hypothesis' own bound): let that finish and report.
@pytest.mark.timeout(TIMEOUT_S)
def test_a_transactions_lifecycle_agrees_with_the_model(ledger_cell):
    run(ledger_cell, "sync", EXAMPLES)


@pytest.mark.timeout(TIMEOUT_S)
def test_a_transactions_lifecycle_agrees_with_the_model_in_hybrid_mode(hybrid_cell):
    run(hybrid_cell, "hybrid", max(1, EXAMPLES // 2))
