"""The performance team's Locust suite: Modern Treasury's mixes against a running stack.

    make run                                   # in one terminal; writes .ledger/dev.json when ready
    make loadtest                              # headless, reports under loadtests/reports/<timestamp>/
    make loadtest LOADTEST_ARGS="-u 64 -r 16 -t 120s"
    LOADTEST_SHAPE="users=32,spike_users=96" make loadtest   # ramp, steady, spike, steady

Plain Locust works too: `.venv/bin/locust -f loadtests/locustfile.py --headless -u 16 -r 4 -t 60s`.

Credentials: LEDGER_BASE_URL / LEDGER_TENANT_ID / LEDGER_API_KEY, else .ledger/dev.json (LEDGER_DEV_JSON);
`--host` wins over both for the URL; dev.json's tenant and key go to dev.json's base_url only.

User classes (weights from LOADTEST_WEIGHTS, e.g. "investing=6,card=2,statement=1,backdated=1"; 0 drops one):
- InvestingUser: Modern Treasury's investing mix, 1 POST transaction (a user account against one hot omnibus
  account, no balance lock: queued in hybrid mode) to 3 GET account balance.
- CardUser: a card authorization, a balance-locked debit of a funded card account (`available_balance_amount
  >= 0`: applied at once, under the card's lock) crediting one hot settlement account (queued).
- StatementReader: pages of a user account's `ledger_entries` with `show_balances`, following X-After-Cursor.
- BackdatedPoster: transactions with an `effective_at` in the past (up to LOADTEST_BACKDATE_DAYS).

The data (one ledger, its accounts, the cards' funding) is made once per run in the test_start event and
shared through module state, not per simulated user; on several processes (--processes, or workers of their own)
the master makes it and sends it to the workers, so every process loads the same hot accounts; a worker that joins
later asks the master for it as it starts (its users wait up to LOADTEST_BOOKS_WAIT_S for it). Thresholds, checked when Locust quits,
set its exit code: LOADTEST_P90_MS ("1000" or "default=1000,invest_write=300,invest_read=100"; keys are the
REQUESTS keys) and LOADTEST_MAX_ERROR_RATE (a fraction from 0 to 1, default 0.01); a task that raised (an exception, not a
failed request) fails the run too, and so does a weighted user class that made no request (too few users for the
mix). LOADTEST_REPORT_DIR, when set, receives run.json and thresholds.json for the markdown report
(loadtests/report.py).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlencode

import requests
from gevent.event import Event
from locust import FastHttpUser, LoadTestShape, between, events, task
from locust.runners import LocalRunner, MasterRunner, WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Locust puts only loadtests/ on the path
from loadtests.mix import REQUESTS, dev_credentials, evaluate, shape_stages, thresholds, weights

log = logging.getLogger("loadtest")

_dev = Path(os.environ.get("LEDGER_DEV_JSON", ".ledger/dev.json"))
_conf = json.loads(_dev.read_text()) if _dev.exists() else {}
BASE_URL = os.environ.get("LEDGER_BASE_URL", _conf.get("base_url", "http://127.0.0.1:8000"))
# Without LEDGER_TENANT_ID / LEDGER_API_KEY, dev.json's, for its own host only (set once the host is known, in init).
TENANT = os.environ.get("LEDGER_TENANT_ID", "")
API_KEY = os.environ.get("LEDGER_API_KEY", "")
AUTH = (TENANT, API_KEY)

INVESTORS = int(os.environ.get("LOADTEST_INVESTORS", "100"))
CARDS = int(os.environ.get("LOADTEST_CARDS", "50"))
CARD_FUNDING = int(os.environ.get("LOADTEST_CARD_FUNDING", str(10**12)))
STATEMENT_PAGES = int(os.environ.get("LOADTEST_STATEMENT_PAGES", "3"))
STATEMENT_PER_PAGE = int(os.environ.get("LOADTEST_STATEMENT_PER_PAGE", "25"))
BACKDATE_DAYS = float(os.environ.get("LOADTEST_BACKDATE_DAYS", "30"))
WAIT_MAX_S = float(os.environ.get("LOADTEST_WAIT_MAX_S", "0.01"))
P90_MS, MAX_ERROR_RATE = thresholds()  # read now: a misspelt key stops Locust at start, not after the run

# ---- data, made once per run -------------------------------------------------------------------------------

class Books:
    """The run's data, shared by every user (module state, set once by test_start)."""

    ledger_id: str = ""
    omnibus: str = ""  # debit-normal: the other side of every investing write (hot, no lock)
    investors: ClassVar[list[str]] = []  # credit-normal user accounts
    settlement: str = ""  # credit-normal: the other side of every card authorization (hot)
    cards: ClassVar[list[str]] = []  # credit-normal, funded
    error: str | None = None
    setup_s: float = 0.0  # how long making them took


def _post(session: requests.Session, host: str, path: str, body: dict) -> dict:
    r = session.post(host + path, json=body, headers={"Idempotency-Key": uuid.uuid4().hex}, timeout=30)
    if r.status_code != 201:
        raise RuntimeError(f"setup: POST {path} answered {r.status_code}: {r.text[:300]}")
    return r.json()


def setup_books(host: str) -> None:
    t0 = time.monotonic()
    with requests.Session() as s:
        s.auth = AUTH
        ledger = _post(s, host, "/api/ledgers", {"name": f"loadtest-{uuid.uuid4().hex[:8]}"})["id"]

        def account(name: str, normal_balance: str) -> str:
            return _post(s, host, "/api/ledger_accounts", {"name": name, "ledger_id": ledger,
                                                           "normal_balance": normal_balance, "currency": "USD"})["id"]

        Books.ledger_id = ledger
        Books.omnibus = account("omnibus", "debit")
        Books.settlement = account("settlement", "credit")
        funding = account("card funding", "debit")
        Books.investors = [account(f"investor {i}", "credit") for i in range(INVESTORS)]
        Books.cards = [account(f"card {i}", "credit") for i in range(CARDS)]
        for card in Books.cards:
            _post(s, host, "/api/ledger_transactions", {"ledger_id": ledger, "status": "posted", "ledger_entries": [
                {"ledger_account_id": funding, "direction": "debit", "amount": CARD_FUNDING},
                {"ledger_account_id": card, "direction": "credit", "amount": CARD_FUNDING}]})
    Books.setup_s = round(time.monotonic() - t0, 3)
    log.info("setup: ledger %s, %d investors, %d funded cards in %.1f s", ledger, INVESTORS, CARDS, Books.setup_s)


BOOKS_MESSAGE = "loadtest_books"  # master -> workers, before their users spawn: the run's one set of books


def _books() -> dict:
    return {"ledger_id": Books.ledger_id, "omnibus": Books.omnibus, "investors": Books.investors,
            "settlement": Books.settlement, "cards": Books.cards}


BOOKS_WANTED_MESSAGE = "loadtest_books_wanted"  # a worker -> the master, on its start: answered with the books
BOOKS_WAIT_S = float(os.environ.get("LOADTEST_BOOKS_WAIT_S", "30"))  # a user's wait for them, on a loaded machine
_books_settled = Event()  # the books made (or their set-up failed), or received from the master


def _receive_books(environment, msg, **_kw) -> None:
    for name, value in msg.data.items():
        setattr(Books, name, value)
    _books_settled.set()


def _send_books(environment, msg, **_kw) -> None:
    if Books.ledger_id:  # else not made yet: test_start sends them to every worker connected, this one included
        environment.runner.send_message(BOOKS_MESSAGE, _books(), client_id=msg.node_id)


@events.init.add_listener
def on_init(environment, **_kw) -> None:
    if environment.host:  # "http://host:8000/" + "/api/..." would be "//api/...", which FastHttpUser refuses
        environment.host = environment.host.rstrip("/")
    global TENANT, API_KEY, AUTH
    dev_tenant, dev_key = dev_credentials(environment.host or BASE_URL, _conf)
    TENANT, API_KEY = TENANT or dev_tenant or "", API_KEY or dev_key or ""
    AUTH = (TENANT, API_KEY)
    if isinstance(environment.runner, WorkerRunner):
        environment.runner.register_message(BOOKS_MESSAGE, _receive_books)
        # A worker that connects after test_start (a late joiner) missed the books sent then: it asks for them.
        # Asked from here, not sent on its connect: Locust connects a worker before this listener exists.
        environment.runner.send_message(BOOKS_WANTED_MESSAGE)
    elif isinstance(environment.runner, MasterRunner):
        environment.runner.register_message(BOOKS_WANTED_MESSAGE, _send_books)


@events.test_start.add_listener
def on_test_start(environment, **_kw) -> None:
    if not isinstance(environment.runner, (MasterRunner, LocalRunner)):
        # A worker: the master makes the books and sends them (on several processes, one ledger and hot accounts).
        # Its runner may be unset still: a late joiner reading its ack and spawn together fires test_start in Locust's
        # WorkerRunner constructor, before environment.runner is assigned (it made books of its own).
        return
    if not Books.ledger_id:  # once per run, even when the shape restarts spawning
        try:
            if not (TENANT and API_KEY):
                raise RuntimeError(f"no credentials for {environment.host or BASE_URL} (LEDGER_TENANT_ID and "
                                   "LEDGER_API_KEY; .ledger/dev.json's are for its own base_url only)")
            setup_books((environment.host or BASE_URL).rstrip("/"))
            environment.stats.reset_all()  # req/s counts from here: no user has started, no request was made
            if environment.shape_class is not None:
                environment.shape_class.reset_time()  # the stages count from when the books are ready
        except Exception as exc:  # noqa: BLE001 - reported, and the run fails
            Books.error = f"{type(exc).__name__}: {exc}"
            log.error("setup failed: %s", Books.error)
            _books_settled.set()
            environment.runner.quit()
            return
        _books_settled.set()
    if isinstance(environment.runner, MasterRunner):  # sent ahead of the spawn messages, so users find them
        environment.runner.send_message(BOOKS_MESSAGE, _books())  # a later worker asks for them (_send_books)


@events.quitting.add_listener
def on_quitting(environment, **_kw) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return  # its stats went to the master, which judges the run and writes the files
    p90_ms, max_error_rate = P90_MS, MAX_ERROR_RATE
    by_name = {name: key for key, name in REQUESTS.items()}
    rows = []
    for (name, _method), entry in environment.stats.entries.items():
        rows.append({"key": by_name.get(name, name), "name": name, "requests": entry.num_requests,
                     "failures": entry.num_failures,
                     "p90_ms": entry.get_response_time_percentile(0.9) if entry.num_requests else 0.0})
    exceptions = sum(e["count"] for e in environment.runner.exceptions.values()) if environment.runner else 0
    broken = ([f"setup failed: {Books.error}"] if Books.error
              else evaluate(rows, p90_ms, max_error_rate, exceptions, expected=_W))
    for sentence in broken:
        log.error("threshold broken: %s", sentence)
    environment.process_exit_code = 1 if broken else 0
    if prefix := getattr(environment.parsed_options, "csv_prefix", None):
        write_final_csv(environment, prefix)
    report_dir = os.environ.get("LOADTEST_REPORT_DIR")
    if report_dir:
        Path(report_dir).mkdir(parents=True, exist_ok=True)
        Path(report_dir, "thresholds.json").write_text(json.dumps({
            "p90_ms": p90_ms, "max_error_rate": max_error_rate, "broken": broken, "rows": rows}, indent=2))
        Path(report_dir, "run.json").write_text(json.dumps({
            "host": environment.host or BASE_URL, "tenant_id": TENANT, "weights": weights(),
            "shape": os.environ.get("LOADTEST_SHAPE") or None, "requests": REQUESTS,
            "books": {"investors": INVESTORS, "cards": CARDS, "setup_s": Books.setup_s},
            "locust": {key: getattr(environment.parsed_options, option, None) for key, option in (
                *(() if environment.shape_class else (  # a shape drives users and duration
                    ("users", "num_users"), ("spawn_rate", "spawn_rate"), ("run_time_s", "run_time"))),
                ("processes", "processes"))}}, indent=2))


def write_final_csv(environment, prefix: str) -> None:
    """Locust rewrites its stats, failures and exceptions CSV once a second, not when it quits: the files would
    miss the run's last second. Written here from the final stats, the ones the thresholds were judged on."""
    writer = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for suffix, write in (("stats", writer.requests_csv), ("failures", writer.failures_csv),
                          ("exceptions", writer.exceptions_csv)):
        with open(f"{prefix}_{suffix}.csv", "w", newline="") as f:
            write(csv.writer(f))


# ---- users -------------------------------------------------------------------------------------------------

_W = weights()


class LedgerUser(FastHttpUser):
    abstract = True
    host = BASE_URL
    wait_time = between(0, WAIT_MAX_S)

    def on_start(self) -> None:
        # On a worker the master's spawn message can come before the books it asked for (a late joiner).
        if not _books_settled.wait(BOOKS_WAIT_S):  # an exception: the run fails, saying so
            raise RuntimeError(f"no books from Locust's master within {BOOKS_WAIT_S} s (LOADTEST_BOOKS_WAIT_S)")
        if not Books.ledger_id:  # their set-up failed: the run is quitting
            from locust.exception import StopUser
            raise StopUser()

    def post_transaction(self, key: str, body: dict) -> None:
        with self.client.post("/api/ledger_transactions", json=body, auth=AUTH, name=REQUESTS[key],
                              headers={"Idempotency-Key": uuid.uuid4().hex}, catch_response=True) as r:
            if r.status_code != 201:
                r.failure(f"{r.status_code}: {(r.text or '')[:200]}")


def transfer(debit: str, credit: str, amount: int, **extra) -> dict:
    return {"ledger_id": Books.ledger_id, "status": "posted", **extra, "ledger_entries": [
        {"ledger_account_id": debit, "direction": "debit", "amount": amount},
        {"ledger_account_id": credit, "direction": "credit", "amount": amount}]}


class InvestingUser(LedgerUser):
    """Modern Treasury's investing mix: 1 write to 3 balance reads."""
    weight = _W["investing"]

    @task(1)
    def write(self) -> None:
        self.post_transaction("invest_write", transfer(Books.omnibus, random.choice(Books.investors),
                                                       random.randint(1, 100_000)))

    @task(3)
    def read_balance(self) -> None:
        self.client.get(f"/api/ledger_accounts/{random.choice(Books.investors)}", auth=AUTH,
                        name=REQUESTS["invest_read"])


class CardUser(LedgerUser):
    """A card authorization: the card's debit is balance-locked (sync), the settlement's credit is not."""
    weight = _W["card"]

    @task
    def authorize(self) -> None:
        amount = random.randint(1, 5_000)
        self.post_transaction("card_authorize", {"ledger_id": Books.ledger_id, "status": "posted", "ledger_entries": [
            {"ledger_account_id": random.choice(Books.cards), "direction": "debit", "amount": amount,
             "available_balance_amount": {"gte": 0}},
            {"ledger_account_id": Books.settlement, "direction": "credit", "amount": amount}]})


class StatementReader(LedgerUser):
    """A statement: up to LOADTEST_STATEMENT_PAGES pages of an account's entries with their balances."""
    weight = _W["statement"]

    @task
    def statement(self) -> None:
        account = random.choice(Books.investors + Books.cards)
        query = {"ledger_account_id": account, "show_balances": "true", "per_page": str(STATEMENT_PER_PAGE)}
        for _ in range(STATEMENT_PAGES):
            r = self.client.get("/api/ledger_entries?" + urlencode(query), auth=AUTH, name=REQUESTS["statement_page"])
            cursor = r.headers.get("X-After-Cursor") if r.status_code == 200 else None
            if not cursor:
                break
            query["after_cursor"] = cursor


class BackdatedPoster(LedgerUser):
    """Transactions effective in the past: the balances as of later times move too."""
    weight = _W["backdated"]

    @task
    def backdated(self) -> None:
        when = datetime.now(UTC) - timedelta(seconds=random.uniform(60, BACKDATE_DAYS * 86400))
        self.post_transaction("backdated_write", transfer(
            Books.omnibus, random.choice(Books.investors), random.randint(1, 100_000),
            effective_at=when.isoformat(timespec="microseconds").replace("+00:00", "Z")))


# A weight of 0 drops the class (Locust refuses weight 0 on a class it runs).
for _name, _cls in (("investing", InvestingUser), ("card", CardUser), ("statement", StatementReader),
                    ("backdated", BackdatedPoster)):
    if _W[_name] <= 0:
        del globals()[_cls.__name__]
del _name, _cls


# ---- the shape: ramp, steady, spike, steady (only with LOADTEST_SHAPE set) --------------------------------

if os.environ.get("LOADTEST_SHAPE"):
    class RampSteadySpikeSteady(LoadTestShape):
        stages = shape_stages(os.environ["LOADTEST_SHAPE"])

        def tick(self):
            run_time = self.get_run_time()
            for end, users, rate in self.stages:
                if run_time < end:
                    return users, rate
            return None
