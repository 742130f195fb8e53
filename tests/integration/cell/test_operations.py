"""What operators and tooling read: health, readiness, metrics (on their own listener), the OpenAPI schema."""

import httpx
from litestar.testing import AsyncTestClient

from cell.api.app import create_app
from cell.settings import load_settings
from control_plane.devstack import free_port


async def test_health_readiness_metrics_and_schema(api, cell_client, cell_database_url):
    assert (await cell_client.get("/healthz")).json() == {"status": "ok"}
    ready = await cell_client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text
    assert ready.json()["unapplied_age_breach"] is False and ready.json()["unapplied_age_max_s"] == 9.0
    ledger = await api.ledger()
    a, b = await api.account(ledger["id"], "debit"), await api.account(ledger["id"], "credit")
    await api.transfer(ledger["id"], a["id"], b["id"], 1)
    await api.transfer(ledger["id"], a["id"], b["id"], 0)
    assert (await cell_client.get("/metrics")).status_code == 404  # never on the public port
    port = free_port()
    settings = load_settings(("CELL_TEST_UNUSED_",), database_url=cell_database_url, db_pool_min=1, db_pool_max=2,
                             sweep_interval_s=0, metrics_port=port)
    async with AsyncTestClient(create_app(settings, run_migrations=False)) as other, httpx.AsyncClient() as http:
        assert (await other.get("/metrics")).status_code == 404
        assert (await http.get(f"http://127.0.0.1:{port}/nope")).status_code == 404
        scraped = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    metrics = scraped.text  # one process: the registry the cell_client app records in too
    assert "ledger_postings_total" in metrics and 'outcome="posted_sync"' in metrics
    assert 'outcome="invalid_request"' not in metrics  # rejected at the edge, before the posting path
    assert "ledger_request_duration_seconds" in metrics and "/api/ledger_transactions" in metrics
    assert "ledger_sync_lock_wait_seconds_count" in metrics
    assert "ledger_unapplied_age_bound_seconds 9.0" in metrics and "ledger_unapplied_age_breach 0.0" in metrics
    schema = (await cell_client.get("/schema/openapi.json")).json()
    assert "/api/ledger_transactions" in schema["paths"] and "/api/ledger_accounts/{account_id}" in schema["paths"]


async def test_openapi_documents_the_strict_request_bodies(cell_client):
    schema = (await cell_client.get("/schema/openapi.json")).json()
    body = schema["paths"]["/api/ledger_transactions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    entry = body["properties"]["ledger_entries"]["items"]
    assert entry["properties"]["amount"] == {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
    assert set(body["required"]) == {"ledger_entries"}  # the ledger is the entries' accounts' (as the SDK sends it)
    assert entry["anyOf"] == [{"required": ["amount"]}, {"required": ["amount_string"]}]
    assert "requestBody" in schema["paths"]["/api/ledger_accounts/{account_id}"]["patch"]
