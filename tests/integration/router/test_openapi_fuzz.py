"""The OpenAPI document is the truth: schemathesis (the real fuzzer, from PyPI) reads /schema/openapi.json
through the router and fuzzes every operation of a real cell behind it; no answer is a server error, and every
answer has the documented status, content type, headers and shape. Bounded in examples and time."""

from __future__ import annotations

import asyncio
import json
import sys

import httpx

FUZZ_EXAMPLES_MAX = 25
FUZZ_TIME_S_MAX = 150
CHECKS = ",".join([
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_headers_conformance", "response_schema_conformance",
])


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(cells_platform, tmp_path):
    tenant, key = await cells_platform.tenant("cell-1", "fuzz")
    router = cells_platform.router
    async with httpx.AsyncClient(base_url=router.url, auth=(tenant, key)) as client:
        r = await client.get("/schema/openapi.json")
        assert r.status_code == 200, r.text
        # Something to find: a ledger with two accounts and a transaction between them.
        ledger = (await client.post("/api/ledgers", json={"name": "fuzz"})).json()["id"]
        accounts = [(await client.post("/api/ledger_accounts", json={
            "name": n, "ledger_id": ledger, "normal_balance": n, "currency": "USD"})).json()["id"]
            for n in ("debit", "credit")]
        posted = await client.post("/api/ledger_transactions", json={
            "ledger_id": ledger, "status": "posted", "ledger_entries": [
                {"ledger_account_id": accounts[0], "direction": "debit", "amount": 1},
                {"ledger_account_id": accounts[1], "direction": "credit", "amount": 1}]})
        assert posted.status_code == 201, posted.text
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps(r.json()))
    # The fuzzer runs in a process of its own: this event loop serves the cells and the router meanwhile. One
    # worker: CPython 3.11's ast constructor is not safe across threads (schemathesis's coverage phase compiles
    # in each worker; two at once once raised "SystemError: AST constructor recursion depth mismatch").
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "schemathesis.cli", "run", str(schema), "--url", router.url,
        "--auth", f"{tenant}:{key}", "--checks", CHECKS, "--max-examples", str(FUZZ_EXAMPLES_MAX),
        "--max-time", str(FUZZ_TIME_S_MAX), "--seed", "7", "--generation-deterministic",
        "--request-timeout", "10", "--workers", "1", "--no-color", "--output-truncate", "false",
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), FUZZ_TIME_S_MAX + 60)
    report = out.decode(errors="replace")
    assert proc.returncode == 0, report[-20000:]
