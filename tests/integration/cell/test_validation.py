"""Bad input is a 4xx problem+json with a stable code, and writes nothing. No input produces a 5xx."""

import json
import uuid

import pytest


def entries(a, b, amount_a=100, amount_b=100):
    return [{"ledger_account_id": a["id"], "direction": "debit", "amount": amount_a},
            {"ledger_account_id": b["id"], "direction": "credit", "amount": amount_b}]


async def assert_nothing_written(api, ledger):
    r = await api.get("/api/ledger_transactions", params={"ledger_id": ledger["id"]})
    assert r.status_code == 200
    assert r.json() == []


@pytest.mark.parametrize("amount", [10.0, 10.5, "100", -5, 0, 2**63, 10**30, None, True, [1]])
async def test_bad_amounts_are_refused(api, books, amount):
    ledger, a, b = books
    raw = json.dumps({"ledger_id": ledger["id"], "status": "posted",
                      "ledger_entries": entries(a, b, amount, amount)})
    r = await api.post("/api/ledger_transactions", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "invalid_request"
    await assert_nothing_written(api, ledger)


@pytest.mark.parametrize("mutate, status, code", [
    (lambda body, other: body["ledger_entries"].__setitem__(1, {**body["ledger_entries"][1], "amount": 99}),
     422, "entries_must_balance"),
    (lambda body, other: body["ledger_entries"].__setitem__(0, {**body["ledger_entries"][0],
                                                                 "ledger_account_id": "00000000-0000-4000-8000-000000000000"}),
     422, "ledger_account_not_found"),
    (lambda body, other: body["ledger_entries"].__setitem__(0, {**body["ledger_entries"][0],
                                                                 "ledger_account_id": other["id"]}),
     422, "ledger_account_in_other_ledger"),
    (lambda body, other: body["ledger_entries"].pop(), 422, "entries_required"),
    (lambda body, other: body.__setitem__("ledger_entries", []), 400, "invalid_request"),
    (lambda body, other: body.__setitem__("ledger_entries", body["ledger_entries"] * 300), 422, "too_many_entries"),
    (lambda body, other: body.__setitem__("ledger_id", "00000000-0000-4000-8000-000000000000"), 422, "ledger_not_found"),
    (lambda body, other: body.__setitem__("ledger_id", "not-a-uuid"), 400, "invalid_request"),
    (lambda body, other: body.__setitem__("status", "void"), 400, "invalid_request"),
    (lambda body, other: body.__setitem__("surprise", 1), 400, "invalid_request"),
    (lambda body, other: body.__setitem__("effective_at", "2026-01-01T00:00:00"), 400, "invalid_request"),
    (lambda body, other: body.__setitem__("metadata", {"k": 1}), 400, "invalid_request"),
    (lambda body, other: body.__setitem__("metadata", {f"k{i}": "v" for i in range(65)}), 400, "invalid_request"),
    (lambda body, other: body["ledger_entries"][0].__setitem__("direction", "up"), 400, "invalid_request"),
    (lambda body, other: body["ledger_entries"][0].__setitem__("available_balance_amount", {"gte": 1.5}),
     400, "invalid_request"),
    (lambda body, other: body["ledger_entries"][0].__setitem__("available_balance_amount", {"above": 0}),
     400, "invalid_request"),
])
async def test_invalid_postings_are_refused_with_a_code(api, books, mutate, status, code):
    ledger, a, b = books
    other_ledger = await api.ledger("other")
    other = await api.account(other_ledger["id"], "credit")
    body = {"ledger_id": ledger["id"], "status": "posted", "ledger_entries": entries(a, b)}
    mutate(body, other)
    r = await api.post("/api/ledger_transactions", body)
    assert r.status_code == status, r.text
    problem = r.json()
    assert problem["code"] == code
    assert problem["status"] == status and problem["detail"]
    await assert_nothing_written(api, ledger)
    assert (await api.balances(a["id"]))["pending_balance"]["amount"] == 0


async def test_currencies_must_balance_each_on_its_own(api):
    ledger = await api.ledger()
    usd = await api.account(ledger["id"], "debit", "USD")
    eur = await api.account(ledger["id"], "credit", "EUR")
    r = await api.transfer(ledger["id"], usd["id"], eur["id"], 100)
    assert r.status_code == 422 and r.json()["code"] == "entries_must_balance"


@pytest.mark.parametrize("raw", [b"{bad", b"", b"[]", b"null", b'{"ledger_id": "x"', "\u00e9".encode("latin-1")])
async def test_malformed_bodies_are_400(api, raw):
    r = await api.post("/api/ledger_transactions", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["code"] in ("malformed_json", "invalid_request")


async def test_oversized_body_is_413(api, books):
    ledger, a, b = books
    raw = json.dumps({"ledger_id": ledger["id"], "description": "x" * 2_000_000, "ledger_entries": entries(a, b)})
    r = await api.post("/api/ledger_transactions", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["code"] == "body_too_large"
    await assert_nothing_written(api, ledger)


def nested_bulk(depth: int) -> list[str]:
    """Bulk request bodies whose one resource nests `depth` arrays in it, in an entry list and in metadata."""
    deep = "[" * depth + "]" * depth
    return ['{"action_type": "create", "resource_type": "ledger_transaction", "resources": [' + resource + ']}'
            for resource in ('{"ledger_entries": ' + deep + '}', '{"metadata": {"a": ' + deep + '}}')]


@pytest.mark.parametrize("depth", [32, 500, 964, 975, 990, 100_000])
async def test_a_bulk_resource_nested_too_deeply_is_400_and_nothing_is_written(api, depth):
    """A resource is kept untyped until processed: nested past the bound (32 arrays and objects) it is refused at
    once, however deep, where deep enough it exhausted the interpreter's recursion (a 500) while being decoded or
    stored."""
    for body in nested_bulk(depth):
        r = await api.post("/api/bulk_requests", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, r.text
        # past the interpreter's depth (where, depends on the stack the decoder runs on) the body is malformed
        assert r.json()["code"] in (("invalid_request",) if depth <= 500 else ("invalid_request", "malformed_json"))
    assert (await api.get("/api/bulk_requests")).json() == []


async def test_a_bulk_resource_nested_to_the_bound_is_taken(api):
    for body in nested_bulk(30):  # the resource, its field's value (an object in metadata), 30 arrays: 32 at most
        r = await api.post("/api/bulk_requests", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 201, r.text


@pytest.mark.parametrize("body, code", [
    ({"name": "a", "normal_balance": "sideways", "currency": "USD"}, "invalid_request"),
    ({"name": "a", "normal_balance": "credit", "currency": "usd"}, "invalid_request"),
    ({"name": "a", "normal_balance": "credit", "currency": "ZZZ"}, "currency_exponent_required"),
    ({"name": "a", "normal_balance": "credit", "currency": "USD", "currency_exponent": 40}, "invalid_request"),
    ({"name": "", "normal_balance": "credit", "currency": "USD"}, "invalid_request"),
])
async def test_invalid_accounts_are_refused(api, body, code):
    ledger = await api.ledger()
    r = await api.post("/api/ledger_accounts", {"ledger_id": ledger["id"], **body})
    assert r.status_code == 400, r.text
    assert r.json()["code"] == code
    r = await api.get("/api/ledger_accounts", params={"ledger_id": ledger["id"]})
    assert r.json() == []


@pytest.mark.parametrize("currency, exponent", [("THB", 2), ("IDR", 2), ("UGX", 0), ("IQD", 3), ("CLF", 4),
                                                ("BTC", 8)])
async def test_an_iso_currencys_exponent_is_its_minor_units_unless_given(api, currency, exponent):
    ledger = await api.ledger()
    r = await api.post("/api/ledger_accounts", {"ledger_id": ledger["id"], "name": "a", "normal_balance": "credit",
                                                "currency": currency})
    assert r.status_code == 201 and r.json()["balances"]["posted_balance"]["currency_exponent"] == exponent, r.text
    r = await api.post("/api/ledger_accounts", {"ledger_id": ledger["id"], "name": "b", "normal_balance": "credit",
                                                "currency": currency, "currency_exponent": 5})
    assert r.status_code == 201 and r.json()["balances"]["posted_balance"]["currency_exponent"] == 5, r.text


async def test_account_in_unknown_ledger_is_refused(api):
    r = await api.post("/api/ledger_accounts", {"ledger_id": "00000000-0000-4000-8000-000000000000", "name": "a",
                                                "normal_balance": "credit", "currency": "USD"})
    assert r.status_code == 422 and r.json()["code"] == "ledger_not_found"


@pytest.mark.parametrize("params, code", [
    ({"per_page": "0"}, "invalid_parameter"),
    ({"per_page": "1000"}, "invalid_parameter"),
    ({"per_page": "ten"}, "invalid_parameter"),
    ({"after_cursor": "garbage!"}, "invalid_cursor"),
    ({"colour": "red"}, "unknown_parameter"),
    ({"available_balance_amount[between]": "1"}, "invalid_parameter"),
    ({"available_balance_amount[gte]": "1.5"}, "invalid_parameter"),
    ({"created_at[not_eq]": "2026-01-01T00:00:00Z"}, "invalid_parameter"),  # not_eq is the balance filters' alone
])
async def test_bad_list_parameters_are_400(api, params, code):
    r = await api.get("/api/ledger_accounts", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == code


async def test_unknown_ids_are_404_including_malformed_ones(api):
    for path in ("/api/ledgers/00000000-0000-4000-8000-000000000000", "/api/ledgers/nope",
                 "/api/ledger_accounts/xyz", "/api/ledger_transactions/123", "/api/ledger_entries/abc",
                 "/api/ledger_transactions/00000000-0000-4000-8000-000000000000/versions"):
        r = await api.get(path)
        assert r.status_code == 404, (path, r.text)
        assert r.json()["code"] == "not_found"


OUT_OF_RANGE_TIMES = ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
                      "9999-12-31T23:59:59Z", "1899-12-31T23:59:59Z", "1900-01-01T00:00:00+00:01",
                      "9000-01-01T00:00:00Z"]


@pytest.mark.parametrize("effective_at", OUT_OF_RANGE_TIMES)
async def test_effective_at_outside_the_range_is_400_and_writes_nothing(api, books, effective_at):
    ledger, a, b = books
    r = await api.post("/api/ledger_transactions", {"ledger_id": ledger["id"], "status": "posted",
                                                    "effective_at": effective_at, "ledger_entries": entries(a, b)})
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "timestamp_out_of_range"
    await assert_nothing_written(api, ledger)


async def test_times_at_the_ends_of_the_range_are_accepted_and_readable(api, books):
    ledger, a, b = books
    for effective_at in ("1900-01-01T00:00:00Z", "8999-12-31T23:59:59.999999Z", "8999-12-31T23:59:59-00:00"):
        r = await api.transfer(ledger["id"], a["id"], b["id"], 10, effective_at=effective_at)
        assert r.status_code == 201, r.text
        txn = r.json()
        assert (await api.get(f"/api/ledger_transactions/{txn['id']}")).status_code == 200
        assert (await api.get("/api/ledger_entries", params={"ledger_transaction_id": txn["id"]})).status_code == 200
        r = await api.post(f"/api/ledger_transactions/{txn['id']}/reversal", {"effective_at": effective_at})
        assert r.status_code == 201, r.text
    assert len((await api.get("/api/ledger_transactions", params={"ledger_id": ledger["id"]})).json()) == 6


@pytest.mark.parametrize("effective_at", OUT_OF_RANGE_TIMES)
async def test_reversal_effective_at_outside_the_range_is_400(api, books, effective_at):
    ledger, a, b = books
    txn = (await api.transfer(ledger["id"], a["id"], b["id"], 10)).json()
    r = await api.post(f"/api/ledger_transactions/{txn['id']}/reversal", {"effective_at": effective_at})
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "timestamp_out_of_range"
    assert (await api.get(f"/api/ledger_transactions/{txn['id']}")).json()["reversed_by_ledger_transaction_id"] is None


@pytest.mark.parametrize("effective_at", OUT_OF_RANGE_TIMES)
async def test_time_filters_outside_the_range_are_400(api, books, effective_at):
    _, a, _ = books
    for path, name in ((f"/api/ledger_accounts/{a['id']}", "balances[effective_at]"),
                       (f"/api/ledger_accounts/{a['id']}", "balances[effective_at_lower_bound]"),
                       (f"/api/ledger_accounts/{a['id']}", "balances[effective_at_upper_bound]"),
                       ("/api/ledger_transactions", "effective_at[gte]"),
                       ("/api/ledger_transactions", "effective_at[lt]")):
        r = await api.get(path, params={name: effective_at})
        assert r.status_code == 400, (name, r.text)
        assert r.json()["code"] == "timestamp_out_of_range", name


async def test_one_currency_with_two_exponents_is_refused(api, books):
    ledger, usd2, _ = books
    usd3 = await api.account(ledger["id"], "credit", currency="USD", currency_exponent=3)
    r = await api.transfer(ledger["id"], usd2["id"], usd3["id"], 100)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "currency_exponent_mismatch"
    await assert_nothing_written(api, ledger)
    assert (await api.balances(usd3["id"]))["posted_balance"]["amount"] == 0


async def test_a_body_that_is_not_utf8_is_400(api, books):
    ledger, a, b = books
    txn = (await api.transfer(ledger["id"], a["id"], b["id"], 5)).json()
    name, description = b'{"name":"latin1 \xe9"}', b'{"description":"latin1 \xe9"}'
    for method, path, body in (("POST", "/api/ledgers", name), ("PATCH", f"/api/ledgers/{ledger['id']}", name),
                               ("POST", "/api/ledger_accounts", name),
                               ("POST", "/api/ledger_transactions", description),
                               ("PATCH", f"/api/ledger_transactions/{txn['id']}", description),
                               ("POST", f"/api/ledger_transactions/{txn['id']}/reversal", description)):
        r = await api.request(method, path, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, (path, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "malformed_json"
    assert [x["name"] for x in (await api.get("/api/ledgers")).json()] == [ledger["name"]]


@pytest.mark.parametrize("content_type", [None, "application/xml", "text/xml", "text/plain", "text/json",
                                          "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                                          "application/json-patch+json", "application/json; charset=latin-1", ""])
async def test_a_body_not_declared_as_json_is_415(api, books, content_type):
    ledger, _, _ = books
    headers = {} if content_type is None else {"content-type": content_type}
    for method, path in (("POST", "/api/ledgers"), ("PATCH", f"/api/ledgers/{ledger['id']}")):
        r = await api.request(method, path, content=b'{"name": "sneaky"}', headers=headers)
        assert r.status_code == 415, (content_type, path, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "unsupported_media_type"
    assert [x["name"] for x in (await api.get("/api/ledgers")).json()] == [ledger["name"]]


async def test_forms_and_multipart_bodies_are_415(api):
    for kw in ({"data": {"name": "form"}}, {"files": {"name": ("n.json", b'{"name": "multipart"}')}}):
        r = await api.request("POST", "/api/ledgers", **kw)
        assert r.status_code == 415, r.text
        assert r.json()["code"] == "unsupported_media_type"
    assert (await api.get("/api/ledgers")).json() == []


async def test_json_with_parameters_and_an_empty_body_without_a_type_are_accepted(api, books):
    ledger, a, b = books
    r = await api.post("/api/ledgers", content=b'{"name": "typed"}',
                       headers={"content-type": "Application/JSON; charset=UTF-8"})
    assert r.status_code == 201, r.text
    txn = (await api.transfer(ledger["id"], a["id"], b["id"], 5)).json()
    r = await api.request("POST", f"/api/ledger_transactions/{txn['id']}/reversal")  # no body: the defaults
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("path, methods", [
    ("/api/ledgers", {"GET", "POST", "OPTIONS"}),
    ("/api/ledgers/{id}", {"GET", "PATCH", "DELETE", "OPTIONS"}),
    ("/api/ledger_accounts", {"GET", "POST", "OPTIONS"}),
    ("/api/ledger_accounts/{id}", {"GET", "PATCH", "DELETE", "OPTIONS"}),
    ("/api/ledger_transactions/{id}", {"GET", "PATCH", "OPTIONS"}),
    ("/api/ledger_transactions/{id}/reversal", {"POST", "OPTIONS"}),
    ("/api/ledger_entries", {"GET", "OPTIONS"}),
])
async def test_options_lists_every_method_of_the_path(api, path, methods):
    r = await api.request("OPTIONS", path.replace("{id}", str(uuid.uuid4())))
    assert r.status_code in (200, 204), r.text
    assert {m.strip() for m in r.headers["allow"].split(",")} == methods


@pytest.mark.parametrize("entry, code", [
    ({}, "amount_required"), ({"amount_string": "0"}, "invalid_amount"),
    ({"amount_string": str(2**63)}, "invalid_amount"), ({"amount": 5, "amount_string": "6"}, "amount_mismatch"),
    ({"amount_string": "1e3"}, "invalid_request"), ({"amount_string": 100}, "invalid_request")])
async def test_amount_string_is_an_exact_integer_agreeing_with_amount(api, books, entry, code):
    ledger, a, b = books
    r = await api.post("/api/ledger_transactions", {"status": "posted", "ledger_entries": [
        {"ledger_account_id": a["id"], "direction": "debit", **entry},
        {"ledger_account_id": b["id"], "direction": "credit", "amount": 100}]})
    assert r.status_code == 400 and r.json()["code"] == code, r.text
    await assert_nothing_written(api, ledger)


@pytest.mark.parametrize("extra, code", [
    ({"effective_date": "2024-01-02", "effective_at": "2024-01-01T23:00:00Z"}, "effective_date_mismatch"),
    ({"ledgerable_type": "payment_order"}, "invalid_request"),
    ({"ledgerable_type": "invoice", "ledgerable_id": "x"}, "invalid_request")])
async def test_inconsistent_sdk_fields_are_refused(api, books, extra, code):
    ledger, a, b = books
    r = await api.post("/api/ledger_transactions", {"ledger_entries": entries(a, b), **extra})
    assert r.status_code == 400 and r.json()["code"] == code, r.text
    await assert_nothing_written(api, ledger)


async def test_an_entry_is_effective_when_its_transaction_is(api, books):
    ledger, a, b = books
    at = "2024-02-03T04:05:06Z"
    r = await api.post("/api/ledger_transactions", {"ledger_entries": [
        {"ledger_account_id": a["id"], "direction": "debit", "amount": 1, "effective_at": "2024-02-03T05:05:06+01:00"},
        {"ledger_account_id": b["id"], "direction": "credit", "amount": 1, "effective_at": at}]})
    assert r.status_code == 201, r.text
    assert r.json()["effective_at"] == at and {e["effective_at"] for e in r.json()["ledger_entries"]} == {at}
    r = await api.post("/api/ledger_transactions", {"effective_at": at, "ledger_entries": [
        {"ledger_account_id": a["id"], "direction": "debit", "amount": 1, "effective_at": "2024-02-03T04:05:07Z"},
        {"ledger_account_id": b["id"], "direction": "credit", "amount": 1}]})
    assert r.status_code == 400 and r.json()["code"] == "entry_effective_at_mismatch", r.text


async def test_a_patch_holds_metadata_to_the_keys_a_create_may_give(api, books):
    """One bound for metadata, a create's and a PATCH's merge alike (commands.METADATA_KEYS_MAX): an account made
    with the most keys a create takes keeps them, a PATCH that would add one more is refused and changes nothing,
    and one that swaps a key for another is taken."""
    _, account, _ = books
    full = {f"k{i}": "v" for i in range(64)}
    r = await api.patch(f"/api/ledger_accounts/{account['id']}", json={"metadata": full})
    assert r.status_code == 200, r.text
    r = await api.patch(f"/api/ledger_accounts/{account['id']}", json={"metadata": {"one_more": "v"}})
    assert r.status_code == 400 and r.json()["code"] == "too_many_metadata_keys", r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    r = await api.patch(f"/api/ledger_accounts/{account['id']}", json={"metadata": {"k0": "", "one_more": "v"}})
    assert r.status_code == 200, r.text
    assert set(r.json()["metadata"]) == set(full) - {"k0"} | {"one_more"}
