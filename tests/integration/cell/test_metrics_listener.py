"""A cell of several processes (CELL_PROCESSES=2): /metrics is not on the public port, and every scrape of the
metrics port, whichever process answers it, reports the requests all processes served."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx

from control_plane.devstack import free_port


def _served(text: str) -> float:
    # Requests for the OpenAPI document, summed over every process.
    return sum(float(m.group(1)) for m in re.finditer(
        r'^ledger_requests_total\{[^}]*path="/schema/openapi.json"[^}]*status_code="200"[^}]*\} (\S+)$', text, re.MULTILINE))


def test_a_multi_process_cell_serves_its_metrics_apart_from_the_public_port(make_database):
    url = make_database("cell_metrics_mp")
    port, metrics_port = free_port(), free_port()
    env = {**os.environ, "CELL_DATABASE_URL": url, "CELL_PORT": str(port), "CELL_PROCESSES": "2",
           "CELL_METRICS_PORT": str(metrics_port), "CELL_POSTING_MODE": "sync", "CELL_DB_POOL_MIN": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen([sys.executable, "-m", "cell"], env=env, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the cell did not start"
            time.sleep(0.1)
        assert httpx.get(base + "/metrics").status_code == 404
        for _ in range(10):  # new connections: the kernel spreads them over both processes
            assert httpx.get(base + "/schema/openapi.json").status_code == 200
        for _ in range(4):
            scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
            assert scraped.status_code == 200
            assert _served(scraped.text) == 10, scraped.text[-2000:]
    finally:
        proc.terminate()
        proc.wait(20)
