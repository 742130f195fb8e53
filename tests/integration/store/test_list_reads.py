"""The API's lists of accounts, categories, monitors, settlements, bulk results, webhook deliveries and events read what
they return, whatever the tenant's other rows grow to, in the request sessions (db.INDEX_PLANS) on plans made while the
tables were tiny (as test_request_reads does for entries, transactions and balances). Before: a category's accounts
~100,000 more buffers at 20,000 more accounts of the tenant (each account walked had its balance row read), an account's
categories ~25,000 (every category walked had its sums computed), accounts by metadata ~470 with any plan (row-level
security kept `@>` off the metadata index), an account's monitors and settlements, a bulk request's results, failed
deliveries, a ledger's categories and events of a name or resource 110-630, events since a time (the stream read from
its start) ~545, events up to a time (the stream read to its end) ~543, an endpoint's deliveries (the tenant's walked
for them) ~630.

Not here: a category or metadata filter naming more than READ_BY_IDS_MAX accounts (a walk of the tenant's accounts in
seq order, which finds a page soon when so many are in it)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from routine_helpers import NO_AUTOVACUUM, RequestSession, new_account, new_category, new_ledger

from cell.store import (
    accounts,
    bulk,
    categories,
    events,
    monitors,
    settlements,
    webhooks,
)
from cell.store.db import INDEX_PLANS, _init_connection

AT = datetime(2026, 3, 1, 12, tzinfo=UTC)
LATER = datetime(2099, 1, 1, tzinfo=UTC)  # after every event (a poll for those since its last finds none)
LATE = AT + timedelta(days=30)  # the time of the tenant's transactions' events, after its monitor's (at AT)
GROWTH = 20_000  # the tenant's accounts, bulk results and deliveries written after the plans are made; a quarter
                 # as many categories, monitors and settlements
EVENTS = ("INSERT INTO events (id, tenant_id, resource, event_name, entity_id, data, event_time, txid, position,"
          " event_time_max, event_time_floor) SELECT gen_random_uuid(), $1, $2, $3, gen_random_uuid(), '{}', $6,"
          " '1'::xid8, g, $6, $6"
          " FROM generate_series($4::bigint, $5) g")
TRIGGERED = ("ledger_account_balance_monitor", "ledger_account_balance_monitor.triggered")
DELIVERIES = ("INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id, event_position, entity_id,"
              " event_name, status, give_up_at) SELECT gen_random_uuid(), $1, $2, gen_random_uuid(), g,"
              " gen_random_uuid(), 'ledger_transaction.created', $3, now() FROM generate_series(1, $4) g")


async def test_the_lists_read_as_much_after_a_long_history_as_before_any(make_database):
    url = make_database("list_reads")
    owner = await asyncpg.connect(url)
    try:
        await owner.execute(NO_AUTOVACUUM)
        await _init_connection(owner)
        tenant, ledger = await new_ledger(owner)
        small_ledger = uuid.uuid4()
        await owner.execute("INSERT INTO ledgers (id, tenant_id, name) VALUES ($1, $2, 'l')", small_ledger, tenant)
        mine, other = [(await new_account(owner, "debit", tenant=tenant, ledger=ledger)).id for _ in range(2)]
        few = [(await new_account(owner, "debit", tenant=tenant, ledger=small_ledger)).id for _ in range(3)]
        await owner.execute("UPDATE ledger_accounts SET metadata = '{\"user\": \"u-1\"}' WHERE id = ANY($1)", few)
        category = await new_category(owner, tenant, small_ledger, few)
        for _ in range(3):
            await new_category(owner, tenant, ledger, [mine])
            assert await monitors.insert(owner, uuid.uuid4(), tenant, ledger_account_id=mine, description=None,
                                         field="posted_balance_amount", operator="greater_than", value=1, metadata={})
        settlement, settling = uuid.uuid4(), uuid.uuid4()
        await settlements.insert(owner, settlement, tenant, ledger_id=ledger, settled_id=mine, contra_id=other,
                                 currency="USD", currency_exponent=2, status="pending", allow_either_direction=True,
                                 upper=AT + timedelta(days=1), description=None, metadata={})
        await owner.execute("UPDATE ledger_account_settlements SET ledger_transaction_id = $1 WHERE id = $2", settling,
                            settlement)
        request, busy_request = uuid.uuid4(), uuid.uuid4()
        for r in (request, busy_request):
            await bulk.insert_request(owner, r, tenant, action_type="create", resource_type="ledger_account",
                                      metadata={}, resources=[{}])
        await bulk.insert_results(owner, tenant, request, [(i, "ledger_account", uuid.uuid4(), {}, "successful", None)
                                                           for i in range(3)])
        endpoint, busy_endpoint = uuid.uuid4(), uuid.uuid4()
        for e in (endpoint, busy_endpoint):
            await webhooks.insert_endpoint(owner, e, tenant, url="https://example.com/hook", event_names=[],
                                           description=None, metadata={}, key="k")
        await owner.execute(DELIVERIES, tenant, endpoint, "failed", 3)
        await owner.execute(EVENTS, tenant, *TRIGGERED, 1, 3, AT)  # a month before the history that follows
        await owner.execute(EVENTS, tenant, "ledger_transaction", "ledger_transaction.created", 4, 4, LATE)
        await owner.execute("ANALYZE")
        page = {"after_seq": 0, "limit": 5}  # each read below returns 1-3 rows: a walk goes to the end
        reads = {
            "accounts": lambda c: accounts.list_page(c, tenant, **page),
            "accounts_of_category": lambda c: accounts.list_page(c, tenant, category_id=category, **page),
            "accounts_of_ledger": lambda c: accounts.list_page(c, tenant, ledger_id=small_ledger, **page),
            "accounts_with_metadata": lambda c: accounts.list_page(c, tenant, metadata={"user": "u-1"}, **page),
            "category": lambda c: categories.fetch(c, tenant, category),
            "category_at_effective_time": lambda c: categories.fetch(c, tenant, category, at=AT),
            "categories_of_account": lambda c: categories.list_page(c, tenant, ledger_account_id=mine, **page),
            "categories_of_ledger": lambda c: categories.list_page(c, tenant, ledger_id=small_ledger, **page),
            "monitors_of_account": lambda c: monitors.list_page(c, tenant, ledger_account_id=mine, **page),
            "settlements_of_account": lambda c: settlements.list_page(c, tenant, settled_ledger_account_id=mine,
                                                                      **page),
            "settlements_of_transaction": lambda c: settlements.list_page(c, tenant, ledger_transaction_id=settling,
                                                                          **page),
            "bulk_requests": lambda c: bulk.list_requests(c, tenant, status=None, action_type=None,
                                                          resource_type=None, metadata=None, **page),
            "bulk_results_of_request": lambda c: bulk.list_results(c, tenant, request_id=request, entity_type=None,
                                                                   status=None, entity_id=None, **page),
            "deliveries_of_endpoint": lambda c: webhooks.list_deliveries(c, tenant, endpoint_id=endpoint, status=None,
                                                                         **page),
            "failed_deliveries": lambda c: webhooks.list_deliveries(c, tenant, endpoint_id=None, status="failed",
                                                                    **page),
            "endpoints": lambda c: webhooks.list_endpoints(c, tenant, 0, 5),
            "events_of_name": lambda c: events.list_page(c, tenant, after_position=0, limit=5, event_name=TRIGGERED[1]),
            "events_of_resource": lambda c: events.list_page(c, tenant, after_position=0, limit=5, resource=TRIGGERED[0]),
            "events_since": lambda c: events.list_page(c, tenant, after_position=0, limit=5, event_time_start=LATER),
            "events_until": lambda c: events.list_page(c, tenant, after_position=0, limit=5,
                                                       event_time_end=AT + timedelta(days=1)),
        }
        session = await RequestSession.open(url, tenant, INDEX_PLANS)
        for _ in range(6):  # the plans are made here (a generic plan from the sixth run on)
            before = {name: await session.buffers(read) for name, read in reads.items()}
        await owner.execute(
            "WITH a AS (INSERT INTO ledger_accounts (id, tenant_id, ledger_id, name, normal_balance, currency,"
            " currency_exponent, metadata) SELECT gen_random_uuid(), $1, $2, 'a', 'debit', 'USD', 2,"
            " jsonb_build_object('user', 'u' || g) FROM generate_series(2, $3 + 1) g RETURNING id) INSERT INTO account_balances (account_id, tenant_id, pending_debits, pending_credits,"
            " posted_debits, posted_credits, lock_version) SELECT id, $1, 0, 0, 0, 0, 0 FROM a", tenant, ledger, GROWTH)
        await owner.execute(
            "WITH c AS (INSERT INTO ledger_account_categories (id, tenant_id, ledger_id, name, normal_balance, currency,"
            " currency_exponent) SELECT gen_random_uuid(), $1, $2, 'c', 'debit', 'USD', 2 FROM generate_series(1, $3)"
            " RETURNING id) INSERT INTO ledger_account_category_closure (category_id, account_id, tenant_id, reachable)"
            " SELECT id, $4, $1, true FROM c", tenant, ledger, GROWTH // 4, other)
        await owner.execute(
            "INSERT INTO ledger_account_balance_monitors (id, tenant_id, ledger_account_id, alert_field, alert_operator,"
            " alert_value, triggered, lock_version) SELECT gen_random_uuid(), $1, $2, 'posted_balance_amount',"
            " 'greater_than', 1, false, 0 FROM generate_series(1, $3)", tenant, other, GROWTH // 4)
        await owner.execute(
            "INSERT INTO ledger_account_settlements (id, tenant_id, ledger_id, settled_ledger_account_id,"
            " contra_ledger_account_id, currency, currency_exponent, status, allow_either_direction,"
            " effective_at_upper_bound, ledger_transaction_id) SELECT gen_random_uuid(), $1, $2, $3, $4, 'USD', 2,"
            " 'posted', true, now(), gen_random_uuid() FROM generate_series(1, $5)", tenant, ledger, other, mine,
            GROWTH // 4)
        await owner.execute(
            "INSERT INTO bulk_results (id, tenant_id, request_id, resource_index, entity_type, entity_id, entity,"
            " status) SELECT gen_random_uuid(), $1, $2, g, 'ledger_account', gen_random_uuid(), '{}', 'successful'"
            " FROM generate_series(1, $3) g", tenant, busy_request, GROWTH)
        await owner.execute("UPDATE bulk_requests SET status = 'completed' WHERE id = $1", busy_request)
        await owner.execute(DELIVERIES, tenant, busy_endpoint, "succeeded", GROWTH)
        await owner.execute(EVENTS, tenant, "ledger_transaction", "ledger_transaction.created", 5, 4 + GROWTH, LATE)
        grown = {name: await session.buffers(read) - before[name] for name, read in reads.items()}
        # Measured: at most 15 more (the same rows, an index a level deeper); a walk is 100 to 100,000.
        assert max(grown.values()) < 40, grown
        await owner.execute("ANALYZE")  # the statistics of the tables as they are now: every plan is made again
        for _ in range(6):
            analyzed = {name: await session.buffers(read) for name, read in reads.items()}
        assert max(analyzed.values()) < 60, analyzed  # measured: 2-28
        await session.conn.close()
    finally:
        await owner.close()


@pytest.mark.parametrize("by_ids_max", [accounts.READ_BY_IDS_MAX, 2])
@pytest.mark.parametrize("filters", ["category", "metadata", "both"])
async def test_accounts_named_by_a_category_or_metadata_are_listed_alike_read_by_id_or_by_a_walk(
        make_database, monkeypatch, by_ids_max, filters):
    monkeypatch.setattr(accounts, "READ_BY_IDS_MAX", by_ids_max)
    url = make_database("named_accounts")
    owner = await asyncpg.connect(url)
    try:
        await _init_connection(owner)
        tenant, ledger = await new_ledger(owner)
        every = [(await new_account(owner, "debit", tenant=tenant, ledger=ledger)).id for _ in range(12)]
        in_category, with_metadata = every[1::2], every[::3]  # 6 and 4 of the 12, 2 in both, between the others
        await owner.execute("UPDATE ledger_accounts SET metadata = '{\"tier\": \"gold\", \"n\": \"1\"}'"
                            " WHERE id = ANY($1)", with_metadata)
        category = await new_category(owner, tenant, ledger, in_category)
        elsewhere, elsewhere_ledger = await new_ledger(owner)  # another tenant's account of the same metadata
        other = (await new_account(owner, "debit", tenant=elsewhere, ledger=elsewhere_ledger)).id
        await owner.execute("UPDATE ledger_accounts SET metadata = '{\"tier\": \"gold\"}' WHERE id = $1", other)
        session = await RequestSession.open(url, tenant, INDEX_PLANS)
        given = {"category": {"category_id": category}, "metadata": {"metadata": {"tier": "gold"}},
                 "both": {"category_id": category, "metadata": {"tier": "gold"}}}[filters]
        wanted = {"category": in_category, "metadata": with_metadata,
                  "both": [a for a in in_category if a in with_metadata]}[filters]
        listed, after = [], 0
        while page := await accounts.list_page(session.conn, tenant, after_seq=after, limit=3, **given):
            listed += [row["id"] for row in page]
            after = page[-1]["seq"]
        assert listed == wanted
        assert await accounts.list_page(session.conn, tenant, after_seq=0, limit=3, category_id=uuid.uuid4()) == []
        # The routine keeps the policy's rule: a session acting for a tenant gets no other tenant's accounts, one
        # acting for none gets nothing.
        matching = "SELECT ledger_accounts_matching($1, $2::jsonb, 10)"
        assert await session.conn.fetch(matching, elsewhere, {"tier": "gold"}) == []
        assert [r[0] for r in await session.conn.fetch(matching, tenant, {"tier": "gold"})] != []
        await session.conn.execute("SELECT set_config('ledger.tenant', '', false)")
        assert await session.conn.fetch(matching, tenant, {"tier": "gold"}) == []
        await session.conn.close()
    finally:
        await owner.close()
