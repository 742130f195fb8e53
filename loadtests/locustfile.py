"""Locust load test: the reference mix, 1 transaction write to 3 balance reads, against a running stack.

    make run                      # in one terminal; writes .ledger/dev.json when ready
    .venv/bin/locust -f loadtests/locustfile.py --headless -u 64 -r 16 -t 60s
Credentials and the base URL come from .ledger/dev.json (or LEDGER_BASE_URL / LEDGER_TENANT_ID /
LEDGER_API_KEY). Each user works in its own ledger with a hot settlement account shared by all its cards.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from pathlib import Path

from locust import FastHttpUser, between, task

_dev = Path(os.environ.get("LEDGER_DEV_JSON", ".ledger/dev.json"))
_conf = json.loads(_dev.read_text()) if _dev.exists() else {}
BASE_URL = os.environ.get("LEDGER_BASE_URL", _conf.get("base_url", "http://127.0.0.1:8000"))
TENANT = os.environ.get("LEDGER_TENANT_ID", _conf.get("tenant_id", ""))
API_KEY = os.environ.get("LEDGER_API_KEY", _conf.get("api_key", ""))
CARDS_PER_USER = int(os.environ.get("LEDGER_CARDS_PER_USER", "20"))


class LedgerUser(FastHttpUser):
    host = BASE_URL
    wait_time = between(0, 0.01)

    def on_start(self) -> None:
        ledger = self.client.post("/api/ledgers", json={"name": f"locust-{uuid.uuid4().hex[:8]}"},
                                  auth=(TENANT, API_KEY)).json()
        self.ledger_id = ledger["id"]
        self.settlement = self._account("settlement", "debit")
        self.cards = [self._account(f"card-{i}", "credit") for i in range(CARDS_PER_USER)]

    def _account(self, name: str, normal_balance: str) -> str:
        r = self.client.post("/api/ledger_accounts", json={"name": name, "ledger_id": self.ledger_id,
                                                           "normal_balance": normal_balance, "currency": "USD"},
                             auth=(TENANT, API_KEY), name="/api/ledger_accounts [setup]")
        return r.json()["id"]

    @task(1)
    def card_authorization(self) -> None:
        card = random.choice(self.cards)
        self.client.post("/api/ledger_transactions", auth=(TENANT, API_KEY),
                         json={"ledger_id": self.ledger_id, "status": "posted", "ledger_entries": self._entries(card)},
                         headers={"Idempotency-Key": uuid.uuid4().hex})

    def _entries(self, card: str) -> list[dict]:
        amount = random.randint(1, 5000)
        return [{"ledger_account_id": self.settlement, "direction": "debit", "amount": amount},
                {"ledger_account_id": card, "direction": "credit", "amount": amount}]

    @task(3)
    def read_balance(self) -> None:
        self.client.get(f"/api/ledger_accounts/{random.choice(self.cards)}", auth=(TENANT, API_KEY),
                        name="/api/ledger_accounts/{id}")
