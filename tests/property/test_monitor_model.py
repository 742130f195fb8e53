"""Balance monitors against a model: random sync and async postings, worker steps, monitors created on the way.

A cell app in posting_mode="hybrid" without a queue (nothing queued is applied until the test's worker step,
`ledger_apply_report`, as a worker runs it). One credit-normal account A is monitored; each posting moves money
between A and a counterparty, pending or posted, sync on A (show_resulting_ledger_account_balances) or queued.

The reference: A's entries in lock-version order (the order the apply folded them in) give A's balances after
each version, recomputed here from amounts and directions (Modern Treasury's definitions, never cell code);
each monitor's condition at each version from the one it was created at. Checked: each monitor's
balance_monitor.triggered / .resolved events are exactly the model's transitions (so they alternate and none
is twice), at the lock version and with the balances where they happened.
"""

from __future__ import annotations

import os
import uuid

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "15"))
FIELDS = ("available_balance_amount", "pending_balance_amount", "posted_balance_amount", "ledger_account_lock_version")
OPERATORS = {"less_than": lambda a, b: a < b, "less_than_or_equals": lambda a, b: a <= b,
             "equals": lambda a, b: a == b, "greater_than_or_equals": lambda a, b: a >= b,
             "greater_than": lambda a, b: a > b}



conditions = st.fixed_dictionaries({
    "field": st.sampled_from(FIELDS), "operator": st.sampled_from(sorted(OPERATORS)),
    "value": st.integers(-4, 4)})
postings = st.tuples(st.just("post"), st.sampled_from(["credit", "debit"]), st.integers(1, 4),
                     st.sampled_from(["pending", "posted"]), st.booleans())
# Amounts near the conditions' values, mostly postings: most monitors see several transitions.
steps = st.lists(st.one_of(postings, postings, postings, st.tuples(st.just("apply")),
                           st.tuples(st.just("monitor"), conditions)), min_size=5, max_size=30)


def balances_after(entries: list[dict]) -> dict[int, dict[str, int]]:
    """A's amounts after each lock version, from its entries (credit-normal: credits count up)."""
    pd = pc = od = oc = 0
    out = {0: {"pending_balance_amount": 0, "posted_balance_amount": 0, "available_balance_amount": 0}}
    for e in sorted(entries, key=lambda e: e["ledger_account_lock_version"]):
        debit, amount = e["direction"] == "debit", e["amount"]
        pd, pc = pd + amount * debit, pc + amount * (not debit)
        if e["status"] == "posted":
            od, oc = od + amount * debit, oc + amount * (not debit)
        out[e["ledger_account_lock_version"]] = {"pending_balance_amount": pc - pd, "posted_balance_amount": oc - od,
                                                 "available_balance_amount": oc - pd}
    assert sorted(out) == list(range(len(out))), "one entry per lock version"
    return out


def holds(condition: dict, version: int, amounts: dict[str, int]) -> bool:
    value = version if condition["field"] == "ledger_account_lock_version" else amounts[condition["field"]]
    return OPERATORS[condition["operator"]](value, condition["value"])


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
@given(first=st.lists(conditions, min_size=1, max_size=4), plan=steps)
def test_monitor_events_are_exactly_the_transitions_of_the_balance(hybrid_cell, first, plan):
    cell = hybrid_cell
    _, auth = cell.new_tenant()

    def call(method: str, path: str, json=None, params=None):
        r = cell.client.request(method, path, json=json, params=params, auth=auth)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r

    ledger = call("POST", "/api/ledgers", {"name": "m"}).json()["id"]
    a = call("POST", "/api/ledger_accounts", {"name": "a", "ledger_id": ledger, "normal_balance": "credit",
                                              "currency": "USD"}).json()["id"]
    b = call("POST", "/api/ledger_accounts", {"name": "b", "ledger_id": ledger, "normal_balance": "debit",
                                              "currency": "USD"}).json()["id"]
    monitors: dict[str, tuple[dict, int, bool]] = {}  # id -> (condition, lock version at creation, state there)

    def monitor(condition: dict) -> None:
        m = call("POST", "/api/ledger_account_balance_monitors",
                 {"ledger_account_id": a, "alert_condition": condition}).json()
        state = m["current_ledger_account_balance_state"]
        monitors[m["id"]] = (condition, state["ledger_account_lock_version"], state["triggered"])

    for condition in first:
        monitor(condition)
    for step in plan:
        if step[0] == "apply":
            cell.apply([a, b])
        elif step[0] == "monitor":
            monitor(step[1])
        else:
            _, direction, amount, status, sync = step
            other = "debit" if direction == "credit" else "credit"
            call("POST", "/api/ledger_transactions", {"ledger_id": ledger, "status": status, "ledger_entries": [
                {"ledger_account_id": a, "direction": direction, "amount": amount,
                 "show_resulting_ledger_account_balances": sync},
                {"ledger_account_id": b, "direction": other, "amount": amount}]})
    cell.apply([a, b])

    entries, cursor = [], None
    while True:
        r = call("GET", "/api/ledger_entries", params={"ledger_account_id": a, "per_page": "100",
                                                       **({"after_cursor": cursor} if cursor else {})})
        entries += r.json()
        if not (cursor := r.headers.get("x-after-cursor")):
            break
    after = balances_after(entries)

    while cell.run(cell.admin.fetchval("SELECT count(*) FROM events WHERE tenant_id = $1 AND position IS NULL",
                                       auth[0])):
        cell.run(cell.admin.fetchval("SELECT ledger_sequence_events()"))
    for monitor_id, (condition, created_at_version, created_state) in monitors.items():
        assert created_state == holds(condition, created_at_version, after[created_at_version])
        expected, state = [], created_state
        for version in range(created_at_version + 1, len(after)):
            now = holds(condition, version, after[version])
            if now != state:
                expected.append(("balance_monitor.triggered" if now else "balance_monitor.resolved", version,
                                 after[version]["available_balance_amount"]))
                state = now
        listed, cursor = [], None
        while True:
            r = call("GET", "/api/events", params={
                "entity_id": monitor_id, "resource": "ledger_account_balance_monitor", "per_page": "100",
                **({"after_cursor": cursor} if cursor else {})})
            if not r.json():
                break
            listed += r.json()
            cursor = r.headers["x-after-cursor"]
        got = [(e["event_name"], e["data"]["current_ledger_account_balance_state"]["ledger_account_lock_version"],
                e["data"]["current_ledger_account_balance_state"]["balances"]["available_balance"]["amount"])
               for e in listed if e["event_name"] != "balance_monitor.created"]
        assert got == expected, (condition, created_at_version)
        event(f"a monitor with {min(len(expected), 3)}{'+' if len(expected) > 3 else ''} transitions")
        assert all(e["data"]["current_ledger_account_balance_state"]["triggered"]
                   == e["event_name"].endswith("triggered")
                   for e in listed if e["event_name"] != "balance_monitor.created")
        current = call("GET", f"/api/ledger_account_balance_monitors/{monitor_id}").json()
        assert current["current_ledger_account_balance_state"]["triggered"] == state
        assert current["alert_condition"] == condition and uuid.UUID(current["ledger_account_id"]) == uuid.UUID(a)
