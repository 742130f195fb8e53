"""Helpers shared by the use cases: pages, cursors, metadata merging, UUID parsing."""

from __future__ import annotations

import base64
import uuid
from typing import Generic, TypeVar

import msgspec

from cell.ledger.errors import InvalidRequest, NotFound

T = TypeVar("T")
_encoder = msgspec.json.Encoder()


def encode_cursor(*values) -> str:
    return base64.urlsafe_b64encode(_encoder.encode(list(values))).decode().rstrip("=")


def decode_cursor(cursor: str | None, arity: int) -> tuple | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = msgspec.json.decode(raw)
    except (ValueError, msgspec.DecodeError) as exc:
        raise InvalidRequest("after_cursor is not a cursor this API issued", "invalid_cursor") from exc
    if not isinstance(values, list) or len(values) != arity:
        raise InvalidRequest("after_cursor is not a cursor this API issued", "invalid_cursor")
    return tuple(values)


def parse_uuid(value: str, what: str) -> uuid.UUID:
    """An id in a path: anything that is not a UUID simply does not exist (404)."""
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError) as exc:
        raise NotFound(f"{what} {value} not found") from exc


def merge_metadata(current: dict, changes: dict, keys_max: int) -> dict:
    """PATCH semantics: given keys are set; a key set to "" is removed."""
    merged = dict(current)
    for key, value in changes.items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    if len(merged) > keys_max:
        raise InvalidRequest(f"metadata holds at most {keys_max} keys", "too_many_metadata_keys")
    return merged


class Page(msgspec.Struct, Generic[T]):
    items: list[T]
    next_cursor: str | None


def page_of(rows: list, per_page: int, render, cursor_of) -> Page:
    """A page from up to per_page + 1 rows (the extra one says there is a next page)."""
    more = len(rows) > per_page
    rows = rows[:per_page]
    return Page([render(r) for r in rows], cursor_of(rows[-1]) if more else None)
