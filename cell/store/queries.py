"""The cell's named SQL blocks from sql/*.sql (`-- name: fetch_account`), loaded once; call sites use the name."""

from __future__ import annotations

from pathlib import Path

from ledger_common.sql import load_queries

Q = load_queries(Path(__file__).parent / "sql")
