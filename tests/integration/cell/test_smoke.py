"""The first thing a new user does: a ledger, two accounts, a transfer, balances."""


async def test_transfer_moves_money_between_accounts(api):
    ledger = await api.ledger()
    cash = await api.account(ledger["id"], "debit")
    revenue = await api.account(ledger["id"], "credit")
    r = await api.transfer(ledger["id"], cash["id"], revenue["id"], 1500)
    assert r.status_code == 201, r.text
    txn = r.json()
    assert txn["status"] == "posted"
    assert [e["ledger_account_lock_version"] for e in txn["ledger_entries"]] == [1, 1]
    b = await api.balances(cash["id"])
    assert b["posted_balance"]["amount"] == 1500
    assert b["available_balance"]["amount"] == 1500
    b = await api.balances(revenue["id"])
    assert b["posted_balance"] == {"credits": 1500, "debits": 0, "amount": 1500, "currency": "USD",
                                   "currency_exponent": 2,
                                   "credits_string": "1500", "debits_string": "0", "amount_string": "1500"}
