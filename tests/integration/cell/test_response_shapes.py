"""What the OpenAPI document says the API answers is what it answers: real answers decode into the documented
types (cell/service/views.py) with unknown fields forbidden, and every operation documents its answer."""

from __future__ import annotations

import msgspec
import pytest

from cell.api.openapi import Problem
from cell.service import views as shapes


def decode(response, status: int, type_):
    assert response.status_code == status, response.text
    return msgspec.json.decode(response.content, type=type_)


async def test_every_answer_has_its_documented_shape(api):
    ledger = decode(await api.post("/api/ledgers", {"name": "books", "metadata": {"k": "v"}}), 201, shapes.Ledger)
    lid = str(ledger.id)
    decode(await api.get(f"/api/ledgers/{lid}"), 200, shapes.Ledger)
    decode(await api.patch(f"/api/ledgers/{lid}", {"description": "d"}), 200, shapes.Ledger)
    decode(await api.get("/api/ledgers"), 200, list[shapes.Ledger])

    cash = decode(await api.post("/api/ledger_accounts", {"name": "cash", "ledger_id": lid, "normal_balance": "debit",
                                                          "currency": "USD"}), 201, shapes.LedgerAccount)
    fees = await api.account(lid, "credit")
    decode(await api.get(f"/api/ledger_accounts/{cash.id}"), 200, shapes.LedgerAccount)
    decode(await api.get(f"/api/ledger_accounts/{cash.id}", params={"balances[effective_at]": "2030-01-01T00:00:00Z"}),
           200, shapes.LedgerAccount)
    decode(await api.patch(f"/api/ledger_accounts/{cash.id}", {"metadata": {"a": "b"}}), 200, shapes.LedgerAccount)
    decode(await api.get("/api/ledger_accounts", params={"ledger_id": lid}), 200, list[shapes.LedgerAccount])

    posted = decode(await api.post("/api/ledger_transactions", {
        "ledger_id": lid, "status": "posted", "external_id": "x-1", "ledger_entries": [
            {"ledger_account_id": str(cash.id), "direction": "debit", "amount": 500,
             "show_resulting_ledger_account_balances": True},
            {"ledger_account_id": fees["id"], "direction": "credit", "amount": 500}]}), 201, shapes.LedgerTransaction)
    assert posted.ledger_entries[0].resulting_ledger_account_balances is not None
    pending = decode(await api.transfer(lid, str(cash.id), fees["id"], 7, status="pending"), 201,
                     shapes.LedgerTransaction)
    assert pending.posted_at is None
    archived = decode(await api.patch(f"/api/ledger_transactions/{pending.id}", {"status": "archived"}), 200,
                      shapes.LedgerTransaction)
    assert archived.archived_at is not None
    reversal = decode(await api.post(f"/api/ledger_transactions/{posted.id}/reversal", {}), 201,
                      shapes.LedgerTransaction)
    assert reversal.reverses_ledger_transaction_id == posted.id
    decode(await api.get(f"/api/ledger_transactions/{posted.id}"), 200, shapes.LedgerTransaction)
    decode(await api.get("/api/ledger_transactions", params={"ledger_id": lid}), 200, list[shapes.LedgerTransaction])
    versions = decode(await api.get(f"/api/ledger_transactions/{pending.id}/versions"), 200,
                      list[shapes.LedgerTransactionVersion])
    assert [v.version for v in versions] == [1, 2]
    every = decode(await api.get("/api/ledger_transaction_versions", params={"ledger_transaction_id": str(pending.id)}),
                   200, list[shapes.LedgerTransactionVersion])
    assert every == versions

    entry = posted.ledger_entries[0]
    decode(await api.get(f"/api/ledger_entries/{entry.id}"), 200, shapes.LedgerEntry)
    listed = decode(await api.get("/api/ledger_entries", params={"ledger_account_id": str(cash.id),
                                                                 "show_balances": "true"}), 200,
                    list[shapes.LedgerEntry])
    assert all(e.resulting_ledger_account_balances is not None for e in listed)

    category = decode(await api.post("/api/ledger_account_categories", {
        "name": "all", "ledger_id": lid, "normal_balance": "credit", "currency": "USD"}), 201,
        shapes.LedgerAccountCategory)
    path = f"/api/ledger_account_categories/{category.id}"
    assert (await api.request("PUT", f"{path}/ledger_accounts/{cash.id}")).status_code == 204
    decode(await api.get(path), 200, shapes.LedgerAccountCategory)
    decode(await api.get(path, params={"balances[effective_at]": "2030-01-01T00:00:00Z"}), 200,
           shapes.LedgerAccountCategory)
    decode(await api.patch(path, {"metadata": {"a": "b"}}), 200, shapes.LedgerAccountCategory)
    decode(await api.get("/api/ledger_account_categories"), 200, list[shapes.LedgerAccountCategory])
    decode(await api.request("DELETE", path), 200, shapes.LedgerAccountCategory)

    problem = await api.transfer(lid, str(cash.id), fees["id"], 0)
    assert problem.headers["content-type"].startswith("application/problem+json")
    assert decode(problem, 400, Problem).code == "invalid_request"


async def test_every_operation_documents_its_answer_and_its_problems(cell_client):
    schema = (await cell_client.get("/schema/openapi.json")).json()
    operations = [(path, method, op) for path, item in schema["paths"].items() if path.startswith("/api/")
                  for method, op in item.items()]
    # ping 1, events 2, monitors 5, statements and settlements 8, categories 9, webhooks and bulk 13, and the rest
    assert len(operations) == 59
    for path, method, op in operations:
        answers = {code: r for code, r in op["responses"].items() if code.startswith("2")}
        assert len(answers) == 1, (path, method)
        [(code, answer)] = answers.items()
        if code == "204":  # nothing follows
            assert "content" not in answer, (path, method)
        else:
            assert "properties" in str(answer["content"]["application/json"]["schema"]), (path, method)
        assert "application/problem+json" in op["responses"]["default"]["content"], (path, method)
    entry = schema["paths"]["/api/ledger_entries"]["get"]["responses"]["200"]
    assert "X-After-Cursor" in entry["headers"]

async def test_settlement_answers_have_their_documented_shape(api):
    lid = (await api.ledger())["id"]
    cash, fees = (await api.account(lid, "debit"))["id"], (await api.account(lid, "credit"))["id"]
    payouts = (await api.account(lid, "debit"))["id"]
    txn = (await api.transfer(lid, cash, fees, 5)).json()
    body = {"settled_ledger_account_id": fees, "contra_ledger_account_id": payouts}
    settled = decode(await api.post("/api/ledger_account_settlements", body), 201, shapes.LedgerAccountSettlement)
    assert settled.amount == 5
    draft = decode(await api.post("/api/ledger_account_settlements", {**body, "status": "drafting"}), 201,
                   shapes.LedgerAccountSettlement)
    path = f"/api/ledger_account_settlements/{draft.id}"
    entry = {"ledger_entry_ids": [e["id"] for e in txn["ledger_entries"] if e["ledger_account_id"] == fees]}
    decode(await api.request("DELETE", f"{path}/ledger_entries", json=entry), 200, shapes.LedgerAccountSettlement)
    decode(await api.patch(f"{path}/ledger_entries", entry), 422, Problem)
    decode(await api.patch(path, {"status": "archived"}), 200, shapes.LedgerAccountSettlement)
    decode(await api.get(path), 200, shapes.LedgerAccountSettlement)
    decode(await api.get("/api/ledger_account_settlements"), 200, list[shapes.LedgerAccountSettlement])


async def test_statement_answers_have_their_documented_shape(api):
    lid = (await api.ledger())["id"]
    cash, fees = (await api.account(lid, "debit"))["id"], (await api.account(lid, "credit"))["id"]
    assert (await api.transfer(lid, cash, fees, 5)).status_code == 201
    statement = decode(await api.post("/api/ledger_account_statements", {
        "ledger_account_id": fees, "effective_at_lower_bound": "2000-01-01T00:00:00Z",
        "effective_at_upper_bound": "2100-01-01T00:00:00Z"}), 201, shapes.LedgerAccountStatement)
    assert statement.ending_balance.posted_balance.amount == 5
    assert decode(await api.get(f"/api/ledger_account_statements/{statement.id}"), 200,
                  shapes.LedgerAccountStatement) == statement


@pytest.mark.parametrize("shape", [shapes.Ledger, shapes.LedgerAccount, shapes.LedgerEntry, shapes.LedgerTransaction,
                                   shapes.LedgerAccountCategory])
def test_the_shapes_refuse_a_field_they_do_not_describe(shape):
    # The contract test above relies on this: an undocumented field in an answer fails it.
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.json.decode(b'{"surprise": 1}', type=shape)
