"""List parameters in the SDK's brackets array format (name[]=a&name[]=b): taken where documented, 400 otherwise."""

from __future__ import annotations

import uuid


async def test_status_and_id_lists(api):
    ledger = (await api.ledger())["id"]
    a, b = (await api.account(ledger))["id"], (await api.account(ledger))["id"]
    pending = (await api.transfer(ledger, a, b, 1, "pending")).json()["id"]
    posted = (await api.transfer(ledger, a, b, 2)).json()["id"]
    r = await api.get("/api/ledger_transactions", params=[("status[]", "pending"), ("status[]", "posted")])
    assert [t["id"] for t in r.json()] == [pending, posted]
    r = await api.get("/api/ledger_transactions", params=[("status", "pending"), ("status[]", "archived")])
    assert [t["id"] for t in r.json()] == [pending]
    r = await api.get("/api/ledger_transactions", params=[("id[]", posted), ("id[]", str(uuid.uuid4()))])
    assert [t["id"] for t in r.json()] == [posted]


async def test_bad_or_unknown_lists_are_400(api):
    for path, params, code in (
            ("/api/ledger_transactions", [("status[]", "done")], "invalid_parameter"),
            ("/api/ledger_transactions", [("id[]", "nope")], "invalid_parameter"),
            ("/api/ledger_entries", [("ledger_account_lock_version[gte]", "-1")], "invalid_parameter"),
            ("/api/ledger_entries", [("status[]", "pending"), ("status", "done")], "invalid_parameter"),
            ("/api/ledgers", [("id[]", "nope")], "invalid_parameter"),
            ("/api/ledgers", [("name[]", "main")], "unknown_parameter"),
            ("/api/ledger_accounts", [("balances[as_of_lock_version]", "1")], "unknown_parameter"),
            ("/api/ledger_accounts", [("balances[effective_at]", "2026-01-01T00:00:00Z"),
                                      ("balances[as_of_date]", "2026-01-01")], "conflicting_parameters")):
        r = await api.get(path, params=params)
        assert r.status_code == 400 and r.json()["code"] == code, (path, params, r.text)
