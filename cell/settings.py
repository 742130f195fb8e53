"""The cell's typed settings, read from the environment once at start-up (CELL_ and LEDGER_ prefixes)."""

from __future__ import annotations

from typing import Literal

import msgspec

from cell.ledger.commands import ENTRIES_PER_TRANSACTION_MAX, PER_PAGE_MAX
from ledger_common.settings import load_from_env


class CellSettings(msgspec.Struct, frozen=True, kw_only=True):
    name: str = "cell-1"
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8101
    processes: int = 1  # server processes sharing the port (each with its own pool of db_pool_max)
    db_pool_min: int = 2
    db_pool_max: int = 12
    # The role pooled connections run as (0003_app_role.sql); "" when the login role is already restricted.
    db_role: str = "ledger_app"
    # hybrid: entries without a lock are queued and applied by the cell's workers; sync: every entry is
    # applied in its posting (the baseline the async path is measured against).
    posting_mode: Literal["hybrid", "sync"] = "hybrid"
    # Limits (TigerBeetle style: everything bounded, qualifier last).
    entries_per_transaction_max: int = ENTRIES_PER_TRANSACTION_MAX
    per_page_max: int = PER_PAGE_MAX
    per_page_default: int = 25
    body_bytes_max: int = 1_048_576
    metadata_keys_max: int = 64
    idempotency_key_length_max: int = 255
    # A revoked key works at most this long in a process that verified it just before (one indexed query per key
    # per process per TTL).
    api_key_cache_ttl_s: float = 0.5
    account_cache_size_max: int = 100_000
    # Seals list cursors (AES-GCM). Every process of a cell must share it: `python -m cell` makes one up at start
    # when unset; set it when processes are started otherwise, or to keep cursors valid across restarts.
    cursor_secret: str = ""
    # The async path's queue; sync mode ignores them.
    sqs_endpoint_url: str = ""
    sqs_queue_url: str = ""
    sqs_region: str = "us-east-1"
    # Fewer, fuller SQS calls cost less CPU than they add in apply lag (measured in the hot-account benchmark).
    sqs_send_buffer_ms_max: int = 25


def load_settings(environ_prefixes: tuple[str, ...] = ("CELL_", "LEDGER_"), **overrides) -> CellSettings:
    """Read CELL_<FIELD> (then LEDGER_<FIELD>) for every field; explicit overrides win."""
    return load_from_env(CellSettings, environ_prefixes, **overrides)
