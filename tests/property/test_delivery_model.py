"""Webhook delivery against a model, end to end: random operation lists of writes that emit events (through the API),
endpoints registered with various event_names, paused, enabled, deleted and their keys rotated (through the API), a
real receiver (tests/webhook_receiver.py, the customer's server) answering 2xx, 5xx, too late or by hanging up, the
worker's own delivery code stepped by the test (worker.webhooks.fan_out, then deliver_due: one deliverer's round),
time moving past retry delays and the 24 h window, redeliveries, and another tenant writing meanwhile.

Time: the deliveries' SQL reads now() and offers no clock of its own, so "an hour passes" moves every time the
tenant's deliveries hold (next_attempt_at, give_up_at, last_attempt_at) an hour back, as test_bulk_model.py runs
leases out; the back-off base is 600 s (never due by itself during an example), the window the documented 24 h.

After every step, what a customer sees: the receiver got exactly the attempts the model says (each due, unheld
delivery of an enabled endpoint: the earliest pending one of its entity there), signed with the endpoint's key at
that moment (the SDK's validate_signature), with the delivery's id as X-Webhook-ID, never an unwanted event or
another tenant's; GET /api/webhook_deliveries lists the model's deliveries in the order they were made with their
status, attempts, last status code and a next_attempt_at exactly when one is coming (none while held), its status
and endpoint_id filters agree; a failure is final exactly when its next retry would fall past the window. At the end
every endpoint is enabled and answers 2xx, the workers drain, and every wanted event is delivered, exactly once to an
endpoint that always accepted and was never asked to redeliver. PROPERTY_EXAMPLES / PROPERTY_STEPS make a soak.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime
from collections import Counter
from dataclasses import dataclass, field

import pytest
from harness import every_page, open_worked_cell, run_plan
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from webhook_receiver import CLOSE, Receiver, signed_with

from cell.ledger.webhooks import WEBHOOK_RETRY_WINDOW_S_DEFAULT
from worker import webhooks as worker_webhooks

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "25"))
STEPS = int(os.environ.get("PROPERTY_STEPS", "30"))
WINDOW_S = WEBHOOK_RETRY_WINDOW_S_DEFAULT  # README: retried for 24 h, then failed
BASE_S, CAP_S = 600.0, 3600.0  # a retry is due 300 s after its failure at the earliest: only "advance" makes it due
HOUR_S, DAY_S = 3600.0, 86_400.0
TIMEOUT_S = 1.0
SLACK_S = 120.0  # real seconds an example may take: a retry this close to its window's end may go either way
MODES = {"ok": 200, "error": 500, "hang": ("hang", 2 * TIMEOUT_S), "close": CLOSE}
NAMES = ([], ["ledger_account.created", "ledger_account.updated"],
         ["ledger_transaction.created", "ledger_transaction.posted"], ["ledger_transaction.posted"],
         ["ledger_account.updated", "ledger_transaction.created"])
LIVE_ENDPOINTS_MAX = 4


@pytest.fixture(scope="module")
def delivery_cell(make_database):
    url = make_database("delivery_model")
    ours, others = Receiver().start(), Receiver().start()
    try:
        with open_worked_cell(url, posting_mode="sync", tenant_prefix="w", pool_max=4,
                              cell_settings={"webhook_allow_http_loopback": True},
                              webhook_allow_http_loopback=True, webhook_timeout_s=TIMEOUT_S,
                              webhook_backoff_base_s=BASE_S, webhook_backoff_cap_s=CAP_S, webhook_batch_max=200,
                              webhook_concurrency_max=16) as (cell, pool, worker_settings):
            other, other_auth = cell.new_tenant()
            r = cell.client.post("/api/webhook_endpoints", json={"url": others.url}, auth=other_auth)
            assert r.status_code == 201, r.text
            others.key = r.json()["webhook_key"]
            yield cell, pool, worker_settings, ours, others, (other, other_auth)
    finally:
        ours.stop()
        others.stop()


# ---- operations ---------------------------------------------------------------------------------------------

n = st.integers(0, 9)
operations = st.one_of(
    st.tuples(st.just("account")),
    st.tuples(st.just("touch"), n),
    st.tuples(st.just("txn"), n, n, st.sampled_from(["pending", "posted"])),
    st.tuples(st.just("txn"), n, n, st.sampled_from(["pending", "posted"])),
    st.tuples(st.just("post"), n),
    st.tuples(st.just("register"), st.integers(0, len(NAMES) - 1), st.sampled_from(sorted(MODES))),
    st.tuples(st.just("pause"), n),
    st.tuples(st.just("enable"), n),
    st.tuples(st.just("delete"), n),
    st.tuples(st.just("rotate"), n),
    st.tuples(st.just("mode"), n, st.sampled_from(sorted(MODES))),
    st.tuples(st.just("mode"), n, st.sampled_from(sorted(MODES))),
    st.tuples(st.just("deliver")),
    st.tuples(st.just("deliver")),
    st.tuples(st.just("deliver")),
    st.tuples(st.just("advance"), st.sampled_from([HOUR_S, HOUR_S, DAY_S])),
    st.tuples(st.just("advance"), st.sampled_from([HOUR_S, DAY_S - HOUR_S, DAY_S])),
    st.tuples(st.just("redeliver"), n, st.integers(0, 30)),
    st.tuples(st.just("redeliver"), n, st.integers(0, 30)),
    st.tuples(st.just("other")),
)


# ---- the model ----------------------------------------------------------------------------------------------

@dataclass
class Endpoint:
    id: str
    path: str
    key: str
    names: list[str]
    watermark: int  # events before this index are not its
    registered_at: int
    active: bool = True
    deleted: bool = False
    mode: str = "ok"
    always_accepted: bool = True  # its receiver never answered otherwise, none of its deliveries redelivered


@dataclass
class Delivery:
    ep: Endpoint
    ev: int  # index in the tenant's events, position order
    made: int  # the fan-out round that made it (rounds commit one after another; its endpoints' order is the worker's)
    window_from: float  # model time it was made or last redelivered: failed for good 24 h after
    due: tuple[float, float]  # model time of its next attempt (a retry's jitter: a range)
    id: str | None = None
    status: str = "pending"  # or succeeded, failed, "either" (pending or failed: a retry at the window's edge)
    attempts: int = 0
    code: int | None = None
    gone: bool = False


@dataclass
class Model:
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (id, name, entity_id) in position order
    endpoints: list[Endpoint] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    now: float = 0.0
    rounds: int = 0

    def live(self) -> list[Delivery]:
        return [d for d in self.deliveries if not d.gone]

    def held(self, d: Delivery) -> bool:
        """Pending, kept from any attempt: its endpoint paused, or an earlier delivery of its entity there pending."""
        return d.status == "pending" and (not d.ep.active or any(
            o.ep is d.ep and o.status == "pending" and o.ev < d.ev and self.events[o.ev][2] == self.events[d.ev][2]
            for o in self.live()))


class Bench:
    def __init__(self, cell, pool, worker_settings, ours: Receiver, others: Receiver, other) -> None:
        self.cell, self.pool, self.settings, self.ours, self.others = cell, pool, worker_settings, ours, others
        self.other_tenant, self.other_auth = other
        self.tenant, self.auth = cell.new_tenant()
        # Earlier examples' endpoints are not this one's: their deliveries out of every round.
        cell.run(cell.admin.execute("DELETE FROM webhook_endpoints WHERE tenant_id <> $1 AND tenant_id <> $2",
                                    self.tenant, self.other_tenant))
        self.m = Model()
        self.seen = len(ours.snapshot())
        self.other_seen = len(others.snapshot())
        self.other_events = self.events_of_other()
        ours.answer_to = self.answer
        self.ledger = self.ok("POST", "/api/ledgers", {"name": "deliveries"})["id"]
        self.accounts: list[str] = []
        self.txns: list[tuple[str, str]] = []  # (id, status)
        for _ in range(2):
            self.account()

    def answer(self, path: str, event: dict):
        ep = next((e for e in self.m.endpoints if e.path == path), None)
        return MODES[ep.mode] if ep is not None else 200

    def call(self, method: str, path: str, json=None, params=None, auth=None):
        r = self.cell.client.request(method, path, json=json, params=params, auth=auth or self.auth)
        assert r.status_code < 500, f"{method} {path}: {r.status_code} {r.text}"
        return r

    def ok(self, method: str, path: str, json=None, params=None, auth=None) -> dict:
        r = self.call(method, path, json, params, auth)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    def not_found(self, method: str, path: str, json=None) -> None:
        r = self.call(method, path, json)
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json"), r.text
        assert r.json().get("code") or r.json().get("type"), r.text

    # -- writes that emit events

    def sequenced(self) -> None:
        """The writes' events positioned (the sequencer's step), then the tenant's stream as the API lists it."""
        self.position(self.tenant)
        before = len(self.m.events)
        listed = every_page(self.call, "/api/events", per_page="100")
        assert [e["id"] for e in listed[:before]] == [e[0] for e in self.m.events], "the event stream changed"
        assert len(listed) > before, "a write emitted no event"
        self.m.events = [(e["id"], e["event_name"], e["entity_id"]) for e in listed]

    def position(self, tenant: str) -> None:
        """Every committed event of the tenant positioned, as the sequencer does (it may leave one for its next run
        while a transaction that began before it is still open somewhere in the cell)."""
        deadline = time.monotonic() + 30
        while self.cell.run(self.cell.admin.fetchval(
                "SELECT count(*) FROM events WHERE tenant_id = $1 AND position IS NULL", tenant)):
            assert time.monotonic() < deadline, "events left unpositioned"
            self.cell.run(self.cell.admin.fetchval("SELECT ledger_sequence_events()"))

    def account(self) -> None:
        self.accounts.append(self.ok("POST", "/api/ledger_accounts", {
            "name": f"a{len(self.accounts)}", "ledger_id": self.ledger, "normal_balance": "debit",
            "currency": "USD"})["id"])
        self.sequenced()

    def touch(self, i: int) -> None:
        self.ok("PATCH", f"/api/ledger_accounts/{self.accounts[i % len(self.accounts)]}",
                {"metadata": {"touched": str(len(self.m.events))}})
        self.sequenced()

    def txn(self, i: int, j: int, status: str) -> None:
        a = i % len(self.accounts)
        b = j % len(self.accounts) if j % len(self.accounts) != a else (a + 1) % len(self.accounts)
        t = self.ok("POST", "/api/ledger_transactions", {"ledger_id": self.ledger, "status": status, "ledger_entries": [
            {"ledger_account_id": self.accounts[a], "direction": "debit", "amount": 1},
            {"ledger_account_id": self.accounts[b], "direction": "credit", "amount": 1}]})
        self.txns.append((t["id"], status))
        self.sequenced()

    def post(self, k: int) -> None:
        pending = [t for t in self.txns if t[1] == "pending"]
        if not pending:
            return
        tid = pending[k % len(pending)][0]
        self.ok("PATCH", f"/api/ledger_transactions/{tid}", {"status": "posted"})
        self.txns = [(t, "posted" if t == tid else s) for t, s in self.txns]
        self.sequenced()

    def other(self) -> None:
        """Another tenant's write: its endpoint's event, never ours."""
        self.ok("POST", "/api/ledgers", {"name": "theirs"}, auth=self.other_auth)
        self.position(self.other_tenant)
        self.other_events = self.events_of_other()

    def events_of_other(self) -> list[str]:
        return [r["id"] for r in every_page(lambda *a, **k: self.call(*a, **k, auth=self.other_auth), "/api/events",
                                            per_page="100")]

    # -- endpoints

    def endpoint(self, i: int) -> Endpoint | None:
        return self.m.endpoints[i % len(self.m.endpoints)] if self.m.endpoints else None

    def register(self, which: int, mode: str = "ok") -> None:
        if sum(not e.deleted for e in self.m.endpoints) >= LIVE_ENDPOINTS_MAX:
            return
        tag = uuid.uuid4().hex[:8]
        names = NAMES[which]
        r = self.call("POST", "/api/webhook_endpoints", {"url": f"{self.ours.url}/{tag}", "event_names": names})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["active"] is True and sorted(body["event_names"]) == sorted(names) and body["webhook_key"]
        self.m.endpoints.append(Endpoint(body["id"], f"/hooks/{tag}", body["webhook_key"], names,
                                         len(self.m.events), len(self.m.events)))
        self.mode(len(self.m.endpoints) - 1, mode)

    def set_active(self, ep: Endpoint, active: bool) -> None:
        r = self.call("PATCH", f"/api/webhook_endpoints/{ep.id}", {"active": active})
        if ep.deleted:
            assert r.status_code == 404, r.text
            return
        assert r.status_code == 200 and r.json()["active"] is active, r.text
        assert r.json()["webhook_key"] is None  # shown only at registration and rotation
        ep.active = active

    def pause(self, i: int) -> None:
        if (ep := self.endpoint(i)) is not None:
            self.set_active(ep, False)

    def enable(self, i: int) -> None:
        if (ep := self.endpoint(i)) is not None:
            self.set_active(ep, True)

    def delete(self, i: int) -> None:
        if (ep := self.endpoint(i)) is None:
            return
        if ep.deleted:
            self.not_found("DELETE", f"/api/webhook_endpoints/{ep.id}")
            return
        assert self.ok("DELETE", f"/api/webhook_endpoints/{ep.id}")["id"] == ep.id
        ep.deleted = True
        for d in self.m.deliveries:
            if d.ep is ep:
                d.gone = True

    def rotate(self, i: int) -> None:
        if (ep := self.endpoint(i)) is None:
            return
        if ep.deleted:
            self.not_found("POST", f"/api/webhook_endpoints/{ep.id}/rotate_key")
            return
        key = self.ok("POST", f"/api/webhook_endpoints/{ep.id}/rotate_key")["webhook_key"]
        assert key and key != ep.key
        ep.key = key

    def mode(self, i: int, mode: str) -> None:
        if (ep := self.endpoint(i)) is not None:
            ep.mode = mode
            ep.always_accepted &= mode == "ok"

    # -- time and the workers

    def advance(self, seconds: float) -> None:
        """Time passes for the tenant's deliveries (every time they hold moved back; held ones stay held)."""
        self.m.now += seconds
        self.cell.run(self.cell.admin.execute(
            "UPDATE webhook_deliveries SET next_attempt_at = next_attempt_at - make_interval(secs => $2),"
            " give_up_at = give_up_at - make_interval(secs => $2),"
            " last_attempt_at = last_attempt_at - make_interval(secs => $2) WHERE tenant_id = $1",
            self.tenant, seconds))

    def expected_attempts(self) -> list[Delivery]:
        m = self.m
        m.rounds += 1
        for ep in m.endpoints:  # the fan-out: what each enabled endpoint wants since its watermark
            if ep.active and not ep.deleted:
                for ev in range(ep.watermark, len(m.events)):
                    if not ep.names or m.events[ev][1] in ep.names:
                        m.deliveries.append(Delivery(ep, ev, m.rounds, m.now, (m.now, m.now)))
                ep.watermark = len(m.events)
        attempted = []
        for d in m.live():
            if d.status == "pending" and not m.held(d):
                assert d.due[1] <= m.now or d.due[0] > m.now, f"the model cannot tell whether {d} is due"
                if d.due[1] <= m.now:
                    attempted.append(d)
        return attempted

    def deliver(self) -> None:
        """One deliverer's round: fan out, then attempt the due deliveries (worker.webhooks, as deliver_for runs it)."""
        expected = self.expected_attempts()

        async def round_():
            await worker_webhooks.fan_out(self.pool, self.settings)
            async with worker_webhooks.http_client(self.settings) as client:
                return await worker_webhooks.deliver_due(self.pool, client, self.settings)

        self.cell.run(round_())
        got = self.ours.snapshot()[self.seen:]
        self.seen += len(got)
        by_ep = {e.path: e for e in self.m.endpoints}
        wanted = Counter((d.ep.path, self.m.events[d.ev][0]) for d in expected)
        sent = Counter((r.path, r.event.get("id")) for r in got)
        assert sent == wanted, f"attempts sent {sorted(sent.items())}, the model expected {sorted(wanted.items())}"
        for r in got:
            ep = by_ep[r.path]
            d = next(d for d in expected if d.ep is ep and self.m.events[d.ev][0] == r.event["id"])
            assert signed_with(r.raw, r.headers, ep.key), f"not signed with {ep.path}'s current key"
            assert d.id is None or r.webhook_id == d.id, "X-Webhook-ID is not the delivery's id"
            d.id = r.webhook_id
            ev_id, name, entity = self.m.events[d.ev]
            assert (r.event["event_name"], r.event["entity_id"], r.event["object"]) == (name, entity, "event")
        for d in expected:
            d.attempts += 1
            answered = MODES[d.ep.mode]
            if answered == 200:
                d.status, d.code = "succeeded", 200
                continue
            d.code = answered if isinstance(answered, int) else None
            event(f"an attempt answered {d.ep.mode}")
            if d.attempts > 1:
                event("a retry failed")
            full = min(CAP_S, BASE_S * 2 ** (d.attempts - 1))
            d.due = (self.m.now + full / 2, self.m.now + full)
            spent = self.m.now - d.window_from
            if spent + full / 2 > WINDOW_S:
                d.status = "failed"
                event("a delivery failed for good")
            elif spent + full + SLACK_S <= WINDOW_S:
                d.status = "pending"
            else:
                d.status = "either"
        got_others = self.others.snapshot()[self.other_seen:]
        self.other_seen += len(got_others)
        assert {r.event["id"] for r in got_others} <= set(self.other_events), "another tenant's receiver got ours"
        assert all(r.signed and r.answered == 200 for r in got_others)

    def redeliver(self, i: int, k: int) -> None:
        if (ep := self.endpoint(i)) is None:
            return
        mine = [d for d in self.m.deliveries if d.ep is ep and d.id is not None]
        if not mine:
            return
        d = mine[k % len(mine)]
        if d.gone:
            self.not_found("POST", f"/api/webhook_deliveries/{d.id}/redeliver")
            return
        event(f"a {d.status} delivery redelivered")
        body = self.ok("POST", f"/api/webhook_deliveries/{d.id}/redeliver")
        d.status, d.attempts, d.due, d.window_from = "pending", 0, (self.m.now, self.m.now), self.m.now
        ep.always_accepted = False
        assert (body["id"], body["status"], body["attempts"]) == (d.id, "pending", 0), body
        assert (body["next_attempt_at"] is None) == self.m.held(d), (body, "held" if self.m.held(d) else "due")

    # -- what a customer sees

    def observe(self) -> None:
        assert self.ours.snapshot()[self.seen:] == [], "an attempt outside a deliverer's round"
        listed = every_page(self.call, "/api/webhook_deliveries", per_page="40")
        rows = {(r["endpoint_id"], r["event_id"]): r for r in listed}
        assert len(rows) == len(listed)
        live = {(d.ep.id, self.m.events[d.ev][0]): d for d in self.m.live()}
        assert sorted(rows) == sorted(live), f"deliveries listed {sorted(rows)}, the model's {sorted(live)}"
        for key, r in rows.items():
            d = live[key]
            if d.status == "either":
                assert r["status"] in ("pending", "failed"), r
                d.status = r["status"]
                event(f"a retry at the window's edge: {r['status']}")
            assert d.id is None or r["id"] == d.id
            d.id = r["id"]
            ev_id, name, entity = self.m.events[d.ev]
            assert (r["status"], r["attempts"], r["last_status_code"]) == (d.status, d.attempts, d.code), (r, d)
            assert (r["event_name"], r["entity_id"], r["url"]) == (name, entity, self.ours.url + d.ep.path[6:]), r
            assert (r["last_error"] is None) == (d.code == 200 or d.attempts == 0 and r["last_attempt_at"] is None), r
            coming = d.status == "pending" and not self.m.held(d)
            if d.status == "pending" and not coming:
                event("a held delivery listed")
            assert (r["next_attempt_at"] is not None) == coming, (r, "due" if coming else "held or done")
            if coming and d.attempts:  # a retry: exponential back-off with jitter after its last attempt
                full = min(CAP_S, BASE_S * 2 ** (d.attempts - 1))
                gap = (datetime.fromisoformat(r["next_attempt_at"]) - datetime.fromisoformat(r["last_attempt_at"]))
                assert full / 2 - 1 <= gap.total_seconds() <= full + 1, (r, full)
        made = [(live[(r["endpoint_id"], r["event_id"])].made, live[(r["endpoint_id"], r["event_id"])].ev)
                for r in listed]
        assert [m for m, _ in made] == sorted(m for m, _ in made), "deliveries not listed in the order they were made"
        for ep in self.m.endpoints:  # one endpoint's fan-out: in event order
            mine = [(m, ev) for (m, ev), r in zip(made, listed) if r["endpoint_id"] == ep.id]
            assert mine == sorted(mine), f"{ep.path}'s deliveries not listed in the order they were made"
        for status in ("pending", "failed", "succeeded"):
            assert [r["id"] for r in every_page(self.call, "/api/webhook_deliveries", status=status)] == \
                [r["id"] for r in listed if r["status"] == status], status
        for ep in self.m.endpoints:
            shown = every_page(self.call, "/api/webhook_deliveries", endpoint_id=ep.id)
            assert [r["id"] for r in shown] == [r["id"] for r in listed if r["endpoint_id"] == ep.id]

    def drain(self) -> None:
        """Every endpoint enabled and accepting, the deliverer run (time moving when nothing is due) to the end."""
        for ep in self.m.endpoints:
            ep.mode = "ok"
            if not ep.deleted and not ep.active:
                self.set_active(ep, True)
        for _ in range(4 * len(self.m.deliveries) + 10):
            if self.expected_attempts():
                self.deliver()
            elif any(d.status == "pending" for d in self.m.live()):
                self.advance(HOUR_S)
            else:
                break
            self.observe()
        assert not any(d.status == "pending" for d in self.m.live())

    def final(self) -> None:
        receipts = self.ours.snapshot()
        for ep in self.m.endpoints:
            if ep.deleted:
                continue
            wanted = [e for e in self.m.events[ep.registered_at:] if not ep.names or e[1] in ep.names]
            mine = [d for d in self.m.live() if d.ep is ep]
            assert sorted(self.m.events[d.ev][0] for d in mine) == sorted(e[0] for e in wanted)
            got = Counter(r.event["id"] for r in receipts if r.path == ep.path and r.answered == 200)
            for d in mine:
                ev_id = self.m.events[d.ev][0]
                if d.status == "succeeded":
                    assert got[ev_id] >= 1, f"{ep.path} never got {ev_id}"
                if ep.always_accepted:
                    assert d.status == "succeeded" and got[ev_id] == 1, (ep.path, ev_id, got[ev_id])


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plan=st.lists(operations, min_size=STEPS // 2, max_size=STEPS).map(
    lambda plan: [("register", 0, "ok")] + plan))
def test_webhooks_reach_the_customer_as_the_readme_says(delivery_cell, plan):
    cell, pool, worker_settings, ours, others, other = delivery_cell
    bench = Bench(cell, pool, worker_settings, ours, others, other)
    run_plan(bench, plan)
    try:
        bench.drain()
        bench.final()
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nsteps={plan}, then the deliverer drained") from None
    failed = sum(d.status == "failed" for d in bench.m.live())
    event(f"{'some' if failed else 'no'} delivery failed for good")
    event(f"{'a' if any(not e.active for e in bench.m.endpoints) else 'no'} paused endpoint at the end of the plan")
