"""Modern Treasury's official SDK on bulk requests, bulk results and webhook signatures: `bulk_requests.create /
retrieve / list`, `bulk_results.list / retrieve` with their typed entities, and `webhooks.validate_signature` on
what the ledger signs."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import httpx
import modern_treasury
import msgspec
import pytest
from modern_treasury.types import BulkRequest, BulkResult, LedgerAccount, LedgerTransaction
from modern_treasury.types.bulk_result import EntityBulkError

from cell.ledger.webhooks import signature
from cell.service.events import webhook_body
from cell.store.db import create_pool
from worker import bulk as worker_bulk
from worker.settings import load_settings as worker_settings


@pytest.fixture
async def process_bulk(sdk_platform):
    """The workers' bulk processing (worker.bulk.process_for), run in the test on the SDK cell's database."""
    cell_database_url = sdk_platform.cell_database_url
    pool = await create_pool(cell_database_url, min_size=1, max_size=4, role="ledger_worker")  # as workers run
    settings = worker_settings({}, database_url=cell_database_url, posting_mode="sync", bulk_poll_s=0.05)

    async def run(seconds: float = 0.5) -> int:
        return await worker_bulk.process_for(pool, settings, seconds)

    yield run
    await pool.close()


async def _accounts(client):
    ledger = await client.ledgers.create(name="bulk-sdk")
    cash = await client.ledger_accounts.create(name="cash", ledger_id=ledger.id, normal_balance="debit",
                                               currency="USD")
    wallet = await client.ledger_accounts.create(name="wallet", ledger_id=ledger.id, normal_balance="credit",
                                                 currency="USD")
    return ledger, cash, wallet


async def test_a_bulk_request_and_its_results_through_the_sdk(mt, process_bulk):
    client = await mt()
    ledger, cash, wallet = await _accounts(client)
    resources = [{"status": "posted", "external_id": f"sdk-{i}", "ledger_entries": [
        {"ledger_account_id": cash.id, "direction": "debit", "amount": 100 + i},
        {"ledger_account_id": wallet.id, "direction": "credit", "amount": 100 + i}]} for i in range(3)]
    resources.append({"status": "posted", "ledger_entries": [
        {"ledger_account_id": cash.id, "direction": "debit", "amount": 1}]})
    made = await client.bulk_requests.create(action_type="create", resource_type="ledger_transaction",
                                             resources=resources, metadata={"source": "sdk"})
    assert isinstance(made, BulkRequest) and made.status == "pending" and made.total_resource_count == 4
    await process_bulk()
    done = await client.bulk_requests.retrieve(made.id)
    assert done.status == "completed" and (done.success_result_count, done.failed_result_count) == (3, 1)
    assert [b.id async for b in client.bulk_requests.list(status="completed", metadata={"source": "sdk"})] == [made.id]
    # Every value the SDK names is a filter it may send: those the ledger never makes find nothing (not a 400).
    assert [b.id async for b in client.bulk_requests.list(action_type="create",
                                                          resource_type="ledger_transaction")] == [made.id]
    assert [b.id async for b in client.bulk_requests.list(action_type="delete")] == []
    assert [b.id async for b in client.bulk_requests.list(resource_type="payment_order")] == []
    assert [r async for r in client.bulk_results.list(request_id=made.id, status="pending")] == []
    assert [r async for r in client.bulk_results.list(entity_type="expected_payment")] == []
    with pytest.raises(modern_treasury.BadRequestError):  # what a request may be is unchanged
        await client.bulk_requests.create(action_type="delete", resource_type="ledger_transaction", resources=[
            {"id": made.id}])

    results = [r async for r in client.bulk_results.list(request_id=made.id, per_page=2)]
    assert len(results) == 4 and all(isinstance(r, BulkResult) for r in results)
    transactions = [r for r in results if r.entity_type == "ledger_transaction"]
    assert all(isinstance(r.entity, LedgerTransaction) and r.entity.id == r.entity_id for r in transactions)
    assert sorted(r.entity.external_id for r in transactions) == ["sdk-0", "sdk-1", "sdk-2"]
    (failed,) = [r async for r in client.bulk_results.list(request_id=made.id, entity_type="bulk_error")]
    assert failed.status == "failed" and isinstance(failed.entity, EntityBulkError)
    assert failed.entity.request_errors[0].code == "entries_required"
    again = await client.bulk_results.retrieve(failed.id)
    assert again.request_id == made.id and again.request_type == "bulk_request"
    account = await client.ledger_accounts.retrieve(wallet.id)
    assert account.balances.posted_balance.amount == 303


async def test_bulk_ledger_accounts_through_the_sdk(mt, process_bulk):
    client = await mt()
    ledger, _, _ = await _accounts(client)
    made = await client.bulk_requests.create(action_type="create", resource_type="ledger_account", resources=[
        {"name": f"sub-{i}", "ledger_id": ledger.id, "normal_balance": "credit", "currency": "USD"}
        for i in range(2)])
    await process_bulk()
    results = [r async for r in client.bulk_results.list(request_id=made.id, status="successful")]
    assert sorted(r.entity.name for r in results) == ["sub-0", "sub-1"]
    # The SDK's entity is a union without a discriminator: entity_type says which it is.
    assert all(r.entity_type == "ledger_account" and r.entity.id == r.entity_id for r in results)
    assert all(LedgerAccount.construct(**r.entity.to_dict()).normal_balance == "credit" for r in results)


async def test_the_sdk_validates_the_signature_the_ledger_sends(mt, sdk_platform):
    client = await mt()
    async with httpx.AsyncClient(base_url=sdk_platform.router.url) as http:
        r = await http.post("/api/webhook_endpoints", json={"url": "https://93.184.216.34/hooks"},
                            auth=(client.organization_id, client.api_key))
    key = r.json()["webhook_key"]
    body = webhook_body({"id": uuid.uuid4(), "resource": "ledger_account", "event_name": "ledger_account.updated",
                         "event_time": datetime.now(timezone.utc), "entity_id": uuid.uuid4(),
                         "data": {"object": "ledger_account", "name": "100 €"}, "facts": None})
    headers = {"X-Signature": signature(body, key), "X-Webhook-ID": str(uuid.uuid4())}
    assert client.webhooks.validate_signature(body.decode(), headers, key=key)
    assert not client.webhooks.validate_signature(body.decode().replace("100", "900"), headers, key=key)
    assert not client.webhooks.validate_signature(body.decode(), headers, key=key + "x")
    assert msgspec.json.decode(body)["object"] == "event"
