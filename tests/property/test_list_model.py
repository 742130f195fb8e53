"""The list endpoints against a model: a small world of ledgers, accounts (names, currencies, normal balances,
metadata, external ids), categories (accounts put in and taken out, nested) and transactions (pending, posted,
archived; metadata; external ids, free again once archived; effective times backdated and equal; reversals), PATCHed
(names, metadata, descriptions, external ids, statuses, a pending one's entries or effective time replaced, an entry's
metadata), accounts and ledgers deleted, and after any step list queries drawn from the filters Modern Treasury's SDK
sends (id[], ledger_id, currency, name, external_id, normal_balance, metadata[k], balance amounts, created_at /
updated_at / effective_at / effective_date / posted_at bounds, amount, status, status[], direction, ledger_account_id,
ledger_transaction_id, ledger_account_category_id, parent_ledger_account_category_id, reverses_ledger_transaction_id,
show_deleted, order_by), read
page by page with a small per_page: the ids listed across every page must be exactly the ones the model's filter
computes, in the documented order (created_at: the order they were made; effective_at: by effective time, then the
order they were made; desc: reversed), none twice, none missing, also when rows are written between two page fetches
(DESIGN 5: cursors are stable under concurrent inserts); each listed account carries its own balances (current or at
balances[effective_at]). Malformed filter values must be 400 problem+json with a stable code, never a 5xx and never
ignored.

The model keeps its own rows and recomputes every filter from first principles (balances with property_model, never
with cell code). Runs the real app in sync mode as the other models do; an example may lower the bounds under which
the store reads a filter's rows by id, so that its lists take the other path (a walk of the tenant's rows) too.
PROPERTY_EXAMPLES / PROPERTY_STEPS for a soak (~15 s by default; 200 x 40 passed in ~2.5 min)."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest
from harness import ApiMachine
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, precondition, rule, run_state_machine_as_test
from property_model import amounts, rfc3339, sums

from cell.store import accounts as store_accounts
from cell.store import changes as store_changes
from cell.store import entries as store_entries
from cell.store import transactions as store_transactions

UTC = timezone.utc
EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "20"))
STEPS = int(os.environ.get("PROPERTY_STEPS", "25"))
TIMEOUT_S = int(os.environ.get("PROPERTY_TIMEOUT_S", "900"))
ZONES = [timedelta(0), timedelta(hours=5, minutes=30), timedelta(hours=-8)]
BASE = datetime(2026, 3, 10, 0, 0, tzinfo=UTC)
# Effective times: equal ones often, a microsecond apart, a UTC day's edges, backdated days.
OFFSETS = [timedelta(0), timedelta(0), timedelta(microseconds=1), timedelta(hours=1), timedelta(days=-1),
           timedelta(days=-2, hours=23, minutes=59, seconds=59, microseconds=999999), timedelta(days=1)]
NAMES = ["cash", "alice", "bob"]
META_KEYS = ["k", "tier"]
META_VALUES = ["a", "b"]
CATEGORIES = "/api/ledger_account_categories"
BALANCE_FIELDS = ("pending_balance_amount", "posted_balance_amount", "available_balance_amount")
OPS = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b,
       "eq": lambda a, b: a == b}
BALANCE_OPS = {**OPS, "not_eq": lambda a, b: a != b}


# The bounds under which a list reads the rows a filter names by id (a bounded probe first), and past which it walks
# the tenant's rows instead: a world this small is always under them, so an example may lower them all, and its lists
# take the other path, on the same database.
READ_BY_IDS_BOUNDS = [(store_accounts, "READ_BY_IDS_MAX"), (store_changes, "READ_BY_IDS_MAX"),
                      (store_entries, "METADATA_READ_BY_IDS_MAX"), (store_entries, "TRANSACTIONS_READ_BY_IDS_MAX"),
                      (store_transactions, "METADATA_READ_BY_IDS_MAX"),
                      (store_transactions, "ACCOUNTS_READ_BY_IDS_MAX")]


def ts(raw: str) -> datetime:
    return datetime.fromisoformat(raw.replace("Z", "+00:00"))


@dataclass(eq=False)
class Ledger:
    id: str
    seq: int
    metadata: dict
    created_at: datetime
    updated_at: datetime


@dataclass(eq=False)
class Account:
    id: str
    seq: int
    ledger: Ledger
    name: str
    currency: str
    normal: str
    metadata: dict
    created_at: datetime
    updated_at: datetime
    external_id: str | None = None
    entries: list = field(default_factory=list)

    def balances(self, at: datetime | None = None) -> dict[str, int]:
        """Current balances, or as of an effective time (entries at it counted); discarded entries count nowhere."""
        return amounts(sums((e, e.status) for e in self.entries
                            if at is None or e.effective_at <= at), self.normal)


@dataclass(eq=False)
class Category:
    id: str
    seq: int
    ledger: Ledger
    name: str
    currency: str
    metadata: dict
    accounts: set = field(default_factory=set)  # the ids of the accounts it holds directly
    children: list = field(default_factory=list)  # the categories nested directly in it

    def reach(self) -> set[str]:
        """The accounts it holds, directly or through nested categories."""
        return set(self.accounts).union(*(c.reach() for c in self.children))


@dataclass(eq=False)
class Txn:
    id: str
    seq: int
    ledger: Ledger
    status: str
    effective_at: datetime
    metadata: dict
    created_at: datetime
    updated_at: datetime
    posted_at: datetime | None
    external_id: str | None = None
    reverses: Txn | None = None
    reversed_by: Txn | None = None
    entries: list = field(default_factory=list)

    def amount(self) -> int:
        return sum(e.amount for e in self.entries if e.direction == "debit" and not e.discarded)


@dataclass(eq=False)
class Entry:
    id: str
    seq: int
    txn: Txn
    account: Account
    direction: str
    amount: int
    metadata: dict
    effective_at: datetime
    created_at: datetime
    updated_at: datetime
    discarded: bool = False  # replaced by a PATCH of its pending transaction's entries or effective time

    @property
    def status(self) -> str:
        return "archived" if self.discarded else self.txn.status


def merged(old: dict, patch: dict) -> dict:
    """A metadata PATCH: keys set, a key set to "" removed (Modern Treasury's rule)."""
    out = {**old, **patch}
    return {k: v for k, v in out.items() if v != ""}


def metadata_matches(metadata: dict, wanted: dict) -> bool:
    return all(metadata.get(k) == v for k, v in wanted.items())


def make_machine(cell):
    class ListMachine(ApiMachine):
        def __init__(self) -> None:
            super().__init__(cell)
            self.ledgers: list[Ledger] = []
            self.accounts: list[Account] = []
            self.categories: list[Category] = []
            self.txns: list[Txn] = []
            self.entries: list[Entry] = []
            self.seq = 0
            self.on: set[str] = set()  # the filters the query being drawn combines
            self.bounds_saved: list[tuple] = []

        def next_seq(self) -> int:
            self.seq += 1
            return self.seq

        # -- the world -----------------------------------------------------------------------------------------------

        def metadata(self, min_size: int = 0):
            return st.dictionaries(st.sampled_from(META_KEYS), st.sampled_from(META_VALUES), min_size=min_size,
                                   max_size=2)

        def new_ledger(self, metadata: dict) -> None:
            r = self.call("POST", "/api/ledgers", {"name": "books", "metadata": metadata})
            assert r.status_code == 201, r.text
            b = r.json()
            self.ledgers.append(Ledger(b["id"], self.next_seq(), metadata, ts(b["created_at"]), ts(b["updated_at"])))

        def new_account(self, ledger: Ledger, name: str, currency: str, normal: str, metadata: dict,
                        external_id: str | None = None) -> None:
            r = self.call("POST", "/api/ledger_accounts", {"name": name, "ledger_id": ledger.id, "currency": currency,
                                                           "normal_balance": normal, "metadata": metadata,
                                                           "external_id": external_id})
            if external_id is not None and any(a.ledger is ledger and a.external_id == external_id
                                               for a in self.accounts):
                assert r.status_code == 409 and r.json()["code"] == "external_id_taken", r.text
                return
            assert r.status_code == 201, r.text
            b = r.json()
            self.accounts.append(Account(b["id"], self.next_seq(), ledger, name, currency, normal, metadata,
                                         ts(b["created_at"]), ts(b["updated_at"]), external_id))

        @initialize(data=st.data(), n=st.integers(0, 6), bound=st.sampled_from([None, 0, 1, 3]))
        def open_books(self, data, n, bound):
            if bound is not None:
                for module, name in READ_BY_IDS_BOUNDS:
                    self.bounds_saved.append((module, name, getattr(module, name)))
                    setattr(module, name, bound)
            self.new_ledger({"k": "a"})
            self.new_ledger({})
            # Two of each currency in the first ledger and a pair in the second: every account can be posted to.
            for ledger, name, currency, normal, metadata in [
                    (0, "cash", "USD", "debit", {"k": "a"}), (0, "alice", "USD", "credit", {}),
                    (0, "cash", "EUR", "debit", {"tier": "b"}), (0, "bob", "EUR", "credit", {"k": "b"}),
                    (1, "cash", "USD", "debit", {}), (1, "alice", "USD", "credit", {"k": "a", "tier": "a"})]:
                self.new_account(self.ledgers[ledger], name, currency, normal, metadata)
            for ledger, name, currency, metadata in [(0, "ops", "USD", {"k": "a"}), (0, "ops", "USD", {}),
                                                     (0, "fx", "EUR", {"k": "b"}), (1, "ops", "USD", {"k": "a"})]:
                r = self.call("POST", CATEGORIES, {"name": name, "ledger_id": self.ledgers[ledger].id,
                                                   "currency": currency, "normal_balance": "debit",
                                                   "metadata": metadata})
                assert r.status_code == 201, r.text
                self.categories.append(Category(r.json()["id"], self.next_seq(), self.ledgers[ledger], name, currency,
                                                metadata))
            self.post(data, n)  # a few transactions from the start: most lists then have rows to page through

        @precondition(lambda self: len(self.ledgers) < 3)
        @rule(data=st.data())
        def add_ledger(self, data):
            self.new_ledger(data.draw(self.metadata(), label="metadata"))

        @precondition(lambda self: len(self.accounts) < 9)
        @rule(data=st.data())
        def add_account(self, data):
            ledger = data.draw(st.sampled_from(self.ledgers[:2]), label="ledger")
            self.new_account(ledger, data.draw(st.sampled_from(NAMES)), data.draw(st.sampled_from(["USD", "EUR"])),
                             data.draw(st.sampled_from(["debit", "credit"])), data.draw(self.metadata()),
                             data.draw(st.sampled_from([None, "x1", "x2"]), label="external_id"))

        def draw_post(self, data, ledger: Ledger | None = None) -> dict | None:
            a = data.draw(st.sampled_from([a for a in self.accounts if ledger in (None, a.ledger)]), label="debit")
            others = [b for b in self.accounts if b is not a and b.ledger is a.ledger and b.currency == a.currency]
            if not others:
                return None
            b = data.draw(st.sampled_from(others), label="credit")
            amount = data.draw(st.integers(1, 9), label="amount")
            legs = [(a, "debit", amount)]
            if amount > 1 and data.draw(st.booleans(), label="split"):
                cut = data.draw(st.integers(1, amount - 1))
                legs += [(b, "credit", cut), (b, "credit", amount - cut)]
            else:
                legs.append((b, "credit", amount))
            at = BASE + data.draw(st.sampled_from(OFFSETS), label="effective_at")
            status = data.draw(st.sampled_from(["pending", "posted", "archived"]), label="status")
            entry_metadata = [data.draw(self.metadata(), label="entry metadata") for _ in legs]
            return {"ledger": a.ledger, "legs": legs, "at": at, "status": status,
                    "external_id": data.draw(st.sampled_from([None, None, "e1", "e2"]), label="external_id"),
                    "metadata": data.draw(self.metadata(), label="metadata"), "entry_metadata": entry_metadata,
                    "zone": data.draw(st.sampled_from(ZONES), label="zone")}

        def external_id_taken(self, ledger: Ledger, external_id: str | None, but: Txn | None = None) -> bool:
            """Whether another pending or posted transaction of the ledger has this external_id (an archived one's is
            free again)."""
            return external_id is not None and any(
                t.ledger is ledger and t.external_id == external_id and t.status != "archived" and t is not but
                for t in self.txns)

        def write_post(self, p: dict) -> Txn | None:
            body = {"ledger_id": p["ledger"].id, "status": p["status"], "metadata": p["metadata"],
                    "effective_at": rfc3339(p["at"], p["zone"]), "ledger_entries": [
                        {"ledger_account_id": a.id, "direction": d, "amount": x, "metadata": m}
                        for (a, d, x), m in zip(p["legs"], p["entry_metadata"])]}
            if p["external_id"] is not None:
                body["external_id"] = p["external_id"]
            r = self.call("POST", "/api/ledger_transactions", body)
            if p["status"] != "archived" and self.external_id_taken(p["ledger"], p["external_id"]):
                assert r.status_code == 409 and r.json()["code"] == "external_id_taken", r.text
                return None
            assert r.status_code == 201, r.text
            b = r.json()
            t = Txn(b["id"], self.next_seq(), p["ledger"], p["status"], p["at"], p["metadata"], ts(b["created_at"]),
                    ts(b["updated_at"]), ts(b["posted_at"]) if b["posted_at"] else None, p["external_id"])
            assert (t.posted_at is not None) == (t.status == "posted"), b
            self.add_entries(t, b, p["legs"], p["entry_metadata"])
            self.txns.append(t)
            return t

        def add_entries(self, t: Txn, b: dict, legs: list, entry_metadata: list) -> None:
            """The entries of transaction `t` as written (its answer `b` lists them in the order they were: by seq)."""
            assert len(b["ledger_entries"]) == len(legs), b
            for got, (a, d, x), m in zip(b["ledger_entries"], legs, entry_metadata):
                got_leg = (got["ledger_account_id"], got["direction"], got["amount"], got["metadata"])
                assert got_leg == (a.id, d, x, m), b
                e = Entry(got["id"], self.next_seq(), t, a, d, x, m, t.effective_at, ts(got["created_at"]),
                          ts(got["updated_at"]))
                t.entries.append(e)
                a.entries.append(e)
                self.entries.append(e)

        @rule(data=st.data(), n=st.integers(1, 3))
        def post(self, data, n):
            for _ in range(n):
                p = self.draw_post(data)
                if p is not None:
                    self.write_post(p)

        @precondition(lambda self: any(t.status == "pending" for t in self.txns))
        @rule(data=st.data(), to=st.sampled_from(["posted", "archived"]))
        def settle(self, data, to):
            t = data.draw(st.sampled_from([t for t in self.txns if t.status == "pending"]), label="pending")
            r = self.call("PATCH", f"/api/ledger_transactions/{t.id}", {"status": to})
            assert r.status_code == 200, r.text
            b = r.json()
            t.status, t.updated_at = to, ts(b["updated_at"])
            t.posted_at = ts(b["posted_at"]) if b["posted_at"] else None
            assert (t.posted_at is not None) == (to == "posted"), b

        @precondition(lambda self: any(t.status == "pending" for t in self.txns))
        @rule(data=st.data(), what=st.sampled_from(["effective_at", "ledger_entries", "both"]))
        def replace_entries(self, data, what):
            """A PATCH of a pending transaction's entries or effective time: new entries, the old ones discarded."""
            t = data.draw(st.sampled_from([t for t in self.txns if t.status == "pending"]), label="pending")
            live = [e for e in t.entries if not e.discarded]
            legs = [(e.account, e.direction, e.amount) for e in live]
            entry_metadata = [e.metadata for e in live]
            at = BASE + data.draw(st.sampled_from(OFFSETS), label="effective_at") if what != "ledger_entries" else None
            if what == "effective_at" and at == t.effective_at:
                return  # no change
            body = {} if at is None else {"effective_at": rfc3339(at, data.draw(st.sampled_from(ZONES)))}
            if what != "effective_at":
                p = self.draw_post(data, t.ledger)
                if p is None:
                    return
                legs, entry_metadata = p["legs"], p["entry_metadata"]
                body["ledger_entries"] = [{"ledger_account_id": a.id, "direction": d, "amount": x, "metadata": m}
                                          for (a, d, x), m in zip(legs, entry_metadata)]
            r = self.call("PATCH", f"/api/ledger_transactions/{t.id}", body)
            assert r.status_code == 200, r.text
            b = r.json()
            for e in live:
                e.discarded = True
            t.effective_at, t.updated_at = at or t.effective_at, ts(b["updated_at"])
            assert ts(b["effective_at"]) == t.effective_at, b
            self.add_entries(t, b, legs, entry_metadata)

        @precondition(lambda self: any(t.status == "posted" and t.reversed_by is None for t in self.txns))
        @rule(data=st.data())
        def reverse(self, data):
            """A reversal: a new posted transaction, every direction flipped, effective when the original was."""
            t = data.draw(st.sampled_from([t for t in self.txns if t.status == "posted" and t.reversed_by is None]),
                          label="posted")
            r = self.call("POST", f"/api/ledger_transactions/{t.id}/reversal", {})
            assert r.status_code == 201, r.text
            b = r.json()
            assert b["reverses_ledger_transaction_id"] == t.id and b["status"] == "posted", b
            rev = Txn(b["id"], self.next_seq(), t.ledger, "posted", t.effective_at, {}, ts(b["created_at"]),
                      ts(b["updated_at"]), ts(b["posted_at"]), reverses=t)
            live = [e for e in t.entries if not e.discarded]
            self.add_entries(rev, b, [(e.account, "credit" if e.direction == "debit" else "debit", e.amount)
                                      for e in live], [{} for _ in live])  # no entry's metadata copied
            t.reversed_by = rev
            t.updated_at = ts(self.call("GET", f"/api/ledger_transactions/{t.id}").json()["updated_at"])
            self.txns.append(rev)

        @precondition(lambda self: len(self.accounts) > 4 and any(not a.entries and not self.held(a)
                                                                  for a in self.accounts))
        @rule(data=st.data())
        def delete_account(self, data):
            """An account no entry was ever written to, in no category: discarded, gone from every list."""
            a = data.draw(st.sampled_from([a for a in self.accounts if not a.entries and not self.held(a)]),
                          label="account")
            r = self.call("DELETE", f"/api/ledger_accounts/{a.id}")
            assert r.status_code == 200, r.text
            self.accounts.remove(a)

        def held(self, a: Account) -> bool:
            return any(a.id in c.accounts for c in self.categories)

        @precondition(lambda self: len(self.ledgers) > 2)
        @rule()
        def delete_ledger(self):
            """A ledger without accounts or categories (one made after the books were opened): gone from lists."""
            ledger = self.ledgers[-1]
            r = self.call("DELETE", f"/api/ledgers/{ledger.id}")
            assert r.status_code == 200, r.text
            self.ledgers.remove(ledger)

        @rule(data=st.data())
        def patch_entry(self, data):
            live = [e for e in self.entries if not e.discarded]
            if not live:
                return
            e = data.draw(st.sampled_from(live), label="entry")
            patch = data.draw(st.dictionaries(st.sampled_from(META_KEYS), st.sampled_from([*META_VALUES, ""]),
                                              min_size=1, max_size=2), label="metadata")
            r = self.call("PATCH", f"/api/ledger_entries/{e.id}", {"metadata": patch})
            assert r.status_code == 200, r.text
            e.metadata, e.updated_at = merged(e.metadata, patch), ts(r.json()["updated_at"])
            assert r.json()["metadata"] == e.metadata, r.text

        @rule(data=st.data(), add=st.booleans())
        def categorize(self, data, add):
            """An account put in (or taken out of) a category of its ledger and currency, or a category nested in one
            made before it (so never a cycle)."""
            c = data.draw(st.sampled_from(self.categories), label="category")
            fits = [a for a in self.accounts if (a.ledger, a.currency) == (c.ledger, c.currency)]
            parents = [p for p in self.categories[:self.categories.index(c)]
                       if (p.ledger, p.currency) == (c.ledger, c.currency)]
            if parents and data.draw(st.booleans(), label="nest"):
                p = data.draw(st.sampled_from(parents), label="parent")
                r = self.call("PUT" if add else "DELETE", f"{CATEGORIES}/{p.id}/ledger_account_categories/{c.id}")
                assert r.status_code == 204, r.text
                p.children = [x for x in p.children if x is not c] + ([c] if add else [])
            elif fits:
                a = data.draw(st.sampled_from(fits), label="account")
                r = self.call("PUT" if add else "DELETE", f"{CATEGORIES}/{c.id}/ledger_accounts/{a.id}")
                assert r.status_code == 204, r.text
                (c.accounts.add if add else c.accounts.discard)(a.id)

        @precondition(lambda self: self.txns)
        @rule(data=st.data())
        def patch_transaction(self, data):
            t = data.draw(st.sampled_from(self.txns), label="txn")
            patch = data.draw(st.dictionaries(st.sampled_from(META_KEYS), st.sampled_from([*META_VALUES, ""]),
                                              min_size=1, max_size=2), label="metadata")
            body = {"metadata": patch}
            if data.draw(st.booleans()):
                body["description"] = data.draw(st.sampled_from(["x", "y", None]))
            external_id = t.external_id
            if data.draw(st.booleans(), label="external_id too"):
                external_id = body["external_id"] = data.draw(st.sampled_from([None, "e1", "e2"]), label="external_id")
            r = self.call("PATCH", f"/api/ledger_transactions/{t.id}", body)
            if t.status != "archived" and self.external_id_taken(t.ledger, external_id, but=t):
                assert r.status_code == 409 and r.json()["code"] == "external_id_taken", r.text
                return  # nothing changed
            assert r.status_code == 200, r.text
            t.metadata, t.updated_at = merged(t.metadata, patch), ts(r.json()["updated_at"])
            t.external_id = external_id
            assert (r.json()["metadata"], r.json()["external_id"]) == (t.metadata, t.external_id), r.text

        @rule(data=st.data())
        def patch_account(self, data):
            a = data.draw(st.sampled_from(self.accounts), label="account")
            body = {}
            if data.draw(st.booleans(), label="rename"):
                body["name"] = data.draw(st.sampled_from(NAMES))
            patch = data.draw(st.dictionaries(st.sampled_from(META_KEYS), st.sampled_from([*META_VALUES, ""]),
                                              max_size=2), label="metadata")
            if patch or not body:
                body["metadata"] = patch
            r = self.call("PATCH", f"/api/ledger_accounts/{a.id}", body)
            assert r.status_code == 200, r.text
            a.name = body.get("name", a.name)
            a.metadata, a.updated_at = merged(a.metadata, patch), ts(r.json()["updated_at"])
            assert (r.json()["name"], r.json()["metadata"]) == (a.name, a.metadata)

        @rule(data=st.data())
        def patch_ledger(self, data):
            ledger = data.draw(st.sampled_from(self.ledgers), label="ledger")
            patch = data.draw(st.dictionaries(st.sampled_from(META_KEYS), st.sampled_from([*META_VALUES, ""]),
                                              min_size=1, max_size=2), label="metadata")
            r = self.call("PATCH", f"/api/ledgers/{ledger.id}", {"metadata": patch})
            assert r.status_code == 200, r.text
            ledger.metadata, ledger.updated_at = merged(ledger.metadata, patch), ts(r.json()["updated_at"])
            assert r.json()["metadata"] == ledger.metadata

        # -- drawing a query -------------------------------------------------------------------------------------------

        def draw_ids(self, data, rows: list, params: dict, preds: list) -> None:
            if rows and "id" in self.on:
                chosen = data.draw(st.lists(st.sampled_from(rows), min_size=1, max_size=3), label="id[]")
                ids = [x.id for x in chosen]
                if data.draw(st.booleans(), label="and an unknown id"):
                    ids.append(str(uuid.UUID(int=len(ids))))
                params["id[]"] = ids
                preds.append(lambda x, s=set(ids): x.id in s)

        def draw_equal(self, data, params: dict, preds: list, name: str, choices: list, key, on: str = "") -> None:
            """`name=value`, a value drawn from `choices` (rows of the model: their id), when the query is on it (or
            on `on`): the rows whose `key` is that value (that row)."""
            if choices and (on or name) in self.on:
                value = data.draw(st.sampled_from(choices), label=name)
                params[name] = getattr(value, "id", value)
                preds.append(lambda x: key(x) is value if hasattr(value, "id") else key(x) == value)

        def draw_metadata(self, data, params: dict, preds: list, meta) -> None:
            if "metadata" in self.on:
                wanted = data.draw(self.metadata(min_size=1), label="metadata filter")
                for k, v in wanted.items():
                    params[f"metadata[{k}]"] = v
                preds.append(lambda x: metadata_matches(meta(x), wanted))

        def draw_times(self, data, params: dict, preds: list, name: str, rows: list, attr) -> None:
            """Bounds on a time: at, or a microsecond beside, a value some row has, in a drawn zone."""
            known = sorted({attr(x) for x in rows if attr(x) is not None})
            if not known or name not in self.on:
                return
            n = data.draw(st.sampled_from([1, 1, 2]), label=f"{name} bounds")
            ops = data.draw(st.lists(st.sampled_from(sorted(OPS)), min_size=n, max_size=n, unique=True), label="ops")
            for op in ops:
                at = data.draw(st.sampled_from(known), label=f"{name}[{op}]")
                at += data.draw(st.sampled_from([timedelta(0), timedelta(0), timedelta(microseconds=1),
                                                 timedelta(microseconds=-1)]))
                params[f"{name}[{op}]"] = rfc3339(at, data.draw(st.sampled_from(ZONES)))
                preds.append(lambda x, op=op, at=at: attr(x) is not None and OPS[op](attr(x), at))

        def draw_category(self, data, params: dict, preds: list, account) -> None:
            """ledger_account_category_id: rows of the accounts the category reaches now (directly or nested)."""
            if "category" in self.on:
                c = data.draw(st.sampled_from(self.categories), label="ledger_account_category_id")
                params["ledger_account_category_id"] = c.id
                preds.append(lambda x: account(x, c.reach()))

        def draw_dates(self, data, params: dict, preds: list, rows: list) -> None:
            """effective_date[op]=YYYY-MM-DD: the UTC day of the effective time."""
            if not rows or "effective_date" not in self.on:
                return
            op = data.draw(st.sampled_from(sorted(OPS)), label="effective_date op")
            day = data.draw(st.sampled_from(sorted({x.effective_at.astimezone(UTC).date() for x in rows})))
            day += timedelta(days=data.draw(st.sampled_from([0, 0, 1, -1])))
            params[f"effective_date[{op}]"] = day.isoformat()
            preds.append(lambda x: OPS[op](x.effective_at.astimezone(UTC).date(), day))

        def draw_amounts(self, data, params: dict, preds: list, rows: list, attr) -> None:
            if not rows or "amount" not in self.on:
                return
            op = data.draw(st.sampled_from(sorted(OPS)), label="amount op")
            bound = data.draw(st.sampled_from(sorted({attr(x) for x in rows})), label="amount bound")
            params[f"amount[{op}]"] = str(bound)
            preds.append(lambda x: OPS[op](attr(x), bound))

        def draw_status(self, data, params: dict, preds: list, many_ok: bool = True) -> None:
            how = data.draw(st.integers(0, 1), label="status or status[]") if "status" in self.on else -1
            if how == 0:
                s = data.draw(st.sampled_from(["pending", "posted", "archived"]), label="status")
                params["status"] = s
                preds.append(lambda x: x.status == s)
            elif how == 1 and many_ok:
                ss = data.draw(st.lists(st.sampled_from(["pending", "posted", "archived"]), min_size=1, max_size=3,
                                        unique=True), label="status[]")
                params["status[]"] = ss
                preds.append(lambda x: x.status in ss)

        def draw_order(self, data, params: dict) -> tuple[str, bool]:
            choice = data.draw(st.sampled_from([None, ("created_at", "asc"), ("created_at", "desc"),
                                                ("effective_at", "asc"), ("effective_at", "desc")]), label="order_by")
            if choice is None:
                return "created_at", False
            params[f"order_by[{choice[0]}]"] = choice[1]
            return choice[0], choice[1] == "desc"

        @staticmethod
        def ordered(rows: list, order_by: str, descending: bool) -> list[str]:
            key = (lambda x: (x.effective_at, x.seq)) if order_by == "effective_at" else (lambda x: x.seq)
            return [x.id for x in sorted(rows, key=key, reverse=descending)]

        # -- reading every page ----------------------------------------------------------------------------------------

        def pages(self, path: str, params: dict, per_page: int | None, between=None) -> list[dict]:
            """Every page's rows under `params`, per_page at a time; `between()` runs after the first page when more
            follow. per_page None: the default, 25."""
            listed, cursor, first = [], None, True
            while True:
                r = self.call("GET", path, params={**params, **({"per_page": str(per_page)} if per_page else {}),
                                                   **({"after_cursor": cursor} if cursor else {})})
                assert r.status_code == 200, f"{path} {params}: {r.text}"
                per_page = per_page or 25
                assert r.headers.get("x-per-page") == str(per_page)
                page = r.json()
                assert len(page) <= per_page, f"{len(page)} rows in a page of {per_page}"
                listed += page
                cursor = r.headers.get("x-after-cursor")
                if cursor:
                    assert len(page) == per_page, "a cursor after a short page"
                if not first and between is None:
                    assert page, "a cursor led to an empty page"
                if first and between is not None and cursor:  # a write between two pages (none after the last)
                    between()
                first = False
                if not cursor:
                    return listed
                assert len(listed) <= 200, "the pages never end"

        def check(self, path: str, params: dict, rows: list, preds: list, order=("created_at", False),
                  data=None) -> list:
            per_page = data.draw(st.sampled_from([1, 2, 2, 3, 3, 100, None]), label="per_page")
            matching = [x for x in rows if all(p(x) for p in preds)]
            expected = self.ordered(matching, *order)
            rows = self.pages(path, params, per_page)
            listed = [x["id"] for x in rows]
            event(f"{path}: {'empty' if not expected else 'some'}")
            assert listed == expected, f"GET {path} {params} per_page={per_page}: listed {listed}, model {expected}"
            return rows

        # -- the lists -------------------------------------------------------------------------------------------------

        @rule(data=st.data(), queries=st.integers(1, 3))
        def list_ledgers(self, data, queries):
            for _ in range(queries):
                self.check_ledgers(data)

        def check_ledgers(self, data):
            self.choose(data, ["id", "metadata", "updated_at"])
            params, preds = {}, []
            self.draw_ids(data, self.ledgers, params, preds)
            self.draw_metadata(data, params, preds, lambda x: x.metadata)
            self.draw_times(data, params, preds, "updated_at", self.ledgers, lambda x: x.updated_at)
            self.check("/api/ledgers", params, self.ledgers, preds, data=data)

        @rule(data=st.data(), queries=st.integers(1, 3))
        def list_categories(self, data, queries):
            for _ in range(queries):
                self.check_categories(data)

        def check_categories(self, data):
            self.choose(data, ["id", "ledger_id", "currency", "name", "metadata", "ledger_account_id", "parent"])
            params, preds = {}, []
            self.draw_ids(data, self.categories, params, preds)
            self.draw_equal(data, params, preds, "ledger_id", self.ledgers, lambda x: x.ledger)
            self.draw_equal(data, params, preds, "currency", ["USD", "EUR"], lambda x: x.currency)
            self.draw_equal(data, params, preds, "name", ["ops", "fx", "none"], lambda x: x.name)
            self.draw_metadata(data, params, preds, lambda x: x.metadata)
            if "ledger_account_id" in self.on:
                a = data.draw(st.sampled_from(self.accounts), label="ledger_account_id")
                params["ledger_account_id"] = a.id
                preds.append(lambda x: a.id in x.reach())
            if "parent" in self.on:
                parent = data.draw(st.sampled_from(self.categories), label="parent_ledger_account_category_id")
                params["parent_ledger_account_category_id"] = parent.id
                preds.append(lambda x: x in parent.children)
            self.check(CATEGORIES, params, self.categories, preds, data=data)

        def choose(self, data, kinds: list[str]) -> None:
            """The filters a query combines: none, one, or a few (more would mostly find nothing)."""
            n = data.draw(st.sampled_from([0, 1, 1, 1, 2, 2, 3]), label="how many filters")
            self.on = set(data.draw(st.lists(st.sampled_from(kinds), min_size=n, max_size=n, unique=True),
                                    label="filters"))

        def account_query(self, data) -> tuple[dict, list]:
            self.choose(data, ACCOUNT_FILTERS)
            params, preds = {}, []
            self.draw_ids(data, self.accounts, params, preds)
            self.draw_equal(data, params, preds, "ledger_id", self.ledgers, lambda x: x.ledger)
            self.draw_equal(data, params, preds, "currency", ["USD", "EUR", "GBP"], lambda x: x.currency)
            if "name" in self.on:
                names = data.draw(st.lists(st.sampled_from([*NAMES, "nobody"]), min_size=1, max_size=2, unique=True),
                                  label="name[]")
                params["name[]"] = names
                preds.append(lambda x: x.name in names)
            self.draw_equal(data, params, preds, "external_id", ["x1", "x2", "x3"], lambda x: x.external_id)
            self.draw_equal(data, params, preds, "normal_balance", ["debit", "credit"], lambda x: x.normal)
            self.draw_metadata(data, params, preds, lambda x: x.metadata)
            self.draw_category(data, params, preds, lambda x, reached: x.id in reached)
            for name in ("created_at", "updated_at"):
                self.draw_times(data, params, preds, name, self.accounts, lambda x, n=name: getattr(x, n))
            if "balance" in self.on:
                fld = data.draw(st.sampled_from(["pending_balance_amount", "posted_balance_amount",
                                                 "available_balance_amount"]), label="balance")
                op = data.draw(st.sampled_from(sorted(BALANCE_OPS)), label="balance op")
                known = sorted({a.balances()[fld] for a in self.accounts})
                bound = data.draw(st.sampled_from(known) | st.integers(-3, 3), label="balance bound")
                params[f"{fld}[{op}]"] = str(bound)
                preds.append(lambda x: BALANCE_OPS[op](x.balances()[fld], bound))
            return params, preds

        @rule(data=st.data(), queries=st.integers(1, 3))
        def list_accounts(self, data, queries):
            for _ in range(queries):
                self.check_accounts(data)

        def check_accounts(self, data):
            params, preds = self.account_query(data)
            at = None
            if data.draw(st.integers(0, 3), label="balances[effective_at]") == 0:
                at = BASE + data.draw(st.sampled_from(OFFSETS), label="at")
                params["balances[effective_at]"] = rfc3339(at, data.draw(st.sampled_from(ZONES)))
            by_id = {a.id: a for a in self.accounts}
            for row in self.check("/api/ledger_accounts", params, self.accounts, preds, data=data):
                # Every account of every page with its own balances (current, or as of the time asked for).
                got = {k: row["balances"][k.removesuffix("_amount")]["amount"] for k in BALANCE_FIELDS}
                assert got == by_id[row["id"]].balances(at), f"balances of {row['id']} as of {at}: {row['balances']}"

        def transaction_query(self, data) -> tuple[dict, list, tuple]:
            self.choose(data, TRANSACTION_FILTERS)
            params, preds = {}, []
            self.draw_ids(data, self.txns, params, preds)
            self.draw_equal(data, params, preds, "ledger_id", self.ledgers, lambda x: x.ledger)
            if "ledger_account_id" in self.on:
                a = data.draw(st.sampled_from(self.accounts), label="ledger_account_id")
                params["ledger_account_id"] = a.id
                preds.append(lambda x: any(e.account is a and not e.discarded for e in x.entries))
            self.draw_equal(data, params, preds, "external_id", ["e1", "e2", "e3"], lambda x: x.external_id)
            self.draw_equal(data, params, preds, "reverses_ledger_transaction_id", self.txns, lambda x: x.reverses,
                            on="reverses")
            self.draw_status(data, params, preds)
            self.draw_metadata(data, params, preds, lambda x: x.metadata)
            self.draw_category(data, params, preds, lambda x, reached: any(
                e.account.id in reached and not e.discarded for e in x.entries))
            for name in ("effective_at", "posted_at", "updated_at"):
                self.draw_times(data, params, preds, name, self.txns, lambda x, n=name: getattr(x, n))
            self.draw_dates(data, params, preds, self.txns)
            self.draw_amounts(data, params, preds, self.txns, Txn.amount)
            return params, preds, self.draw_order(data, params)

        @rule(data=st.data(), queries=st.integers(1, 3))
        def list_transactions(self, data, queries):
            for _ in range(queries):
                self.check_transactions(data)

        def check_transactions(self, data):
            params, preds, order = self.transaction_query(data)
            self.check("/api/ledger_transactions", params, self.txns, preds, order, data=data)

        @rule(data=st.data(), queries=st.integers(1, 3))
        def list_entries(self, data, queries):
            for _ in range(queries):
                self.check_entries(data)

        def check_entries(self, data):
            params, preds, order = self.entry_query(data)
            self.check("/api/ledger_entries", params, self.entries, preds, order, data=data)

        def entry_query(self, data) -> tuple[dict, list, tuple]:
            self.choose(data, ENTRY_FILTERS)
            params, preds = {}, []
            self.draw_ids(data, self.entries, params, preds)
            self.draw_equal(data, params, preds, "ledger_account_id", self.accounts, lambda x: x.account)
            self.draw_equal(data, params, preds, "ledger_transaction_id", self.txns, lambda x: x.txn)
            self.draw_equal(data, params, preds, "direction", ["debit", "credit"], lambda x: x.direction)
            self.draw_status(data, params, preds)
            self.draw_metadata(data, params, preds, lambda x: x.metadata)
            self.draw_category(data, params, preds, lambda x, reached: x.account.id in reached)
            for name in ("effective_at", "updated_at"):
                self.draw_times(data, params, preds, name, self.entries, lambda x, n=name: getattr(x, n))
            self.draw_dates(data, params, preds, self.entries)
            self.draw_amounts(data, params, preds, self.entries, lambda x: x.amount)
            if "show_deleted" in self.on:
                params["show_deleted"] = "true"
            else:
                preds.append(lambda x: not x.discarded)
            order = self.draw_order(data, params)
            if data.draw(st.booleans(), label="show_balances"):
                params["show_balances"] = "true"
            return params, preds, order

        @rule(data=st.data(), of=st.sampled_from(["transactions", "entries", "accounts"]))
        def list_while_writing(self, data, of):
            """A transaction posted (or an account made) between the first page and the next: every row there before
            is listed once, in order; the new rows at most once, where they sort (always, ordered by creation
            ascending)."""
            if of == "accounts":
                params, preds = self.account_query(data)
                order, rows = ("created_at", False), self.accounts
                a = data.draw(st.sampled_from(self.accounts), label="like")
                write = lambda: self.new_account(a.ledger, a.name, a.currency, a.normal, a.metadata)  # noqa: E731
            else:
                p = self.draw_post(data)
                if p is None:
                    return
                rows = self.txns if of == "transactions" else self.entries
                params, preds, order = self.transaction_query(data) if of == "transactions" else self.entry_query(data)
                write = lambda: self.write_post(p)  # noqa: E731
            before = [x for x in rows if all(f(x) for f in preds)]
            known = set(map(id, rows))
            listed = [x["id"] for x in self.pages(f"/api/ledger_{of}", params, data.draw(
                st.integers(1, 2), label="per_page"), between=write)]
            new = [x for x in rows if id(x) not in known]
            after = self.ordered(before + [x for x in new if all(f(x) for f in preds)], *order)
            assert len(listed) == len(set(listed)), f"listed twice: {listed}"
            assert [i for i in listed if i not in {x.id for x in new}] == self.ordered(before, *order), \
                f"{params}: {listed} misses or misorders {self.ordered(before, *order)}"
            assert [i for i in after if i in set(listed)] == listed, f"{params}: {listed} not in the order {after}"
            if order == ("created_at", False):
                assert listed == after, f"{params}: the rows written while paging are missing: {listed}"

        # -- malformed queries ---------------------------------------------------------------------------------------

        @rule(data=st.data())
        def malformed(self, data):
            path, params = data.draw(st.sampled_from(MALFORMED), label="malformed")
            r = self.call("GET", path, params=params)
            assert r.status_code == 400, f"{path} {params}: {r.status_code} {r.text}"
            assert r.headers["content-type"].startswith("application/problem+json"), r.headers
            body = r.json()
            assert body["status"] == 400 and body["code"] in STABLE_CODES, body

        @rule(data=st.data())
        def cursor_of_another_list(self, data):
            """A cursor is bound to its list (and its order): another list's is 400 invalid_cursor."""
            src, dst = data.draw(st.permutations(["/api/ledger_accounts", "/api/ledgers"]), label="lists")
            r = self.call("GET", src, params={"per_page": "1"})
            cursor = r.headers.get("x-after-cursor")
            assert cursor, r.headers
            r = self.call("GET", dst, params={"after_cursor": cursor})
            assert r.status_code == 400 and r.json()["code"] == "invalid_cursor", r.text

        def teardown(self):
            for module, name, value in self.bounds_saved:
                setattr(module, name, value)
            assert self.cell.verify(self.tenant) == []

    return ListMachine


ACCOUNT_FILTERS = ["id", "ledger_id", "currency", "name", "normal_balance", "metadata", "created_at", "updated_at",
                   "balance", "category", "external_id"]
TRANSACTION_FILTERS = ["id", "ledger_id", "ledger_account_id", "status", "metadata", "effective_at", "posted_at",
                       "updated_at", "effective_date", "amount", "category", "external_id", "reverses"]
ENTRY_FILTERS = ["id", "ledger_account_id", "ledger_transaction_id", "direction", "status", "metadata", "effective_at",
                 "updated_at", "effective_date", "amount", "show_deleted", "category"]
STABLE_CODES = {"invalid_parameter", "unknown_parameter", "invalid_cursor", "timestamp_out_of_range",
                "duplicate_parameter"}
L, A, T, E = "/api/ledgers", "/api/ledger_accounts", "/api/ledger_transactions", "/api/ledger_entries"
MALFORMED = [
    (p, q) for p in (L, A, T, E) for q in (
        {"per_page": "0"}, {"per_page": "101"}, {"per_page": "ten"}, {"per_page": "1.5"},
        {"after_cursor": "not-a-cursor"}, {"id[]": "42"}, {"updated_at[gte]": "yesterday"},
        {"updated_at[gte]": "2026-01-01T00:00:00"}, {"updated_at[since]": "2026-01-01T00:00:00Z"},
        {"updated_at[gte]": "0001-01-01T00:00:00Z"}, {"no_such_filter": "x"})
] + [
    (A, {"ledger_id": "nope"}), (A, {"normal_balance": "sideways"}), (A, {"created_at[lt]": "2026-13-01T00:00:00Z"}),
    (A, {"available_balance_amount[gte]": "1.5"}), (A, {"posted_balance_amount[above]": "0"}),
    (A, {"pending_balance_amount[eq]": "x"}), (A, {"balances[effective_at]": "soon"}),
    (A, {"ledger_account_category_id": "x"}),
    (T, {"status": "done"}), (T, {"status[]": "done"}), (T, {"ledger_account_id": "1"}),
    (T, {"order_by[amount]": "asc"}), (T, {"order_by[effective_at]": "up"}),
    (T, {"order_by[effective_at]": "asc", "order_by[created_at]": "desc"}), (T, {"amount[gte]": "-1"}),
    (T, {"amount[gte]": "one"}), (T, {"effective_date[gte]": "2026-02-30"}), (T, {"posted_at[eq]": "now"}),
    (T, {"effective_at[gte]": "9999-01-01T00:00:00Z"}),
    (E, {"direction": "up"}), (E, {"status": "void"}), (E, {"ledger_transaction_id": "x"}),
    (E, {"show_balances": "maybe"}), (E, {"show_deleted": "yes please"}), (E, {"as_of_lock_version": "1"}),
    (E, {"order_by[seq]": "asc"}), (E, {"amount[lt]": "1e3"}), (E, {"effective_date[eq]": "03/10/2026"}),
    (E, {"ledger_account_lock_version[gte]": "-1"}),
]


@pytest.mark.timeout(TIMEOUT_S)
def test_lists_agree_with_the_model(ledger_cell):
    run_state_machine_as_test(make_machine(ledger_cell), settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
