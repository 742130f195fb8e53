"""A bank-style client: concurrent clients post transfers between a tenant's accounts through the router, half of
them with a balance lock on the debited account; each posting is retried with the same Idempotency-Key until a
definite answer (2xx or 4xx but 409/429), bounded in time. The client keeps its own record of what was
acknowledged, refused and left unknown, and of every attempt, to check the ledger against afterwards."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field

import httpx

USERS = 6  # credit-normal accounts transfers move money between
FUNDING = 1000  # each user account's opening balance
RETRY_S_MAX = 150  # a posting is retried this long at most (a restart takes seconds; a loaded machine more)
REQUEST_TIMEOUT_S = 45  # above the router's upstream timeout (30 s): its 504 answers first
PACE_S = 0.02  # between one client's postings (pacing, not waiting for anything)


@dataclass
class Attempt:
    key: str
    started: float
    ended: float
    status: int | None  # None: no HTTP answer (connection refused or reset, timeout)
    code: str | None  # problem+json code, or the transport error's class name
    retry_after: str | None = None


@dataclass
class Posting:
    key: str
    debit: str
    credit: str
    amount: int
    locked: bool
    outcome: str = "unknown"  # "acked", "refused" or "unknown" (gave up)
    transaction_id: str | None = None
    code: str | None = None


@dataclass
class Bank:
    """One tenant's ledger, accounts and the client's record."""
    name: str
    base_url: str
    auth: tuple[str, str]
    ledger_id: str = ""
    cash: str = ""
    users: list[str] = field(default_factory=list)
    postings: dict[str, Posting] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, auth=self.auth, timeout=REQUEST_TIMEOUT_S,
                                 limits=httpx.Limits(max_keepalive_connections=2))

    async def open(self) -> None:
        """A fresh ledger: a debit-normal cash account and USERS credit-normal accounts, each funded."""
        async with self.http() as http:
            r = await http.post("/api/ledgers", json={"name": f"bank-{uuid.uuid4().hex[:8]}"})
            assert r.status_code == 201, r.text
            self.ledger_id = r.json()["id"]

            async def account(name: str, normal: str) -> str:
                r = await http.post("/api/ledger_accounts", json={
                    "name": name, "ledger_id": self.ledger_id, "normal_balance": normal, "currency": "USD"})
                assert r.status_code == 201, r.text
                return r.json()["id"]

            self.cash = await account("cash", "debit")
            self.users = [await account(f"user-{i}", "credit") for i in range(USERS)]
            for user in self.users:
                posting = await self.post(http, self.cash, user, FUNDING, locked=False)
                assert posting.outcome == "acked", (posting, self.attempts[-3:])

    def body(self, p: Posting) -> dict:
        debit = {"ledger_account_id": p.debit, "direction": "debit", "amount": p.amount}
        if p.locked:
            debit["available_balance_amount"] = {"gte": 0}
        return {"ledger_id": self.ledger_id, "status": "posted", "metadata": {"key": p.key}, "ledger_entries": [
            debit, {"ledger_account_id": p.credit, "direction": "credit", "amount": p.amount}]}

    async def post(self, http: httpx.AsyncClient, debit: str, credit: str, amount: int, locked: bool) -> Posting:
        p = Posting(uuid.uuid4().hex, debit, credit, amount, locked)
        self.postings[p.key] = p
        body, backoff_s, deadline = self.body(p), 0.05, time.monotonic() + RETRY_S_MAX
        while True:
            started = time.monotonic()
            try:
                r = await http.post("/api/ledger_transactions", json=body, headers={"Idempotency-Key": p.key})
            except httpx.TransportError as error:
                self.attempts.append(Attempt(p.key, started, time.monotonic(), None, type(error).__name__))
            else:
                code = None
                if r.status_code >= 400:
                    try:
                        code = r.json().get("code")
                    except ValueError:
                        code = r.text[:80]
                self.attempts.append(Attempt(p.key, started, time.monotonic(), r.status_code, code,
                                             r.headers.get("retry-after")))
                if 200 <= r.status_code < 300:
                    p.outcome, p.transaction_id = "acked", r.json()["id"]
                    return p
                if 400 <= r.status_code < 500 and r.status_code not in (409, 429):
                    p.outcome, p.code = "refused", code
                    return p
            if time.monotonic() > deadline:
                return p  # unknown: it may or may not exist, at most once
            await asyncio.sleep(backoff_s * random.uniform(0.5, 1.0))
            backoff_s = min(backoff_s * 2, 1.0)

    async def client(self, index: int, stop: asyncio.Event) -> None:
        rng = random.Random(index)
        async with self.http() as http:
            while not stop.is_set():
                debit, credit = rng.sample(self.users, 2)
                await self.post(http, debit, credit, rng.randint(1, 400), locked=index % 2 == 0)
                await asyncio.sleep(PACE_S)

    # ---- what the client saw -------------------------------------------------------------------------------

    def acked(self) -> list[Posting]:
        return [p for p in self.postings.values() if p.outcome == "acked"]

    def acked_after(self, t: float) -> int:
        """Postings acknowledged by an attempt sent after `t`."""
        return sum(1 for a in self.attempts if a.started >= t and a.status is not None and 200 <= a.status < 300)

    def first_success_after(self, t: float) -> float | None:
        ends = [a.ended for a in self.attempts if a.started >= t and a.status is not None and 200 <= a.status < 300]
        return min(ends) - t if ends else None

    def failures(self) -> list[Attempt]:
        """Attempts without a definite answer: transport errors, 5xx, 409 and 429."""
        return [a for a in self.attempts if a.status is None or a.status >= 500 or a.status in (409, 429)]

    def expected_balances(self) -> dict[str, int]:
        """Per account, the balance (in its normal direction) the acknowledged postings add up to."""
        balance = {self.cash: 0, **{u: 0 for u in self.users}}
        for p in self.acked():
            balance[p.debit] += p.amount if p.debit == self.cash else -p.amount
            balance[p.credit] += -p.amount if p.credit == self.cash else p.amount
        return balance

    # ---- what the ledger holds -----------------------------------------------------------------------------

    async def listed(self) -> dict[str, list[str]]:
        """Every transaction of the ledger through the API, by the key in its metadata: the ids found."""
        found: dict[str, list[str]] = {}
        async with self.http() as http:
            params = {"ledger_id": self.ledger_id, "per_page": "100"}
            while True:
                r = await http.get("/api/ledger_transactions", params=params)
                assert r.status_code == 200, r.text
                for t in r.json():
                    found.setdefault(t["metadata"].get("key", ""), []).append(t["id"])
                cursor = r.headers.get("x-after-cursor")
                if not cursor:
                    return found
                params["after_cursor"] = cursor

    async def balances(self) -> dict[str, int]:
        out = {}
        async with self.http() as http:
            for account in (self.cash, *self.users):
                r = await http.get(f"/api/ledger_accounts/{account}")
                assert r.status_code == 200, r.text
                out[account] = r.json()["balances"]["posted_balance"]["amount"]
        return out
