"""Ledger account settlements against a model: random postings (pending, posted, archived; backdated and future)
between three accounts of one ledger, transitions of them, and settlements of one account against another
(drafting or not, allow_either_direction or not, at drawn upper bounds), entries attached to and detached from
drafts, and settlements' status changes, through the HTTP API of a real cell (sync mode).

The reference is Modern Treasury's documented semantics (the SDK's ledger_account_settlement types) and the README:
a settlement takes the settled account's posted entries effective before effective_at_upper_bound that no other
settlement holds; its amount is their net, settlement_entry_direction the direction of its entry on the settled
account that offsets that net (a net against the normal balance only with allow_either_direction); unless drafting,
it posts a transaction of that amount between the settled and the contra account, effective at the upper bound,
with the settlement's status, and moves with it; archiving releases the entries. After every step: each
settlement as a user reads it (status, amount, direction, transaction), the entries it holds, no entry held twice,
each settling transaction's entries and status, and every account's balances recomputed from the model's entries;
refusals are problems with their stable codes; at the end the cell's own invariants (DESIGN.md section 8) verify."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest
from harness import ApiMachine
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule, run_state_machine_as_test
from property_model import AMOUNT_MAX, account_view, flip, overflows, refused, rfc3339, sums

UTC = timezone.utc
# PROPERTY_EXAMPLES / PROPERTY_STEPS, as the other models.
EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "20"))
STEPS = int(os.environ.get("PROPERTY_STEPS", "25"))
TIMEOUT_S = int(os.environ.get("PROPERTY_TIMEOUT_S", "900"))
SETTLEMENTS_MAX = 6  # per example: each is read after every step

# Effective times, from the machine's base (a whole second before the first request: "now" for an omitted upper
# bound is later than base and earlier than a day after it). Upper bounds also fall a microsecond either side.
ENTRY_OFFSETS = [timedelta(days=-2), timedelta(days=-1), timedelta(microseconds=-1), timedelta(0), timedelta(days=1)]
ZONES = [timedelta(0), timedelta(hours=5, minutes=30), timedelta(hours=-8)]  # instants compare, not wall clocks
BOUND_OFFSETS = sorted({*ENTRY_OFFSETS, timedelta(days=-1, microseconds=1), timedelta(microseconds=1),
                        timedelta(days=2)})


def parse(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


@dataclass(eq=False)
class MAccount:
    id: str
    normal: str
    name: str
    currency: str = "USD"
    exponent: int = 2
    entries: list = field(default_factory=list, repr=False)

    def __repr__(self) -> str:
        return f"<{self.name} ({self.normal}-normal)>"

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(repr(self))


@dataclass(eq=False)
class MTxn:
    id: str
    status: str
    effective_at: datetime
    entries: list = field(default_factory=list, repr=False)
    settlement: "MSettlement | None" = field(default=None, repr=False)
    reversed: bool = False

    def __repr__(self) -> str:
        return f"<{self.status} txn {self.id[:8]}{' (a settlement)' if self.settlement else ''}>"

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(repr(self))


@dataclass(eq=False)
class MEntry:
    id: str
    txn: MTxn
    account: MAccount
    direction: str
    amount: int
    discarded: bool = False  # replaced by a PATCH of its pending transaction (its effective_at moved)

    def __repr__(self) -> str:
        return f"<{self.txn.status} {self.direction} {self.amount} on {self.account.name} {self.id[:8]}>"

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(repr(self))


@dataclass(eq=False)
class MSettlement:
    id: str
    settled: MAccount
    contra: MAccount
    status: str
    allow_either_direction: bool
    upper: datetime
    amount: int | None = None
    direction: str | None = None
    txn: MTxn | None = None
    held: set = field(default_factory=set)  # entry ids

    def __repr__(self) -> str:
        return f"<{self.status} settlement {self.id[:8]} of {self.settled.name}>"

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(repr(self))


def leg(s: MSettlement, entries: list[MEntry]) -> tuple[int, str | None] | None:
    """The settlement's amount and the direction of its entry on the settled account for these held entries (None:
    their net is against the settled account's normal balance and that is not allowed)."""
    net = sum(e.amount if e.direction == s.settled.normal else -e.amount for e in entries)
    if net == 0:
        return 0, None
    if net > 0:
        return net, flip(s.settled.normal)
    return (-net, s.settled.normal) if s.allow_either_direction else None


def make_machine(cell, hybrid: bool = False):
    """`hybrid`: the cell posts in hybrid mode without a queue; a worker step applies every account's queued effects
    before each balance read (settlements never read balances: they gather entries)."""

    class SettlementMachine(ApiMachine):
        def __init__(self) -> None:
            super().__init__(cell)
            self.accounts: list[MAccount] = []
            self.txns: list[MTxn] = []
            self.entries: dict[str, MEntry] = {}
            self.settlements: list[MSettlement] = []
            self.held_by: dict[str, MSettlement] = {}  # entry id -> the live settlement holding it
            self.offsets: set[str] = set()  # settling transactions' entries on their settled accounts
            self.base = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)

        @initialize(normals=st.lists(st.sampled_from(["credit", "debit"]), min_size=3, max_size=3))
        def open_books(self, normals):
            r = self.call("POST", "/api/ledgers", {"name": "settlements"})
            assert r.status_code == 201, r.text
            self.ledger_id = r.json()["id"]
            for name, normal in zip("ABC", normals):
                r = self.call("POST", "/api/ledger_accounts", {"name": name, "ledger_id": self.ledger_id,
                                                               "normal_balance": normal, "currency": "USD"})
                assert r.status_code == 201, r.text
                self.accounts.append(MAccount(r.json()["id"], normal, name))

        # -- the model's rules -------------------------------------------------------------------------------------

        def settleable(self, s: MSettlement, e: MEntry) -> bool:
            """What the settlement may take, whoever holds it: a posted entry of its settled account (not one a PATCH
            of its pending transaction replaced) effective before its upper bound."""
            return (e.account is s.settled and e.txn.status == "posted" and e.txn.effective_at < s.upper
                    and not e.discarded)

        def overflow(self, legs: list[tuple[MAccount, str, int]]) -> bool:
            """Whether writing these legs takes an account's pending (so posted too) debits or credits past 2^63 - 1:
            the posting is refused (balance_overflow)."""
            return any(overflows(sums([*((e, e.txn.status) for e in a.entries),
                                       *((MEntry("", None, a, d, x), "pending") for b, d, x in legs if b is a)]))
                       for a in {id(a): a for a, _, _ in legs}.values())

        def record(self, body: dict, legs: list[tuple[MAccount, str, int]], settlement=None) -> MTxn:
            m = MTxn(body["id"], body["status"], parse(body["effective_at"]), settlement=settlement)
            assert len(body["ledger_entries"]) == len(legs)
            for (a, direction, amount), got in zip(legs, body["ledger_entries"]):
                assert (got["ledger_account_id"], got["direction"], got["amount"]) == (a.id, direction, amount)
                e = MEntry(got["id"], m, a, direction, amount)
                m.entries.append(e)
                a.entries.append(e)
                self.entries[e.id] = e
            self.txns.append(m)
            return m

        # -- postings ----------------------------------------------------------------------------------------------

        @rule(data=st.data())
        def post(self, data):
            a, b = data.draw(st.permutations(self.accounts), label="debit, credit")[:2]
            # Now and then the largest amount: balances, and settlements' nets, reach the end of the 64-bit range.
            amount = data.draw(st.integers(1, 500), label="amount")
            if data.draw(st.sampled_from([False] * 9 + [True]), label="the largest amount"):
                amount = AMOUNT_MAX
            status = data.draw(st.sampled_from(["posted", "pending", "posted", "archived", "pending"]), label="status")
            at = self.base + data.draw(st.sampled_from(ENTRY_OFFSETS), label="effective_at")
            legs = [(a, "debit", amount), (b, "credit", amount)]
            r = self.call("POST", "/api/ledger_transactions", {
                "ledger_id": self.ledger_id, "status": status, "effective_at": rfc3339(at),
                "ledger_entries": [{"ledger_account_id": x.id, "direction": d, "amount": n} for x, d, n in legs]})
            if status != "archived" and self.overflow(legs):
                event("post: overflow refused")
                refused(r, "balance_overflow")
                return
            assert r.status_code == 201, r.text
            event(f"post {status}")
            assert parse(r.json()["effective_at"]) == at
            self.record(r.json(), legs)

        @precondition(lambda self: bool(self.txns))
        @rule(data=st.data())
        def transition(self, data):
            """A pending transaction posted or archived; final ones refused; a settlement's moves only with it."""
            pending = [t for t in self.txns if t.status == "pending" and t.settlement is None]
            pool = pending if pending and data.draw(st.sampled_from([True, False, True]), label="a pending one") \
                else self.txns
            txn = data.draw(st.sampled_from(pool), label="txn")
            to = data.draw(st.sampled_from(["posted", "archived"]), label="to")
            r = self.call("PATCH", f"/api/ledger_transactions/{txn.id}", {"status": to})
            if to == txn.status:
                event("transition: unchanged")
                assert r.status_code == 200 and r.json()["status"] == to, r.text
            elif txn.settlement is not None:
                event("transition: a settlement's")
                refused(r, "settlement_transaction")
            elif txn.status != "pending":
                event("transition: final")
                refused(r, "invalid_status_transition")
            else:
                event(f"transition: pending -> {to}")
                assert r.status_code == 200 and r.json()["status"] == to, r.text
                txn.status = to

        @precondition(lambda self: bool(self.txns))
        @rule(data=st.data())
        def move(self, data):
            """A pending transaction's effective_at moved (its entries discarded, the same ones written anew at the new
            time); a final one refused, a settlement's too (it moves only with its settlement)."""
            pending = [t for t in self.txns if t.status == "pending"]
            pool = pending if pending and data.draw(st.sampled_from([True, False, True]), label="a pending one") \
                else self.txns
            txn = data.draw(st.sampled_from(pool), label="txn")
            at = self.base + data.draw(st.sampled_from(ENTRY_OFFSETS), label="effective_at")
            zone = data.draw(st.sampled_from(ZONES), label="zone")
            r = self.call("PATCH", f"/api/ledger_transactions/{txn.id}", {"effective_at": rfc3339(at, zone)})
            if at == txn.effective_at:
                event("move: unchanged")
                assert r.status_code == 200, r.text
            elif txn.status != "pending":
                event("move: final")
                refused(r, "invalid_status_transition")
            elif txn.settlement is not None:
                event("move: a settlement's")
                refused(r, "settlement_transaction")
            else:
                event("move: moved")
                assert r.status_code == 200, r.text
                got = r.json()
                assert parse(got["effective_at"]) == at
                old, txn.entries, txn.effective_at = txn.entries, [], at
                for e, new in zip(old, got["ledger_entries"], strict=True):
                    assert (new["ledger_account_id"], new["direction"], new["amount"]) == (
                        e.account.id, e.direction, e.amount)
                    e.discarded = True
                    e.account.entries.remove(e)
                    m = MEntry(new["id"], txn, e.account, e.direction, e.amount)
                    txn.entries.append(m)
                    e.account.entries.append(m)
                    self.entries[m.id] = m

        @precondition(lambda self: bool(self.txns))
        @rule(data=st.data())
        def reverse(self, data):
            """A posted transaction reversed once (a settlement's too), effective when it was: its reversal's entries
            are posted entries like any other, settled by a later settlement."""
            posted = [t for t in self.txns if t.status == "posted" and not t.reversed]
            pool = posted if posted and data.draw(st.sampled_from([True, False, True]), label="a posted one") \
                else self.txns
            txn = data.draw(st.sampled_from(pool), label="txn")
            r = self.call("POST", f"/api/ledger_transactions/{txn.id}/reversal", {"status": "posted"})
            if txn.status != "posted":
                event("reverse: not posted")
                refused(r, "invalid_status_transition")
            elif txn.reversed:
                event("reverse: reversed already")
                refused(r, "already_reversed")
            elif self.overflow([(e.account, flip(e.direction), e.amount) for e in txn.entries]):
                event("reverse: overflow refused")
                refused(r, "balance_overflow")
            else:
                event(f"reverse{': a settlement' if txn.settlement else ''}")
                assert r.status_code == 201, r.text
                m = self.record(r.json(), [(e.account, flip(e.direction), e.amount) for e in txn.entries])
                assert m.effective_at == txn.effective_at
                txn.reversed = True

        # -- settlements -------------------------------------------------------------------------------------------

        @precondition(lambda self: len(self.settlements) < SETTLEMENTS_MAX)
        @rule(data=st.data())
        def create(self, data):
            settled, contra = data.draw(st.permutations(self.accounts), label="settled, contra")[:2]
            if data.draw(st.sampled_from([False] * 7 + [True] + [False] * 7), label="same account"):
                contra = settled
            status = data.draw(st.sampled_from(["drafting", None, "posted", "drafting", "pending"]), label="status")
            allow = data.draw(st.sampled_from([None, False, True]), label="allow_either_direction")
            # Mostly at, or a microsecond either side of, an instant in use: the bound's exclusive edge.
            known = sorted({t.effective_at - self.base for t in self.txns})
            nudge = st.sampled_from([timedelta(0), timedelta(0), timedelta(microseconds=-1), timedelta(microseconds=1)])
            bounds = [st.none(), st.sampled_from(BOUND_OFFSETS)]
            if known:
                bounds.insert(0, st.builds(lambda k, d: k + d, st.sampled_from(known), nudge))
            offset = data.draw(st.one_of(bounds), label="upper bound")
            skip = data.draw(st.sampled_from([None, None, None, None, False, True]), label="skip")
            body = {"settled_ledger_account_id": settled.id, "contra_ledger_account_id": contra.id}
            for key, value in (("status", status), ("allow_either_direction", allow),
                               ("skip_settlement_ledger_transaction", skip)):
                if value is not None:
                    body[key] = value
            if offset is not None:
                body["effective_at_upper_bound"] = rfc3339(self.base + offset,
                                                           data.draw(st.sampled_from(ZONES), label="zone"))
            r = self.call("POST", "/api/ledger_account_settlements", body)
            if skip:
                event("create: skip refused")
                assert r.status_code == 400 and r.json()["code"] == "unsupported_parameter", r.text
                return
            if contra is settled:
                event("create: same account refused")
                assert r.status_code == 400 and r.json()["code"] == "same_ledger_account", r.text
                return
            status = status or "pending"
            upper = self.base + offset if offset is not None else None
            s = MSettlement("", settled, contra, status, bool(allow), upper or datetime.now(UTC))
            gathered = []
            if status != "drafting":
                gathered = [e for e in settled.entries if self.settleable(s, e) and e.id not in self.held_by
                            and e.id not in self.offsets]
                outcome = leg(s, gathered)
                if outcome is None:
                    event("create: net against the normal balance refused")
                    refused(r, "settlement_balance_negative")
                    return
                if self.settling_overflows(s, outcome):
                    event("create: overflow refused")
                    refused(r, "balance_overflow")
                    return
            assert r.status_code == 201, r.text
            got = r.json()
            s.id = got["id"]
            s.upper = parse(got["effective_at_upper_bound"])
            if upper is not None:
                assert s.upper == upper
            else:
                assert s.upper == parse(got["created_at"]), "the upper bound defaults to the created_at"
                assert self.base < s.upper < self.base + timedelta(days=1)
            self.settlements.append(s)
            if status != "drafting":
                event(f"create {status}: {len(gathered)} entries")
                self.settle(s, gathered, status)
            else:
                event("create drafting")

        def settling_overflows(self, s: MSettlement, outcome: tuple[int, str | None]) -> bool:
            amount, direction = outcome
            return bool(amount) and self.overflow([(s.settled, direction, amount), (s.contra, flip(direction), amount)])

        def settle(self, s: MSettlement, entries: list[MEntry], status: str) -> None:
            """The settlement, found settleable, takes `entries` and settles them with `status`."""
            for e in entries:
                s.held.add(e.id)
                self.held_by[e.id] = s
            s.amount, s.direction = leg(s, entries)
            s.status = status
            if s.amount:
                got = self.call("GET", f"/api/ledger_account_settlements/{s.id}").json()
                r = self.call("GET", f"/api/ledger_transactions/{got['ledger_transaction_id']}")
                assert r.status_code == 200, r.text
                s.txn = self.record(r.json(), [(s.settled, s.direction, s.amount),
                                               (s.contra, flip(s.direction), s.amount)], settlement=s)
                assert s.txn.effective_at == s.upper, "a settling transaction is effective at the upper bound"
                self.offsets.add(s.txn.entries[0].id)

        def draw_settlement(self, data, drafting_weight: int = 3, useful=lambda s: True) -> MSettlement:
            """A draft `drafting_weight` times in `drafting_weight + 1` (when there is one; a `useful` one when there
            is one), else any."""
            drafts = [s for s in self.settlements if s.status == "drafting"]
            drafts = [s for s in drafts if useful(s)] or drafts
            weights = [True] * drafting_weight + [False]
            pool = drafts if drafts and data.draw(st.sampled_from(weights), label="a draft") else self.settlements
            return data.draw(st.sampled_from(pool), label="settlement")

        def fit(self, s: MSettlement) -> list[str]:
            """The entries the settlement could hold: settleable, no settling transaction's, held by no other."""
            return [e.id for e in s.settled.entries if self.settleable(s, e) and e.id not in self.offsets
                    and self.held_by.get(e.id, s) is s]

        def draw_entry_ids(self, data, s: MSettlement) -> list[str]:
            """Mostly entries the settlement could take (posted, of its settled account, before its bound, held by
            no other), else any of its settled account's (held elsewhere, pending, later, a settling one's), now
            and then another account's."""
            own = [e.id for e in s.settled.entries]
            fit = self.fit(s)
            pools = [st.sampled_from(fit)] * 6 if fit else []  # first: what hypothesis draws most
            pools.append(st.sampled_from(list(self.entries)))  # in the order written: ids differ run to run
            if own:
                pools.append(st.sampled_from(own))
            return data.draw(st.lists(st.one_of(pools), min_size=1, max_size=4), label="ledger_entry_ids")

        @precondition(lambda self: bool(self.settlements) and bool(self.entries))
        @rule(data=st.data())
        def attach(self, data):
            s = self.draw_settlement(data, useful=lambda s: bool(self.fit(s)))
            ids = self.draw_entry_ids(data, s)
            r = self.call("PATCH", f"/api/ledger_account_settlements/{s.id}/ledger_entries", {"ledger_entry_ids": ids})
            if s.status != "drafting":
                event("attach: not drafting")
                refused(r, "settlement_not_drafting")
                return
            unfit = [i for i in dict.fromkeys(ids) if not self.settleable(s, self.entries[i])]
            if unfit:
                event("attach: not settleable")
                refused(r, "ledger_entry_not_settleable")
                assert sorted(r.json()["errors"]["ledger_entry_ids"]) == sorted(unfit), r.text
                return
            taken = [i for i in dict.fromkeys(ids) if i in self.offsets or self.held_by.get(i, s) is not s]
            if taken:
                event("attach: held elsewhere")
                refused(r, "ledger_entry_already_settled")
                assert sorted(r.json()["errors"]["ledger_entry_ids"]) == sorted(taken), r.text
                return
            assert r.status_code == 200, r.text
            changed = not set(ids) <= s.held
            event(f"attach: {'attached' if changed else 'unchanged'}")
            for i in ids:
                s.held.add(i)
                self.held_by[i] = s
            if changed:
                s.amount, s.direction = leg(s, [self.entries[i] for i in s.held]) or (None, None)

        @precondition(lambda self: bool(self.settlements) and bool(self.entries))
        @rule(data=st.data())
        def detach(self, data):
            s = self.draw_settlement(data, useful=lambda s: bool(s.held))
            ids = self.draw_entry_ids(data, s)
            if s.held and data.draw(st.booleans(), label="some it holds"):
                held = [i for i in self.entries if i in s.held]  # in the order written: ids differ run to run
                ids = data.draw(st.lists(st.sampled_from(held), min_size=1, max_size=3, unique=True), label="held ids")
            r = self.call("DELETE", f"/api/ledger_account_settlements/{s.id}/ledger_entries",
                          json={"ledger_entry_ids": ids})
            if s.status != "drafting":
                event("detach: not drafting")
                refused(r, "settlement_not_drafting")
                return
            assert r.status_code == 200, r.text
            released = s.held & set(ids)
            event(f"detach: {'released' if released else 'unchanged'}")
            for i in released:
                s.held.discard(i)
                del self.held_by[i]
            if released:
                s.amount, s.direction = leg(s, [self.entries[i] for i in s.held]) or (None, None)

        @precondition(lambda self: bool(self.settlements))
        @rule(data=st.data())
        def patch_status(self, data):
            s = self.draw_settlement(data, drafting_weight=1)
            to = data.draw(st.sampled_from(["posted", "archived", "pending"]), label="to")
            r = self.call("PATCH", f"/api/ledger_account_settlements/{s.id}", {"status": to})
            allowed = {"drafting": {"pending", "posted", "archived"}, "pending": {"posted", "archived"}}
            if to == s.status:
                event("patch: unchanged")
                assert r.status_code == 200, r.text
            elif to not in allowed.get(s.status, set()):
                event(f"patch: {s.status} -> {to} refused")
                refused(r, "invalid_status_transition")
            elif s.status == "drafting" and to != "archived":
                held = [self.entries[i] for i in s.held]
                if leg(s, held) is None:
                    event("patch: draft's net against the normal balance refused")
                    refused(r, "settlement_balance_negative")
                    return
                if self.settling_overflows(s, leg(s, held)):
                    event("patch: overflow refused")
                    refused(r, "balance_overflow")
                    return
                assert r.status_code == 200, r.text
                event(f"patch: drafting -> {to}")
                self.settle(s, held, to)
            else:
                assert r.status_code == 200, r.text
                event(f"patch: {s.status} -> {to}")
                s.status = to
                if s.txn is not None:
                    s.txn.status = to
                if to == "archived":
                    for i in s.held:
                        del self.held_by[i]
                    s.held = set()
            if r.status_code == 200:
                assert r.json()["status"] == s.status

        # -- what a user sees after every step ------------------------------------------------------------------

        @invariant()
        def settlements_read_as_modelled(self):
            if not self.settlements:
                return
            r = self.call("GET", "/api/ledger_account_settlements", params={"per_page": "100"})
            assert r.status_code == 200, r.text
            got = {x["id"]: x for x in r.json()}
            assert sorted(got) == sorted(s.id for s in self.settlements)
            seen: dict[str, str] = {}
            for s in self.settlements:
                x = got[s.id]
                assert (x["status"], x["amount"], x["settlement_entry_direction"]) == (
                    s.status, s.amount, s.direction), f"{s}: status, amount, direction"
                assert x["ledger_transaction_id"] == (s.txn.id if s.txn else None), f"{s}: its transaction"
                assert (x["settled_ledger_account_id"], x["contra_ledger_account_id"]) == (s.settled.id, s.contra.id)
                assert x["allow_either_direction"] == s.allow_either_direction
                assert parse(x["effective_at_upper_bound"]) == s.upper
                held = self.entry_ids(ledger_account_settlement_id=s.id)
                assert held == sorted(s.held), f"{s}: the entries it holds"
                r = self.call("GET", "/api/ledger_transactions",
                              params={"ledger_account_settlement_id": s.id, "per_page": "100"})
                assert r.status_code == 200, r.text
                assert sorted(x["id"] for x in r.json()) == sorted({self.entries[i].txn.id for i in s.held}), \
                    f"{s}: the transactions it settles"
                for i in held:
                    assert i not in seen, f"entry {i} held by {seen[i]} and {s.id}"
                    seen[i] = s.id
            assert set(seen) == set(self.held_by)
            txns = [s.txn for s in self.settlements if s.txn is not None]
            if txns:
                r = self.call("GET", "/api/ledger_transactions",
                              params={"id[]": [t.id for t in txns], "per_page": "100"})
                assert r.status_code == 200, r.text
                by_id = {x["id"]: x for x in r.json()}
                for t in txns:
                    x = by_id[t.id]
                    assert x["status"] == t.status, f"{t.settlement}: its transaction's status"
                    assert parse(x["effective_at"]) == t.effective_at
                    assert sorted((e["ledger_account_id"], e["direction"], e["amount"], e["status"])
                                  for e in x["ledger_entries"]) == sorted(
                        (e.account.id, e.direction, e.amount, t.status) for e in t.entries)

        @invariant()
        def balances_are_the_entries(self):
            if not self.accounts:
                return
            if hybrid:
                cell.apply([a.id for a in self.accounts])
            r = self.call("GET", "/api/ledger_accounts",
                          params={"id[]": [a.id for a in self.accounts], "per_page": "100"})
            assert r.status_code == 200, r.text
            by_id = {x["id"]: x for x in r.json()}
            for a in self.accounts:
                expected = account_view(sums((e, e.txn.status) for e in a.entries), a)
                assert by_id[a.id]["balances"] == expected, f"{a}: balances"

        def teardown(self):
            if hybrid and self.accounts:
                cell.apply([a.id for a in self.accounts])
            problems = cell.verify(self.tenant)
            assert problems == [], f"invariants violated for {self.tenant}: {problems}"

    return SettlementMachine



def _run(machine, examples: int) -> None:
    run_state_machine_as_test(machine, settings=settings(
        max_examples=examples, stateful_step_count=STEPS, deadline=None, report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


@pytest.mark.timeout(TIMEOUT_S)
def test_settlements_agree_with_the_model(ledger_cell):
    _run(make_machine(ledger_cell), EXAMPLES)


@pytest.mark.timeout(TIMEOUT_S)
def test_settlements_agree_with_the_model_in_hybrid_mode(hybrid_cell):
    # The same rules with queued effects: half the examples (a soak: PROPERTY_EXAMPLES for both).
    _run(make_machine(hybrid_cell, hybrid=True), max(1, EXAMPLES // 2))
