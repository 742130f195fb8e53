"""The event stream (GET /api/events, /api/events/{id}) and the webhook deliveries made from it, against a model:
random writes of one tenant through the HTTP API of a real cell, in sync and in hybrid mode, each write's events
predicted, the stream read back after every step.

Writes (each now and then refused, and the POSTs now and then under an Idempotency-Key, replayed later): ledgers and
accounts created and PATCHed; empty ledgers deleted; accounts deleted (refused while they have entries or a
monitor or category holds them); categories created, described, deleted, made to hold an account; balance monitors
created, described and deleted (on a condition that never holds: test_monitor_model.py covers .triggered and
.resolved); statements created; settlements created (pending, posted or drafting; refused as their own contra or
against the normal balance) and their status changed along the lifecycle (the status they have: no change; a final
one's change: refused);
transactions created pending or posted (unbalanced: refused), posted or archived (from a final status: refused; with
new metadata in the same PATCH now and then), their metadata PATCHed, their entries replaced while pending, partly
posted, reversed; bulk requests (creates, with refused resources; updates posting pending transactions) processed by
the worker's code; webhook endpoints registered; in hybrid mode a worker step applying every queued effect.

The model (the README's table of events): each accepted change writes its events in order, `data` the object as the
write answered it, and for a transaction also as GET shows it right then. Three choices the README states and
Modern Treasury's docs and SDK types leave open, checked as the cell makes them:
  - a refused write, a replay under an Idempotency-Key and a PATCH that changes nothing (the same name, metadata,
    description or status) write no event; a category's membership change writes none either;
  - a transaction created with show_resulting_ledger_account_balances: its event's entries carry no resulting
    balances (the requester's view, as the answer shows them, not the object's: GET shows none either);
  - a partial post's transaction takes the pending one's metadata and description when the request gives none.
A worker's apply of queued effects writes no event: the posting wrote its events, once.

After every step (the tenant's events positioned first, as the sequencer would), what a consumer sees:
  (1) the whole stream is exactly the model's events in order: name, resource, entity id, data; each once, and an
      event's id and event_time never change; listed at a small per_page, no gap and no duplicate across pages;
  (2) a consumer following X-After-Cursor from an earlier step sees exactly the events made since, in order (its
      cursor stays valid while new events arrive);
  (3) a filtered list (entity_id, event_name, resource, event_time_start/_end in any time zone, each drawn from what
      exists and what does not) is exactly the model's events that match, in order;
  (4) GET /api/events/{id} is the listed event; another tenant's event id, and an unknown one, are 404;
  (5) each webhook endpoint has exactly one delivery per event it wants made after its registration, in stream
      order (the deliverer's fan-out, called here as the worker calls it).
PROPERTY_EXAMPLES / PROPERTY_STEPS make a longer soak (100 examples x 40 steps per mode: ~2.5 min).
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from harness import ApiMachine, Cell, every_page, open_worked_cell
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule, run_state_machine_as_test

from cell.store import bulk as bulk_store
from cell.store import webhooks as webhook_store
from worker import bulk as worker_bulk

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "10"))
STEPS = int(os.environ.get("PROPERTY_STEPS", "40"))
US = timedelta(microseconds=1)
SETTLE_S = 5.0
ZONES = [timedelta(0), timedelta(hours=5, minutes=30), timedelta(hours=-8)]
PUBLIC = "https://93.184.216.34/hooks"  # never called: nothing here attempts a delivery


@pytest.fixture(scope="module", params=["sync", "hybrid"])
def event_cell(make_database, request):
    """The app in a posting mode (hybrid without a queue: a queued effect is applied only by the machine's worker
    step), on a database of its own (a bulk request's claim takes any tenant's), and the workers' bulk settings."""
    mode = request.param
    url = make_database(f"event_model_{mode}")
    with open_worked_cell(url, posting_mode=mode, tenant_prefix="ev", pool_max=2, bulk_chunk_size=2,
                          bulk_chunks_at_once=1, bulk_lease_s=600.0, bulk_attempts_max=2) as worked:
        yield (*worked, mode == "hybrid")


@dataclass
class Expected:
    resource: str
    event_name: str
    entity_id: str
    data: dict
    id: str | None = None  # as first listed: never changes after
    event_time: str | None = None


@dataclass
class Txn:
    id: str
    status: str
    metadata: dict
    legs: tuple[str, str, int]  # debit account, credit account, amount
    reversed: bool = False


def time_of(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def iso(t: datetime, offset: timedelta = timedelta(0)) -> str:
    """`t` written in the zone of `offset` (the API compares instants, not wall-clock times)."""
    return t.astimezone(timezone(offset)).isoformat().replace("+00:00", "Z")


def make_machine(cell: Cell, pool, worker_settings, hybrid: bool):
    class EventMachine(ApiMachine):
        def __init__(self) -> None:
            super().__init__(cell)
            self.expected: list[Expected] = []
            self.ledgers: list[dict] = []  # {id, name, metadata}
            self.accounts: list[dict] = []  # {id, ledger, currency, metadata}
            self.txns: list[Txn] = []
            self.replays: list[tuple[str, dict, str, dict]] = []  # (path, body, key, first answer)
            self.followers: list[tuple[str | None, int]] = []  # (cursor, events seen through it)
            self.others: list[str] = []  # event ids of another tenant
            self.monitors: list[dict] = []
            self.made = 0
            self.categories: list[dict] = []
            self.settlements: list[dict] = []
            self.endpoints: list[tuple[str, set[str], int]] = []  # (id, names wanted, events made before it)

        # -- requests -----------------------------------------------------------------------------------------

        def send(self, method: str, path: str, body=None, key: str | None = None, params=None):
            r = self.cell.client.request(method, path, json=body, params=params, auth=self.auth,
                                         headers={"Idempotency-Key": key} if key else None)
            assert r.status_code < 500, f"{method} {path}: {r.status_code} {r.text}"
            if r.status_code >= 400:
                assert r.headers["content-type"].startswith("application/problem+json"), r.text
                assert r.json().get("code"), r.text
            return r

        def created(self, path: str, body: dict, resource: str, key: str | None = None) -> dict:
            r = self.send("POST", path, body, key)
            assert r.status_code == 201, r.text
            got = r.json()
            self.emit(resource, f"{resource_name(resource)}.created", got)
            if key:
                self.replays.append((path, body, key, got))
            return got

        def emit(self, resource: str, name: str, data: dict, read_now: bool = True) -> None:
            """An event the model expects, `data` a write's answer; a transaction's is also what GET shows now
            (`read_now`), but after a bulk request's worker (its entries may have been applied since)."""
            if resource == "ledger_transaction":
                data = as_read(data)
                r = self.send("GET", f"/api/ledger_transactions/{data['id']}")
                assert r.status_code == 200 and (not read_now or r.json() == data), diff(r.json(), data)
            self.expected.append(Expected(resource, name, data["id"], data))

        def refused(self, r) -> None:
            assert 400 <= r.status_code < 500, r.text
            event(f"refused {r.status_code} {r.json()['code']}")

        # -- writes -------------------------------------------------------------------------------------------

        @initialize(keyed=st.booleans())
        def open_books(self, keyed):
            ledger = self.created("/api/ledgers", {"name": "books"}, "ledger", "l0" if keyed else None)
            self.ledgers.append({"id": ledger["id"], "name": "books", "metadata": {}})
            for i, (normal, currency) in enumerate([("debit", "USD"), ("credit", "USD"), ("credit", "EUR")]):
                a = self.created("/api/ledger_accounts", {"name": f"a{i}", "ledger_id": ledger["id"],
                                                          "normal_balance": normal, "currency": currency},
                                 "ledger_account")
                self.accounts.append({"id": a["id"], "currency": currency, "metadata": {}, "entries": 0,
                                      "watched": 0})
            # Another tenant with events of its own: never listed here, its ids 404 here.
            other, auth = cell.new_tenant()
            r = cell.client.request("POST", "/api/ledgers", json={"name": "theirs"}, auth=auth)
            assert r.status_code == 201, r.text
            self.settle_events(other)
            r = cell.client.request("GET", "/api/events", auth=auth)
            assert r.status_code == 200 and len(r.json()) == 1, r.text
            self.others = [e["id"] for e in r.json()]

        @rule(ok=st.booleans(), keyed=st.booleans())
        def create_ledger(self, ok, keyed):
            if not ok:
                self.refused(self.send("POST", "/api/ledgers", {"name": 7}))
                return
            n = self.made = self.made + 1  # never len(ledgers): a deleted one's name and key stay used
            got = self.created("/api/ledgers", {"name": f"l{n}"}, "ledger", f"l{n}" if keyed else None)
            self.ledgers.append({"id": got["id"], "name": f"l{n}", "metadata": {}})

        @rule(ok=st.booleans(), keyed=st.booleans(), currency=st.sampled_from(["USD", "EUR"]))
        def create_account(self, ok, keyed, currency):
            n = self.made = self.made + 1  # never len(accounts): a deleted one's name and key stay used
            body = {"name": f"a{n}", "ledger_id": self.ledgers[0]["id"] if ok else str(uuid.uuid4()),
                    "normal_balance": "credit", "currency": currency}
            if not ok:
                self.refused(self.send("POST", "/api/ledger_accounts", body))
                return
            got = self.created("/api/ledger_accounts", body, "ledger_account", f"a{n}" if keyed else None)
            self.accounts.append({"id": got["id"], "currency": currency, "metadata": {}, "entries": 0, "watched": 0})

        @rule(ok=st.booleans())
        def create_category(self, ok):
            body = {"name": "c", "ledger_id": self.ledgers[0]["id"] if ok else str(uuid.uuid4()),
                    "currency": "USD", "normal_balance": "debit"}
            if ok:
                got = self.created("/api/ledger_account_categories", body, "ledger_account_category")
                self.categories.append({"id": got["id"], "description": None, "deleted": False})
            else:
                self.refused(self.send("POST", "/api/ledger_account_categories", body))

        @precondition(lambda self: self.categories)
        @rule(data=st.data(), what=st.sampled_from(["describe", "describe", "delete", "hold"]),
              value=st.sampled_from(["x", "y"]))
        def change_category(self, data, what, value):
            """A category described (the same description: no change), deleted, or made to hold a USD account (a
            membership change: no event, README)."""
            c = data.draw(st.sampled_from(self.categories), label="category")
            path = f"/api/ledger_account_categories/{c['id']}"
            if what == "hold":
                usd = [a for a in self.accounts if a["currency"] == "USD"]
                if not usd:
                    return
                a = data.draw(st.sampled_from(usd), label="account")
                r = self.send("PUT", f"{path}/ledger_accounts/{a['id']}")
                assert r.status_code == (404 if c["deleted"] else 204), r.text
                if not c["deleted"]:
                    a["watched"] += 1  # a live category holds it: not deleted (ledger_account_in_use)
                    c.setdefault("holds", []).append(a)
                return
            if c["deleted"]:
                self.refused(self.send("DELETE" if what == "delete" else "PATCH", path,
                                       None if what == "delete" else {"description": value}))
                return
            if what == "delete":
                r = self.send("DELETE", path)
                assert r.status_code == 200, r.text
                c["deleted"] = True
                for a in c.pop("holds", []):
                    a["watched"] -= 1
                self.emit("ledger_account_category", "ledger_account_category.deleted", r.json())
                return
            r = self.send("PATCH", path, {"description": value})
            assert r.status_code == 200, r.text
            if c["description"] != value:
                c["description"] = value
                self.emit("ledger_account_category", "ledger_account_category.updated", r.json())

        @precondition(lambda self: self.accounts)
        @rule(data=st.data(), ok=st.booleans())
        def create_monitor(self, data, ok):
            a = data.draw(st.sampled_from(self.accounts), label="account")
            # Never true (a lock version is never negative): no .triggered to predict here (test_monitor_model.py's)
            body = {"ledger_account_id": a["id"] if ok else str(uuid.uuid4()),
                    "alert_condition": {"field": "ledger_account_lock_version", "operator": "less_than", "value": 0}}
            if not ok:
                self.refused(self.send("POST", "/api/ledger_account_balance_monitors", body))
                return
            got = self.created("/api/ledger_account_balance_monitors", body, "ledger_account_balance_monitor")
            self.monitors.append({"id": got["id"], "description": None, "account": a})
            a["watched"] += 1

        @precondition(lambda self: self.monitors)
        @rule(data=st.data(), value=st.sampled_from(["x", "y"]), delete=st.booleans())
        def change_monitor(self, data, value, delete):
            m = data.draw(st.sampled_from(self.monitors), label="monitor")
            path = f"/api/ledger_account_balance_monitors/{m['id']}"
            if m.get("deleted"):
                self.refused(self.send("DELETE" if delete else "PATCH", path,
                                       None if delete else {"description": value}))
                return
            if delete:
                r = self.send("DELETE", path)
                assert r.status_code == 200, r.text
                m["deleted"] = True
                m["account"]["watched"] -= 1
                self.emit("ledger_account_balance_monitor", "balance_monitor.deleted", r.json())
                return
            r = self.send("PATCH", path, {"description": value})
            assert r.status_code == 200, r.text
            if m["description"] != value:
                m["description"] = value
                self.emit("ledger_account_balance_monitor", "balance_monitor.updated", r.json())

        @precondition(lambda self: self.accounts)
        @rule(data=st.data())
        def delete_account(self, data):
            a = data.draw(st.sampled_from(self.accounts), label="account")
            r = self.send("DELETE", f"/api/ledger_accounts/{a['id']}")
            if a["entries"] or a["watched"]:
                self.refused(r)
                return
            assert r.status_code == 200, r.text
            self.accounts.remove(a)
            self.emit("ledger_account", "ledger_account.deleted", r.json())
            self.refused(self.send("DELETE", f"/api/ledger_accounts/{a['id']}"))

        @precondition(lambda self: self.accounts)
        @rule(data=st.data(), ok=st.booleans())
        def create_statement(self, data, ok):
            a = data.draw(st.sampled_from(self.accounts), label="account")
            body = {"ledger_account_id": a["id"] if ok else str(uuid.uuid4()),
                    "effective_at_lower_bound": "2024-01-01T00:00:00Z",
                    "effective_at_upper_bound": "2030-01-01T00:00:00Z"}
            if ok:
                self.created("/api/ledger_account_statements", body, "ledger_account_statement")
            else:
                self.refused(self.send("POST", "/api/ledger_account_statements", body))

        @precondition(lambda self: len([a for a in self.accounts if a["currency"] == "USD"]) >= 2)
        @rule(data=st.data(), status=st.sampled_from([None, "posted", "drafting"]), either=st.booleans())
        def settle(self, data, status, either):
            """A settlement of a USD account's unsettled posted entries (none: amount 0, no transaction): its
            transaction's event first, then .created, then .finish_processing unless drafting. Refused (the settled
            account as its own contra; a net against its normal balance unless either direction is allowed): none."""
            usd = [a for a in self.accounts if a["currency"] == "USD"]
            settled = data.draw(st.sampled_from(usd), label="settled")
            contra = data.draw(st.sampled_from(usd), label="contra")
            body = {"settled_ledger_account_id": settled["id"], "contra_ledger_account_id": contra["id"],
                    "allow_either_direction": either, **({"status": status} if status else {})}
            r = self.send("POST", "/api/ledger_account_settlements", body)
            if settled is contra or (r.status_code == 422 and not either
                                     and r.json()["code"] == "settlement_balance_negative"):
                self.refused(r)
                return
            assert r.status_code == 201, r.text
            got = r.json()
            if got["ledger_transaction_id"]:
                self.settled_txn(got, "created")
                settled["entries"] += 1
                contra["entries"] += 1
            self.emit("ledger_account_settlement", "ledger_account_settlement.created", got)
            if status != "drafting":
                self.emit("ledger_account_settlement", "ledger_account_settlement.finish_processing", got)
            if status == "drafting":  # a draft's accounts are not deleted (ledger_account_in_use) until it ends
                settled["watched"] += 1
                contra["watched"] += 1
            self.settlements.append({"id": got["id"], "status": status or "pending",
                                     "txn": got["ledger_transaction_id"], "accounts": (settled, contra)})

        @precondition(lambda self: self.settlements)
        @rule(data=st.data(), to=st.sampled_from(["pending", "posted", "archived"]))
        def change_settlement(self, data, to):
            """A settlement's status changed (cell/ledger/settlements.py's lifecycle): its transaction's event (if it
            has one), then the settlement's: finish_processing from a draft, finish_archiving when archived, else
            updated. The status it has: no change, none. A change the lifecycle refuses: none."""
            m = data.draw(st.sampled_from(self.settlements), label="settlement")
            r = self.send("PATCH", f"/api/ledger_account_settlements/{m['id']}", {"status": to})
            allowed = {"drafting": {"pending", "posted", "archived"}, "pending": {"posted", "archived"}}
            if to == m["status"]:  # no change: none
                assert r.status_code == 200, r.text
                return
            if to not in allowed.get(m["status"], set()):
                self.refused(r)
                return
            assert r.status_code == 200, r.text
            got = r.json()
            if got["ledger_transaction_id"]:
                self.settled_txn(got, "created" if m["status"] == "drafting" else to)
            before, m["status"] = m["status"], to
            if before == "drafting":
                for a in m["accounts"]:
                    a["watched"] -= 1
            self.emit("ledger_account_settlement", "ledger_account_settlement." + (
                "finish_archiving" if to == "archived" else "finish_processing" if before == "drafting" else "updated"),
                got)

        def settled_txn(self, settlement: dict, name: str) -> None:
            """The event of a settlement's transaction, written with the settlement's change, as GET shows it now."""
            txn = self.send("GET", f"/api/ledger_transactions/{settlement['ledger_transaction_id']}")
            assert txn.status_code == 200, txn.text
            self.emit("ledger_transaction", f"ledger_transaction.{name}", txn.json())

        @precondition(lambda self: len(self.endpoints) < 3)
        @rule(names=st.lists(st.sampled_from(["ledger_transaction.created", "ledger_transaction.posted",
                                               "ledger_account.updated", "balance_monitor.deleted"]), unique=True))
        def add_endpoint(self, names):
            """A webhook endpoint (no names: every event): from its registration on, each event it wants is one
            delivery, made by the deliverer's fan-out (the worker's code, called here), in stream order."""
            self.settle_events()
            r = self.send("POST", "/api/webhook_endpoints", {"url": PUBLIC, "event_names": names})
            assert r.status_code == 201, r.text
            self.endpoints.append((r.json()["id"], set(names), len(self.expected)))

        @rule(amounts=st.lists(st.integers(0, 9), min_size=1, max_size=3), update=st.booleans())
        def bulk(self, amounts, update):
            """A bulk request processed by the worker's code (claimed, chunks of 2): each resource's change writes
            its events as the single request would (a refused resource: none), then bulk_request.completed. A
            create of transactions (amount 0: unbalanced, refused), or an update posting pending ones."""
            usd = [a for a in self.accounts if a["currency"] == "USD"]
            pending = [t for t in self.txns if t.status == "pending"]
            if update and pending:
                picked = [pending[x % len(pending)] for x in amounts]
                body = {"action_type": "update", "resource_type": "ledger_transaction",
                        "resources": [{"id": t.id, "status": "posted"} for t in picked]}
            elif len(usd) >= 2:
                update, legs = False, [(usd[0], usd[1 + x % (len(usd) - 1)], x) for x in amounts]
                body = {"action_type": "create", "resource_type": "ledger_transaction", "resources": [
                    {"ledger_id": self.ledgers[0]["id"], "status": "pending", "ledger_entries": [
                        {"ledger_account_id": d["id"], "direction": "debit", "amount": x},
                        {"ledger_account_id": c["id"], "direction": "credit", "amount": x + (x == 0)}]}
                    for d, c, x in legs]}
            else:
                return
            r = self.send("POST", "/api/bulk_requests", body)
            assert r.status_code == 201, r.text
            request_id = r.json()["id"]
            row = cell.run(self.claim())
            assert row is not None and str(row["id"]) == request_id, row
            done = cell.run(worker_bulk._attempt(worker_bulk.cell_context(pool, worker_settings), worker_settings,
                                                 row))
            assert done is not None and done.status == "completed", done
            results = every_page(self.send, "/api/bulk_results", request_id=request_id, per_page="100")
            assert len(results) == len(body["resources"])
            taken: set[str] = set()
            for result in results:  # in resource order
                if result["status"] != "successful":
                    continue
                txn = self.send("GET", f"/api/ledger_transactions/{result['entity_id']}").json()
                if not update:
                    self.emit("ledger_transaction", "ledger_transaction.created", result["entity"], False)
                    d, c, x = legs[results.index(result)]
                    self.txns.append(Txn(txn["id"], "pending", {}, (d["id"], c["id"], x)))
                    d["entries"] += 1
                    c["entries"] += 1
                elif result["entity_id"] not in taken:  # the same one twice: posted once, then refused
                    taken.add(result["entity_id"])
                    self.emit("ledger_transaction", "ledger_transaction.posted", result["entity"], False)
                    next(t for t in self.txns if t.id == txn["id"]).status = "posted"
            bulk_request = self.send("GET", f"/api/bulk_requests/{request_id}").json()
            self.emit("bulk_request", "bulk_request.completed", bulk_request)
            event(f"bulk {body['action_type']}: {done.success_result_count} of {done.total_resource_count}")

        async def claim(self):
            async with pool.acquire() as conn:
                return await bulk_store.claim_request(conn, 600.0)

        @precondition(lambda self: self.replays)
        @rule(data=st.data())
        def replay(self, data):
            path, body, key, first = data.draw(st.sampled_from(self.replays), label="replay")
            r = self.send("POST", path, body, key)
            assert r.status_code == 201 and r.json() == first, r.text
            event("replayed")

        @precondition(lambda self: len(self.ledgers) > 1)
        @rule(data=st.data())
        def delete_ledger(self, data):
            """A ledger holding nothing (any but the first: every account and category is made in it) deleted: its
            .deleted; then deleting or renaming it again is 404, and writes none."""
            ledger = data.draw(st.sampled_from(self.ledgers[1:]), label="ledger")
            path = f"/api/ledgers/{ledger['id']}"
            r = self.send("DELETE", path)
            assert r.status_code == 200, r.text
            self.ledgers.remove(ledger)
            self.emit("ledger", "ledger.deleted", r.json())
            for method, body in (("DELETE", None), ("PATCH", {"name": "again"})):
                r = self.send(method, path, body)
                assert r.status_code == 404, r.text

        @rule(data=st.data(), same=st.booleans())
        def patch_ledger(self, data, same):
            ledger = data.draw(st.sampled_from(self.ledgers), label="ledger")
            body = {"name": ledger["name"]} if same else {"name": ledger["name"] + "+"}
            r = self.send("PATCH", f"/api/ledgers/{ledger['id']}", body)
            assert r.status_code == 200, r.text
            if not same:
                ledger["name"] = body["name"]
                self.emit("ledger", "ledger.updated", r.json())

        @precondition(lambda self: self.accounts)
        @rule(data=st.data(), value=st.sampled_from(["x", "y"]))
        def patch_account(self, data, value):
            a = data.draw(st.sampled_from(self.accounts), label="account")
            r = self.send("PATCH", f"/api/ledger_accounts/{a['id']}", {"metadata": {"k": value}})
            assert r.status_code == 200, r.text
            if a["metadata"].get("k") != value:
                a["metadata"] = {"k": value}
                self.emit("ledger_account", "ledger_account.updated", r.json())

        @rule(status=st.sampled_from(["pending", "posted"]), amount=st.integers(1, 9), balanced=st.booleans(),
              keyed=st.booleans(), show=st.booleans())
        def post(self, status, amount, balanced, keyed, show):
            usd = [a for a in self.accounts if a["currency"] == "USD"]
            if len(usd) < 2:
                return
            debit, credit = usd[0], usd[1 + amount % (len(usd) - 1)]
            body = {"ledger_id": self.ledgers[0]["id"], "status": status, "ledger_entries": [
                {"ledger_account_id": debit["id"], "direction": "debit", "amount": amount,
                 **({"show_resulting_ledger_account_balances": True} if show else {})},
                {"ledger_account_id": credit["id"], "direction": "credit", "amount": amount + (not balanced)}]}
            if not balanced:
                key = f"t{len(self.txns)}x-{uuid.uuid4().hex[:8]}" if keyed else None
                first = self.send("POST", "/api/ledger_transactions", body, key)
                self.refused(first)
                if key:  # the refusal again: still nothing written
                    again = self.send("POST", "/api/ledger_transactions", body, key)
                    assert (again.status_code, again.json()["code"]) == (first.status_code, first.json()["code"])
                return
            got = self.created("/api/ledger_transactions", body, "ledger_transaction",
                               f"t{len(self.txns)}" if keyed else None)
            self.txns.append(Txn(got["id"], status, {}, (debit["id"], credit["id"], amount)))
            debit["entries"] += 1
            credit["entries"] += 1
            event(f"posted {'showing resulting balances' if show else 'plain'}")

        @precondition(lambda self: self.txns)
        @rule(data=st.data(), to=st.sampled_from(["posted", "archived"]), noted=st.sampled_from([None, "x", "y"]))
        def transition(self, data, to, noted):
            """A status change, with a metadata change in the same PATCH now and then: one event, the status's. The
            status a final transaction has already, with new metadata: an update of its metadata only."""
            txn = data.draw(st.sampled_from(self.txns), label="txn")
            body = {"status": to, **({"metadata": {"k": noted}} if noted else {})}
            r = self.send("PATCH", f"/api/ledger_transactions/{txn.id}", body)
            if txn.status != "pending" and to != txn.status:
                self.refused(r)
                return
            assert r.status_code == 200, r.text
            changed = noted is not None and txn.metadata != {"k": noted}
            if noted:
                txn.metadata = {"k": noted}
            if txn.status == "pending":
                txn.status = to
                self.emit("ledger_transaction", f"ledger_transaction.{to}", r.json())
            elif changed:
                self.emit("ledger_transaction", "ledger_transaction.updated", r.json())
            else:
                event("the status it has: no change")

        @precondition(lambda self: self.txns)
        @rule(data=st.data(), value=st.sampled_from(["x", "y"]))
        def patch_metadata(self, data, value):
            txn = data.draw(st.sampled_from(self.txns), label="txn")
            r = self.send("PATCH", f"/api/ledger_transactions/{txn.id}", {"metadata": {"k": value}})
            assert r.status_code == 200, r.text
            if txn.metadata.get("k") != value:
                txn.metadata = {"k": value}
                self.emit("ledger_transaction", "ledger_transaction.updated", r.json())

        @precondition(lambda self: self.txns)
        @rule(data=st.data(), cut=st.integers(0, 9))
        def partial_post(self, data, cut):
            """Part of a pending transaction posted: the new one created, the pending one archived (two events)."""
            txn = data.draw(st.sampled_from(self.txns), label="txn")
            debit, credit, amount = txn.legs
            part = 1 + cut % amount
            path = f"/api/ledger_transactions/{txn.id}/partial_post"
            body = {"posted_ledger_entries": [{"ledger_account_id": debit, "direction": "debit", "amount": part},
                                              {"ledger_account_id": credit, "direction": "credit", "amount": part}]}
            key = f"p-{uuid.uuid4().hex[:12]}" if data.draw(st.booleans(), label="keyed") else None
            r = self.send("POST", path, body, key)
            if txn.status != "pending":
                self.refused(r)
                return
            assert r.status_code == 201, r.text
            if key:
                self.replays.append((path, body, key, r.json()))
            got = r.json()
            txn.status = "archived"
            self.emit("ledger_transaction", "ledger_transaction.created", got)
            self.emit("ledger_transaction", "ledger_transaction.archived",
                      self.send("GET", f"/api/ledger_transactions/{txn.id}").json())
            self.txns.append(Txn(got["id"], "posted", got["metadata"], (debit, credit, part)))  # the pending one's

        @precondition(lambda self: self.txns)
        @rule(data=st.data(), amount=st.integers(1, 9))
        def replace_entries(self, data, amount):
            """A pending transaction's entries replaced: one .updated; a final one's refused."""
            txn = data.draw(st.sampled_from(self.txns), label="txn")
            debit, credit, _ = txn.legs
            r = self.send("PATCH", f"/api/ledger_transactions/{txn.id}", {"ledger_entries": [
                {"ledger_account_id": debit, "direction": "debit", "amount": amount},
                {"ledger_account_id": credit, "direction": "credit", "amount": amount}]})
            if txn.status != "pending":
                self.refused(r)
                return
            assert r.status_code == 200, r.text
            txn.legs = (debit, credit, amount)
            self.emit("ledger_transaction", "ledger_transaction.updated", r.json())

        @precondition(lambda self: self.txns)
        @rule(data=st.data())
        def reverse(self, data):
            txn = data.draw(st.sampled_from(self.txns), label="txn")
            key = f"r-{uuid.uuid4().hex[:12]}" if data.draw(st.booleans(), label="keyed") else None
            path, body = f"/api/ledger_transactions/{txn.id}/reversal", {"status": "posted"}
            r = self.send("POST", path, body, key)
            if txn.status != "posted" or txn.reversed:
                self.refused(r)
                return
            assert r.status_code == 201, r.text
            if key:  # replayed later: the reversal and its original's .reversed are not written again
                self.replays.append((path, body, key, r.json()))
            txn.reversed = True
            got = r.json()
            self.emit("ledger_transaction", "ledger_transaction.created", got)
            original = self.send("GET", f"/api/ledger_transactions/{txn.id}").json()
            assert original["reversed_by_ledger_transaction_id"] == got["id"]
            self.emit("ledger_transaction", "ledger_transaction.reversed", original)
            debit, credit, amount = txn.legs
            self.txns.append(Txn(got["id"], "posted", got["metadata"], (credit, debit, amount)))  # reversible too

        @precondition(lambda self: hybrid)
        @rule()
        def worker_step(self):
            cell.apply([a["id"] for a in self.accounts])

        # -- reads --------------------------------------------------------------------------------------------

        def settle_events(self, tenant: str | None = None) -> None:
            """Position every event of the tenant, as the sequencer does: a call positions only what committed
            before the oldest transaction still running (the app's own background work may hold one a moment), so
            called again until none is left, within the README's bound (1 s after an idle spell) and then some."""
            tenant = tenant or self.tenant
            deadline = time.monotonic() + SETTLE_S
            while cell.run(cell.admin.fetchval(
                    "SELECT count(*) FROM events WHERE tenant_id = $1 AND position IS NULL", tenant)):
                assert time.monotonic() < deadline, f"events of {tenant} not positioned within {SETTLE_S} s"
                if not cell.run(cell.admin.fetchval("SELECT ledger_sequence_events()")):
                    time.sleep(0.005)  # a poll's pause, not a wait for time to pass: the loop ends on the condition

        def listed(self, per_page: int, **filters: str) -> list[dict]:
            pages, cursor = [], None
            while True:
                r = self.send("GET", "/api/events", params={"per_page": str(per_page), **filters,
                                                            **({"after_cursor": cursor} if cursor else {})})
                assert r.status_code == 200, r.text
                page = r.json()
                assert len(page) <= per_page
                if not page:
                    assert "x-after-cursor" not in r.headers, "an empty page carries no cursor"
                    return pages
                pages += page
                cursor = r.headers.get("x-after-cursor")
                assert cursor, "a page with events carries X-After-Cursor"

        @invariant()
        def the_stream_is_the_model(self):
            if not self.expected:
                return
            self.settle_events()
            got = self.listed(100)
            want = self.expected
            listed = [(e["event_name"], e["entity_id"]) for e in got]
            made = [(x.event_name, x.entity_id) for x in want]
            same = next((i for i, (a, b) in enumerate(zip(listed, made)) if a != b), min(len(listed), len(made)))
            assert listed == made, f"the stream from event {same}: listed {listed[same:]}, made {made[same:]}"
            assert [e["resource"] for e in got] == [x.resource for x in want]
            for g, x in zip(got, want):
                assert g["data"] == x.data, f"data of {x.event_name} {x.entity_id}: {diff(g['data'], x.data)}"
                if x.id is None:
                    x.id, x.event_time = g["id"], g["event_time"]
                assert (g["id"], g["event_time"]) == (x.id, x.event_time), "an event's id or time changed"
                assert g["object"] == "event" and g["created_at"] == g["event_time"]
            assert len({g["id"] for g in got}) == len(got)
            times = [time_of(g["event_time"]) for g in got]
            assert times == sorted(times), "event_time goes back in stream order"
            self.each_event_is_one_delivery_per_endpoint_that_wants_it()

        def each_event_is_one_delivery_per_endpoint_that_wants_it(self):
            for endpoint_id, names, since in self.endpoints:
                cell.run(webhook_store.fan_out(cell.admin, uuid.UUID(endpoint_id), 1000, 86_400))
                got = [(d["event_id"], d["event_name"], d["entity_id"])
                       for d in every_page(self.send, "/api/webhook_deliveries", endpoint_id=endpoint_id,
                                           per_page="100")]
                want = [(x.id, x.event_name, x.entity_id) for x in self.expected[since:]
                        if not names or x.event_name in names]
                assert got == want, f"deliveries to the endpoint wanting {sorted(names) or 'all'}"

        @rule(per_page=st.integers(1, 4))
        def list_paged(self, per_page):
            self.settle_events()
            assert [g["id"] for g in self.listed(per_page)] == [x.id for x in self.expected]

        @rule(per_page=st.integers(1, 3), start=st.booleans())
        def follow(self, per_page, start):
            """A consumer that keeps the cursor of its last page, started now and then."""
            self.settle_events()
            if start or not self.followers:
                self.followers.append((None, 0))
            i = len(self.followers) - 1 if start else 0
            cursor, seen = self.followers[i]
            r = self.send("GET", "/api/events", params={"per_page": str(per_page),
                                                        **({"after_cursor": cursor} if cursor else {})})
            assert r.status_code == 200, r.text
            page = r.json()
            want = self.expected[seen:seen + per_page]
            assert [(e["event_name"], e["entity_id"]) for e in page] == [(x.event_name, x.entity_id) for x in want]
            assert [e["id"] for e in page] == [x.id for x in want]
            if page:
                self.followers[i] = (r.headers["x-after-cursor"], seen + len(page))

        @rule(data=st.data(), per_page=st.sampled_from([1, 2, 5, 100]))
        def list_filtered(self, data, per_page):
            self.settle_events()
            draw = data.draw
            filters: dict[str, str] = {}
            if draw(st.booleans(), label="by entity"):
                filters["entity_id"] = draw(st.sampled_from([x.entity_id for x in self.expected]
                                                            + [str(uuid.uuid4())]), label="entity_id")
            if draw(st.booleans(), label="by name"):
                filters["event_name"] = draw(st.sampled_from(sorted({x.event_name for x in self.expected}
                                                                    | {"ledger.deleted"})), label="event_name")
            if draw(st.booleans(), label="by resource"):
                filters["resource"] = draw(st.sampled_from(sorted({x.resource for x in self.expected}
                                                                  | {"ledger_account_statement"})), label="resource")
            times = sorted({time_of(x.event_time) for x in self.expected})
            bound = st.sampled_from(times).flatmap(lambda t: st.sampled_from([t - US, t, t + US]))
            start = draw(st.none() | bound, label="event_time_start")
            end = draw(st.none() | bound, label="event_time_end")
            zone = draw(st.sampled_from(ZONES), label="zone")
            if start is not None:
                filters["event_time_start"] = iso(start, zone)
            if end is not None:
                filters["event_time_end"] = iso(end, zone)
            want = [x.id for x in self.expected
                    if filters.get("entity_id", x.entity_id) == x.entity_id
                    and filters.get("event_name", x.event_name) == x.event_name
                    and filters.get("resource", x.resource) == x.resource
                    and (start is None or time_of(x.event_time) >= start)
                    and (end is None or time_of(x.event_time) <= end)]
            got = [e["id"] for e in self.listed(per_page, **filters)]
            assert got == want, f"filtered by {filters}"
            event(f"filtered: {'some' if want else 'none'} listed")

        @rule(data=st.data())
        def get_one(self, data):
            self.settle_events()
            x = data.draw(st.sampled_from(self.expected), label="event")
            r = self.send("GET", f"/api/events/{x.id}")
            assert r.status_code == 200, r.text
            got = r.json()
            assert (got["id"], got["event_name"], got["entity_id"], got["data"], got["event_time"]) == \
                (x.id, x.event_name, x.entity_id, x.data, x.event_time)
            for missing in self.others + [str(uuid.uuid4())]:
                r = self.send("GET", f"/api/events/{missing}")
                assert r.status_code == 404, r.text

    return EventMachine


def as_read(txn: dict) -> dict:
    """A transaction as the stream (and a GET) shows it: a write's answer without the resulting balances it showed
    because that request asked for them (show_resulting_ledger_account_balances: the requester's view, not the
    object's; see the module's docstring)."""
    return {**txn, "ledger_entries": [{**e, "resulting_ledger_account_balances": None} for e in txn["ledger_entries"]]}


def diff(got, want, path: str = "") -> list[str]:
    """Where two JSON values differ (paths), for a readable failure."""
    if isinstance(got, dict) and isinstance(want, dict):
        return [d for k in sorted(set(got) | set(want)) for d in diff(got.get(k), want.get(k), f"{path}.{k}")]
    if isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in diff(g, w, f"{path}[{i}]")]
    return [] if got == want else [f"{path}: listed {got!r}, answered {want!r}"]


def resource_name(resource: str) -> str:
    return "balance_monitor" if resource == "ledger_account_balance_monitor" else resource


def test_the_event_stream_is_exactly_the_writes_made(event_cell):
    run_state_machine_as_test(make_machine(*event_cell), settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
