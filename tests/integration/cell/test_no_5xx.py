"""No input produces a 5xx: a deterministic fuzz corpus of mutated bodies and query strings."""

import json
import random
import uuid

import pytest

NASTY_VALUES = [None, True, False, 0, -1, 1.5, 2**63, -(2**63) - 1, 10**40, "", "x" * 5000, "\u0000", "a\u0000b",
                "\ud800", "💸", "2026-13-45T99:99:99Z", "00000000-0000-4000-8000-000000000000", [], {}, [[[]]],
                {"gte": "0"}, {"": ""}, ["credit"], "debit", "posted", "archived", -0.0, 1e308]


def mutations(body: dict, rng: random.Random, count: int):
    """Bodies with one value somewhere replaced by a nasty one, or one key dropped or added."""
    paths = []

    def walk(node, path):
        paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, path + [k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, path + [i])

    walk(body, [])
    for _ in range(count):
        clone = json.loads(json.dumps(body))
        path = rng.choice(paths[1:])
        parent = clone
        for step in path[:-1]:
            parent = parent[step]
        action = rng.random()
        if action < 0.8:
            parent[path[-1]] = rng.choice(NASTY_VALUES)
        elif isinstance(parent, dict):
            parent.pop(path[-1])
        else:
            parent.append(rng.choice(NASTY_VALUES))
        yield clone


async def test_mutated_bodies_never_cause_a_5xx(api, books):
    ledger, a, b = books
    rng = random.Random(20261122)
    txn = {"ledger_id": ledger["id"], "status": "posted", "description": "d", "external_id": "e",
           "effective_at": "2026-01-01T00:00:00Z", "metadata": {"k": "v"}, "ledger_entries": [
               {"ledger_account_id": a["id"], "direction": "debit", "amount": 5,
                "available_balance_amount": {"gte": -100}, "lock_version": 0},
               {"ledger_account_id": b["id"], "direction": "credit", "amount": 5,
                "show_resulting_ledger_account_balances": True}]}
    targets = [("POST", "/api/ledger_transactions", txn),
               ("POST", "/api/ledgers", {"name": "n", "description": "d", "metadata": {"k": "v"}}),
               ("POST", "/api/ledger_accounts", {"name": "n", "ledger_id": ledger["id"], "normal_balance": "debit",
                                                 "currency": "USD", "currency_exponent": 2, "metadata": {"k": "v"}}),
               ("PATCH", f"/api/ledger_accounts/{a['id']}", {"name": "n", "metadata": {"k": "v"}, "sync_only": False}),
               ("PATCH", f"/api/ledgers/{ledger['id']}", {"name": "n", "description": "d"})]
    seen = {}
    for method, path, body in targets:
        for mutated in mutations(body, rng, 60):
            r = await api.request(method, path, content=json.dumps(mutated), headers={"content-type": "application/json"})
            assert r.status_code < 500, (method, path, mutated, r.text)
            seen[r.status_code] = seen.get(r.status_code, 0) + 1
    assert set(seen) - {200, 201} and {200, 201} & set(seen), seen  # the corpus both passes and fails


@pytest.mark.parametrize("params", [
    {"external_id": "a\u0000b"}, {"metadata[k\u0000]": "v"}, {"metadata[k]": "\u0000"}, {"status": "\u0000"},
    {"ledger_id": "\u0000"}, {"effective_at[gte]": "\u0000"}, {"effective_at[gte]": "99999-01-01T00:00:00Z"},
    {"per_page": "9" * 50}, {"after_cursor": "W1000000000000000000000000000000000000000XQ"},
])
async def test_nasty_query_strings_never_cause_a_5xx(api, params):
    for path in ("/api/ledger_transactions", "/api/ledger_accounts", "/api/ledger_entries", "/api/ledgers"):
        r = await api.get(path, params=params)
        assert r.status_code < 500, (path, params, r.text)


@pytest.mark.parametrize("day", ["9999-12-31", "8999-12-31"])
async def test_a_balance_date_at_the_end_of_the_calendar_is_a_clear_400(api, books, day):
    """The day after 9999-12-31 is past what a datetime holds: refused as out of range, not a 500."""
    _, account, _ = books
    for path in ("/api/ledger_accounts", f"/api/ledger_accounts/{account['id']}",
                 f"/api/ledger_account_categories/{uuid.uuid4()}"):
        r = await api.get(path, params={"balances[as_of_date]": day})
        assert r.status_code == 400 and r.json()["code"] == "timestamp_out_of_range", (path, day, r.text)


async def test_a_nul_character_in_a_string_is_a_clear_400(api):
    r = await api.post("/api/ledgers", {"name": "bad\u0000name"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_request"
    r = await api.post("/api/ledgers", {"name": "ok", "metadata": {"k": "v\u0000"}})
    assert r.status_code == 400


async def test_a_body_nested_past_any_depth_is_a_400_on_every_route(api, books):
    """Arrays nested 100,000 deep, as the body or as any field's value, typed or not (a bulk request's resources are
    kept untyped): a 400, never the interpreter's recursion error."""
    ledger, a, b = books
    txn = (await api.transfer(ledger["id"], a["id"], b["id"], 5)).json()
    deep = "[" * 100_000 + "]" * 100_000
    routes = [("POST", "/api/ledgers"), ("POST", "/api/ledger_accounts"), ("POST", "/api/ledger_transactions"),
              ("PATCH", f"/api/ledger_transactions/{txn['id']}"), ("PATCH", f"/api/ledger_accounts/{a['id']}"),
              ("POST", "/api/ledger_account_categories"), ("POST", "/api/ledger_account_statements"),
              ("POST", "/api/ledger_account_balance_monitors"), ("POST", "/api/webhook_endpoints"),
              ("POST", "/api/bulk_requests")]
    for method, path in routes:
        for body in (deep, '{"metadata": ' + deep + '}', '{"action_type": "create", "resource_type": '
                     '"ledger_transaction", "resources": [{"ledger_entries": ' + deep + '}]}'):
            r = await api.request(method, path, content=body, headers={"content-type": "application/json"})
            assert r.status_code == 400, (method, path, body[:60], r.text)
