"""The suite's configuration and its pure parts, without Locust (importing Locust monkey-patches the process
with gevent): request types, user class weights, thresholds and the load shape, all from the environment."""

from __future__ import annotations

import math
import os

# Request type key -> the name Locust reports it under (thresholds and the report use the keys).
REQUESTS = {
    "invest_write": "POST /api/ledger_transactions [investing]",
    "invest_read": "GET /api/ledger_accounts/{id} [investing]",
    "card_authorize": "POST /api/ledger_transactions [card authorization]",
    "statement_page": "GET /api/ledger_entries?show_balances [statement]",
    "backdated_write": "POST /api/ledger_transactions [backdated]",
}
# Request type key -> the user class (a LOADTEST_WEIGHTS key) that makes it.
REQUEST_CLASS = {"invest_write": "investing", "invest_read": "investing", "card_authorize": "card",
                 "statement_page": "statement", "backdated_write": "backdated"}
DEFAULT_WEIGHTS = {"investing": 6, "card": 2, "statement": 1, "backdated": 1}
# Modern Treasury's published load test (seed 003): 1,200 POST /ledger_transactions a second with 3,600 GET
# ledger_accounts a second; average p90 297 ms for the writes and 89 ms for the balance reads.
REFERENCE = {"writes_per_s": 1200.0, "reads_per_s": 3600.0, "write_p90_ms": 297.0, "read_p90_ms": 89.0}


def dev_credentials(host: str | None, dev: dict) -> tuple[str | None, str | None]:
    """The tenant and API key of `make run`'s .ledger/dev.json (`dev`) for `host`: only when it is dev.json's own
    base URL (give or take a final slash), never sent to another host."""
    if host and dev.get("base_url") and host.rstrip("/") == dev["base_url"].rstrip("/"):
        return dev.get("tenant_id"), dev.get("api_key")
    return None, None


def parse_pairs(text: str, default_key: str | None = None) -> dict[str, str]:
    """ "a=1,b=2" -> {"a": "1", "b": "2"}; a bare value is `default_key`'s."""
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if sep:
            out[key.strip()] = value.strip()
        elif default_key is not None:
            out[default_key] = key
        else:
            raise ValueError(f"expected key=value, got {item!r}")
    return out


def weights() -> dict[str, int]:
    try:
        given = {k: int(v) for k, v in parse_pairs(os.environ.get("LOADTEST_WEIGHTS", "")).items()}
    except ValueError as error:
        raise ValueError(f"LOADTEST_WEIGHTS: whole numbers, 0 to leave a class out ({error})") from None
    unknown = set(given) - set(DEFAULT_WEIGHTS)
    if unknown:
        raise ValueError(f"LOADTEST_WEIGHTS: unknown user classes {sorted(unknown)}; known: {sorted(DEFAULT_WEIGHTS)}")
    out = {**DEFAULT_WEIGHTS, **given}
    if any(w < 0 for w in out.values()) or not any(out.values()):
        raise ValueError(f"LOADTEST_WEIGHTS: weights of 0 or more, one at least above 0 (got {out})")
    return out


def thresholds() -> tuple[dict[str, float], float]:
    """p90 limits in ms by request key ("default" for the rest), and the largest error rate allowed."""
    try:
        p90 = {k: float(v) for k, v in parse_pairs(os.environ.get("LOADTEST_P90_MS", "1000"), "default").items()}
    except ValueError as error:
        raise ValueError(f"LOADTEST_P90_MS: {error}") from None
    unknown = set(p90) - set(REQUESTS) - {"default"}
    if unknown:
        raise ValueError(f"LOADTEST_P90_MS: unknown request types {sorted(unknown)}; known: {sorted(REQUESTS)}")
    if bad := {k: v for k, v in p90.items() if not v > 0}:  # NaN too: no p90 is above it, the limit never applied
        raise ValueError(f"LOADTEST_P90_MS: milliseconds above 0, got {bad}")
    try:
        max_error_rate = float(os.environ.get("LOADTEST_MAX_ERROR_RATE", "0.01"))
    except ValueError:
        max_error_rate = math.nan
    if not 0 <= max_error_rate <= 1:  # 5 meant as 5% is never exceeded, NaN never compared: the rate never applied
        raise ValueError("LOADTEST_MAX_ERROR_RATE: a fraction from 0 to 1, such as 0.01 (1%), got "
                         f"{os.environ.get('LOADTEST_MAX_ERROR_RATE')!r}")
    return p90, max_error_rate


def evaluate(rows: list[dict], p90_ms: dict[str, float], max_error_rate: float, exceptions: int = 0,
             expected: dict[str, int] | None = None) -> list[str]:
    """The broken thresholds, as sentences. rows: {key, requests, failures, p90_ms} per request type seen;
    exceptions: how many times a user's task raised (no request, so no failure: never allowed); expected: the user
    class weights of the run, whose every request type must have been made (else its p90 went unchecked)."""
    broken = [f"{exceptions} exceptions in the users' tasks (see the exceptions CSV)"] if exceptions else []
    made = {r["key"] for r in rows if r["requests"]}
    for key, user_class in REQUEST_CLASS.items():
        if (expected or {}).get(user_class, 0) > 0 and key not in made:
            broken.append(f"{key}: no request made (user class {user_class}: no user ran it, or its tasks raised; "
                          f"too few users? LOADTEST_WEIGHTS={user_class}=0 leaves it out)")
    total = sum(r["requests"] for r in rows)
    failures = sum(r["failures"] for r in rows)
    if total == 0:
        return [*broken, "no request was made"]
    if failures / total > max_error_rate:
        broken.append(f"error rate {failures / total:.4f} > {max_error_rate}")
    for r in rows:
        limit = p90_ms.get(r["key"], p90_ms.get("default"))
        if limit is not None and r["requests"] and r["p90_ms"] > limit:
            broken.append(f"{r['key']}: p90 {r['p90_ms']:.0f} ms > {limit:.0f} ms")
    return broken


SHAPE_DEFAULTS = {"users": 32, "spike_users": 96, "ramp": 30, "steady": 120, "spike": 30, "steady2": 60,
                  "rate": 0, "spike_rate": 0}  # rate 0: ramp to `users` over exactly `ramp` seconds;
# spike_rate (users a second, up to the spike and back down) 0: the spike comes at once


def shape_stages(spec: str) -> list[tuple[float, int, float]]:
    """(end second, users, spawn rate) per stage, from "users=32,spike_users=96,ramp=30,steady=120,...". """
    given = {k: float(v) for k, v in parse_pairs(spec if spec not in ("1", "true", "yes") else "").items()}
    unknown = set(given) - set(SHAPE_DEFAULTS)
    if unknown:
        raise ValueError(f"LOADTEST_SHAPE: unknown keys {sorted(unknown)}; known: {sorted(SHAPE_DEFAULTS)}")
    c = {**SHAPE_DEFAULTS, **given}
    users, spike = int(c["users"]), int(c["spike_users"])
    ramp_rate = c["rate"] or users / max(c["ramp"], 1)
    spike_rate = c["spike_rate"] or max(spike, 1)
    stages, t = [], 0.0
    for length, count, rate in ((c["ramp"], users, ramp_rate), (c["steady"], users, ramp_rate),
                                (c["spike"], spike, spike_rate), (c["steady2"], users, spike_rate)):
        t += length
        stages.append((t, count, rate))
    return stages
