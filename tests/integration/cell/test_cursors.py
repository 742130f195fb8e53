"""List cursors are opaque and tamper-proof: a forged, altered or borrowed cursor is 400 invalid_cursor on every
list (never a 5xx), a real one pages on, and none shows the cell-wide row number it stands for."""

import base64
import json
import uuid

import pytest

LISTS = [("/api/ledgers", {}), ("/api/ledger_accounts", {}), ("/api/ledger_transactions", {}),
         ("/api/ledger_entries", {}), ("/api/ledger_entries", {"order_by[created_at]": "desc"}),
         ("/api/ledger_entries", {"order_by[effective_at]": "asc"}),
         ("/api/ledger_entries", {"order_by[effective_at]": "desc"})]


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def old_style(value) -> str:
    return b64(json.dumps(value).encode())


FORGED = [old_style(v) for v in (["x"], [1e308], [2**70], [-(2**70)], [None], [[1]], [[]], [{}], [1, 2], [],
                                 {"a": 1}, "s", None, [1], [0], ["2026-01-01T00:00:00Z", 1], [None, None],
                                 ["9999-99-99", 1], [1, "x"])]
FORGED += [str(uuid.uuid4()), "garbage!", "", "=", "a", "ab=", "x y", b64(b"\x00" * 12), b64(b"\xff" * 28),
           b64(bytes(range(256))), "A" * 513, "A" * 100, "W1000000000000000000000000000000000000000XQ",
           "%00", "\u00e9\u00e9\u00e9\u00e9", "1e308", "-1", "99999999999999999999999999"]


@pytest.fixture
async def filled(api):
    ledger = await api.ledger("one")
    await api.ledger("two")
    a = await api.account(ledger["id"], "debit")
    b = await api.account(ledger["id"], "credit")
    for amount in (1, 2, 3):
        r = await api.transfer(ledger["id"], a["id"], b["id"], amount,
                               effective_at=f"2026-01-0{amount}T00:00:00Z")
        assert r.status_code == 201, r.text
    return api


async def first_cursor(api, path, params) -> tuple[str, list]:
    r = await api.get(path, params={**params, "per_page": 1})
    assert r.status_code == 200, r.text
    assert r.headers.get("x-after-cursor"), (path, params)
    return r.headers["x-after-cursor"], r.json()


def tampered(cursor: str) -> list[str]:
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    flipped = [bytes(raw[:i]) + bytes([raw[i] ^ 1]) + bytes(raw[i + 1:]) for i in (0, len(raw) // 2, len(raw) - 1)]
    return [b64(f) for f in flipped] + [cursor[:-2], cursor + "AA", b64(bytes(raw[:28]))]


@pytest.mark.parametrize("path, params", LISTS)
async def test_forged_and_altered_cursors_are_400_on_every_list(filled, path, params):
    api = filled
    cursor, _ = await first_cursor(api, path, params)
    for forged in FORGED + tampered(cursor):
        r = await api.get(path, params={**params, "after_cursor": forged})
        assert r.status_code == 400, (path, params, forged, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "invalid_cursor", (forged, r.text)


@pytest.mark.parametrize("path, params", LISTS)
async def test_a_real_cursor_pages_on_through_the_whole_list(filled, path, params):
    api = filled
    everything = (await api.get(path, params=params)).json()
    seen, cursor = [], None
    while True:
        r = await api.get(path, params={**params, "per_page": 1, **({"after_cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        seen += [item["id"] for item in r.json()]
        cursor = r.headers.get("x-after-cursor")
        if cursor is None:
            break
    assert seen == [item["id"] for item in everything] and len(seen) >= 2


@pytest.mark.parametrize("path, params", LISTS)
async def test_a_cursor_of_another_tenant_or_list_is_400(filled, new_tenant, path, params):
    api = filled
    cursor, _ = await first_cursor(api, path, params)
    other = await new_tenant()
    r = await other.get(path, params={**params, "after_cursor": cursor})
    assert r.status_code == 400 and r.json()["code"] == "invalid_cursor", r.text
    for other_path, other_params in LISTS:
        if (other_path, other_params) != (path, params):
            r = await api.get(other_path, params={**other_params, "after_cursor": cursor})
            assert r.status_code == 400 and r.json()["code"] == "invalid_cursor", (other_path, other_params, r.text)


async def test_a_cursor_does_not_show_the_row_number(filled, admin_conn):
    api = filled
    for path, table in (("/api/ledgers", "ledgers"), ("/api/ledger_accounts", "ledger_accounts"),
                        ("/api/ledger_transactions", "ledger_transactions"), ("/api/ledger_entries", "ledger_entries")):
        cursor, items = await first_cursor(api, path, {})
        seq = await admin_conn.fetchval(f"SELECT seq FROM {table} WHERE id = $1", uuid.UUID(items[0]["id"]))
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        assert old_style([seq]) not in cursor and f"[{seq}]".encode() not in raw, (path, seq, cursor)
        with pytest.raises(ValueError):
            json.loads(raw)
        # Sealed afresh each time: the same position never shows the same text.
        assert (await first_cursor(api, path, {}))[0] != cursor
