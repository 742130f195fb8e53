"""The cell's request series kept as plain numbers scrape as the same samples prometheus_client's own metrics give
for the same requests (names, labels, values, order)."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, generate_latest

from cell.api.metrics import _PlainSeries, _SharedSeries

REQUESTS = [("GET", "/api/ledger_accounts/{account_id}", 200, 0.004), ("POST", "/api/ledger_transactions", 201, 0.03),
            ("GET", "/api/ledger_accounts/{account_id}", 200, 0.005), ("GET", "/api/ledgers", 404, 0.0002),
            ("POST", "/api/ledger_transactions", 503, 12.0), ("POST", "/api/ledger_transactions", 500, 0.1),
            ("GET", "/api/ledger_accounts/{account_id}", 200, 0.75)]


def scraped(series, registry: CollectorRegistry) -> str:
    running = series.running("GET", "/api/ledgers", "c1")
    running.inc()  # one still in progress
    for method, path, status, seconds in REQUESTS:
        series.running(method, path, "c1")
        series.answers(method, path, status, "c1").observe(seconds)
    text = generate_latest(registry).decode()
    # The creation times differ by microseconds.
    return re.sub(r"^(\w+_created\{.*\}) \S+$", r"\1 T", text, flags=re.MULTILINE)


def test_plain_series_scrape_as_prometheus_clients_metrics_do():
    plain, plain_registry = _PlainSeries(), CollectorRegistry()
    plain_registry.register(plain)
    shared_registry = CollectorRegistry()
    shared = _SharedSeries(shared_registry)
    expected = scraped(shared, shared_registry)
    assert scraped(plain, plain_registry) == expected
    assert 'ledger_requests_error_total{app_name="cell",cell="c1",method="POST",path="/api/ledger_transactions",' \
           'status_code="503"} 1.0' in expected
    assert 'ledger_requests_in_progress{app_name="cell",cell="c1",method="GET",path="/api/ledgers",' \
           'status_code="200"} 1.0' in expected
