"""Helpers shared by the use cases: pages, sealed cursors, metadata merging, UUID parsing."""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
import secrets
import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Generic, TypeVar

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cell.ledger.commands import METADATA_KEYS_MAX
from cell.ledger.errors import InvalidRequest, NotFound
from cell.settings import CellSettings

if TYPE_CHECKING:
    from cell.service.context import CellContext

T = TypeVar("T")
P = TypeVar("P")
_encoder = msgspec.json.Encoder()

CURSOR_LENGTH_MAX = 512
_NONCE_BYTES = 12
_TAG_BYTES = 16
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
# Without a configured secret (a single process: tests, a bare create_app) cursors hold within this process;
# `python -m cell` always configures one, shared by its server processes.
_PROCESS_SECRET = secrets.token_urlsafe(32)

Seq = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
SeqPosition = tuple[Seq]  # lists ordered by row number
EffectivePosition = tuple[datetime, Seq]  # entries ordered by effective time, then row number


class Cursors:
    """Opaque, tamper-proof cursors of one list of one tenant: the position (row numbers, which would tell how much
    the whole cell writes) sealed with AES-GCM under the cell's secret, the tenant and the list's name as associated
    data, so a forged or altered cursor, or one of another tenant or list, does not open."""

    def __init__(self, secret: str, tenant_id: str, list_name: str) -> None:
        self._aead = _aead(secret or _PROCESS_SECRET)
        self._aad = _encoder.encode([tenant_id, list_name])

    def seal(self, position: tuple) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, _encoder.encode(position), self._aad)
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, cursor: str | None, type_: type[P]) -> P | None:
        """The position a cursor of this list holds, or None for the first page; 400 invalid_cursor otherwise."""
        if cursor is None:
            return None
        try:
            if len(cursor) > CURSOR_LENGTH_MAX or not _BASE64URL.fullmatch(cursor):
                raise ValueError("not a cursor")
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            if len(raw) < _NONCE_BYTES + _TAG_BYTES:
                raise ValueError("too short")
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], self._aad)
            return msgspec.json.decode(plain, type=type_, strict=True)
        except (ValueError, InvalidTag, msgspec.DecodeError) as exc:
            raise InvalidRequest("after_cursor is not a cursor this API issued for this list",
                                 "invalid_cursor") from exc


@functools.lru_cache(maxsize=4)
def _aead(secret: str) -> AESGCM:
    return AESGCM(hashlib.sha256(b"cellledger cursor v1\x00" + secret.encode()).digest())


def cursors(settings: CellSettings, tenant_id: str, list_name: str) -> Cursors:
    return Cursors(settings.cursor_secret, tenant_id, list_name)


_V7_RANDOM = 0x00000000_0000_0FFF_3FFF_FFFFFFFFFFFF  # rand_a and rand_b: all but the time, version and variant bits
_V7_SET = 0x00000000_0000_7000_8000_000000000000  # version 7, variant RFC 9562
# new_ids' callables and the UUIDs' safety, looked up once (SafeUUID.unknown is an enum member: a Python-level
# descriptor call, ~1 us, at every read)
_UUID, _new, _set, _UNKNOWN = uuid.UUID, object.__new__, object.__setattr__, uuid.SafeUUID.unknown


# Account ids between their two forms (the API's UUID, the domain's text), remembered: postings name the same
# accounts again and again, and uuid's formatting and parsing are Python code (~1-3 us each, several per posting).
ACCOUNT_IDS_REMEMBERED = 10_000
account_uuid = functools.lru_cache(maxsize=ACCOUNT_IDS_REMEMBERED)(uuid.UUID)  # canonical text -> UUID
uuid_text = functools.lru_cache(maxsize=ACCOUNT_IDS_REMEMBERED)(str)  # UUID -> its canonical text


def new_ids(n: int) -> list[uuid.UUID]:
    """`n` time-ordered (version 7, RFC 9562) UUIDs: the current Unix millisecond first, 74 random bits after, so
    rows created later sort after in every index keyed by id (a random id dirtied a random leaf page of an index as
    large as its table per row: a full-page image of WAL each after every checkpoint, in an aged cell). From one read
    of the OS's randomness instead of one per id, built without UUID.__init__'s argument checks (the value is in
    range by construction)."""
    bits = int.from_bytes(os.urandom(16 * n), "big")
    now = ((time.time_ns() // 1_000_000) << 80) | _V7_SET
    ids = []
    for _ in range(n):
        new = _new(_UUID)
        _set(new, "int", now | (bits & _V7_RANDOM))
        _set(new, "is_safe", _UNKNOWN)
        ids.append(new)
        bits >>= 128
    return ids


def parse_uuid(value: str, what: str) -> uuid.UUID:
    """An id in a path: anything that is not a UUID simply does not exist (404)."""
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError) as exc:
        raise NotFound(f"{what} {value} not found") from exc


def merge_metadata(current: dict, changes) -> dict | None:
    """PATCH semantics: given keys are set; a key set to "" is removed. None when the PATCH gives no metadata
    (UNSET): it stays as it is. The merge holds at most what a create may give (commands.METADATA_KEYS_MAX)."""
    if changes is msgspec.UNSET:
        return None
    merged = dict(current)
    for key, value in changes.items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    if len(merged) > METADATA_KEYS_MAX:
        raise InvalidRequest(f"metadata holds at most {METADATA_KEYS_MAX} keys", "too_many_metadata_keys")
    return merged


def unchanged(current, **given) -> bool:
    """Whether every field a PATCH gives (UNSET: not given) already holds that value in `current` (a row)."""
    return all(value is msgspec.UNSET or current[field] == value for field, value in given.items())


class Page(msgspec.Struct, Generic[T]):
    items: list[T]
    next_cursor: str | None
    per_page: int  # the page size asked for (or the default): X-Per-Page, as Modern Treasury sends it


def page_of(rows: list, per_page: int, render, cursor_of) -> Page:
    """A page from up to per_page + 1 rows (the extra one says there is a next page)."""
    more = len(rows) > per_page
    rows = rows[:per_page]
    return Page([render(r) for r in rows], cursor_of(rows[-1]) if more else None, per_page)


async def seq_page(ctx: CellContext, tenant_id: str, list_name: str, after_cursor: str | None, per_page: int,
                   render, read, /, **filters) -> Page:
    """A page of a list in row-number order: `read(conn, tenant_id, after_seq=, limit=, **filters)` gives the rows
    after the cursor's position (one more than per_page: it says there is a next page), sealed for `list_name`."""
    box = cursors(ctx.settings, tenant_id, list_name)
    after_seq, = box.open(after_cursor, SeqPosition) or (0,)
    rows = await ctx.run(lambda conn: read(conn, tenant_id, after_seq=after_seq, limit=per_page + 1, **filters))
    return page_of(rows, per_page, render, lambda r: box.seal((r["seq"],)))
