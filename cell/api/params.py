"""Query-string parsing for lists and balance reads: known names only, bounded, typed; 400 otherwise."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime, timedelta

from cell.ledger.commands import check_timestamp, midnight_utc
from cell.ledger.errors import InvalidRequest

_STORABLE = re.compile(r"^[^\x00\ud800-\udfff]*\Z")
_BRACKET = re.compile(r"^([a-z_]+)\[([^\]]{1,128})\]$")
OPERATORS = {"gt", "gte", "lt", "lte", "eq"}
BALANCE_OPERATORS = OPERATORS | {"not_eq"}  # a list of accounts by balance also takes not_eq (as Modern Treasury)
BALANCE_FIELDS = {"pending_balance_amount", "posted_balance_amount", "available_balance_amount"}
QUERY_PARAMS_MAX = 64
AMOUNT_VERSION_MAX = 2**63 - 1


class Query:
    """A request's query string, consumed name by name; whatever is left over is an unknown parameter."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        if len(items) > QUERY_PARAMS_MAX:
            raise InvalidRequest(f"at most {QUERY_PARAMS_MAX} query parameters", "too_many_parameters")
        self._items: dict[str, str] = {}
        self._lists: dict[str, list[str]] = {}  # name[]=a&name[]=b (the SDK's brackets array format)
        for key, value in items:
            if not _STORABLE.match(key) or not _STORABLE.match(value):
                raise InvalidRequest("query parameters may not contain NUL or unpaired surrogates", "invalid_parameter")
            if key.endswith("[]") and len(key) > 2:
                self._lists.setdefault(key[:-2], []).append(value)
                continue
            if key in self._items:
                raise InvalidRequest(f"query parameter {key} given twice", "duplicate_parameter")
            self._items[key] = value

    def take(self, name: str) -> str | None:
        return self._items.pop(name, None)

    def take_int(self, name: str, lo: int, hi: int, default: int | None = None) -> int | None:
        raw = self.take(name)
        if raw is None:
            return default
        if not re.fullmatch(r"-?\d{1,40}", raw):
            raise InvalidRequest(f"{name} must be an integer", "invalid_parameter")
        value = int(raw)
        if not lo <= value <= hi:
            raise InvalidRequest(f"{name} must be between {lo} and {hi}", "invalid_parameter")
        return value

    def take_text(self, name: str, length_max: int) -> str | None:
        raw = self.take(name)
        if raw is not None and len(raw) > length_max:
            raise InvalidRequest(f"{name} is longer than {length_max} characters", "invalid_parameter")
        return raw

    def take_bool(self, name: str) -> bool:
        raw = self.take(name)
        if raw is None:
            return False
        if raw.lower() not in ("true", "false", "1", "0"):
            raise InvalidRequest(f"{name} must be true or false", "invalid_parameter")
        return raw.lower() in ("true", "1")

    def take_uuid(self, name: str) -> uuid.UUID | None:
        raw = self.take(name)
        if raw is None:
            return None
        try:
            return uuid.UUID(raw)
        except ValueError as exc:
            raise InvalidRequest(f"{name} must be an id", "invalid_parameter") from exc

    def take_time(self, name: str) -> datetime | None:
        raw = self.take(name)
        return None if raw is None else parse_time(name, raw)

    def take_choice(self, name: str, choices: set[str]) -> str | None:
        raw = self.take(name)
        if raw is not None and raw not in choices:
            raise InvalidRequest(f"{name} must be one of {', '.join(sorted(choices))}", "invalid_parameter")
        return raw

    def take_list(self, name: str) -> list[str]:
        """Every `name[]=value`, in order (none: [])."""
        return self._lists.pop(name, [])

    def take_uuids(self, name: str) -> list[uuid.UUID]:
        """`name[]=id` repeated: the ids (none: [])."""
        try:
            return [uuid.UUID(raw) for raw in self.take_list(name)]
        except ValueError as exc:
            raise InvalidRequest(f"{name}[] must be ids", "invalid_parameter") from exc

    def take_choices(self, name: str, choices: set[str]) -> list[str]:
        """`name=value` or `name[]=value` repeated, each one of `choices`: all given (none: [])."""
        single = self.take(name)
        values = ([single] if single is not None else []) + self.take_list(name)
        if any(v not in choices for v in values):
            raise InvalidRequest(f"{name} must be one of {', '.join(sorted(choices))}", "invalid_parameter")
        return values

    def take_bracketed(self, prefix: str) -> dict[str, str]:
        """All `prefix[key]=value` parameters, e.g. metadata[color]=blue."""
        found = {}
        for key in list(self._items):
            m = _BRACKET.match(key)
            if m and m.group(1) == prefix:
                found[m.group(2)] = self._items.pop(key)
        return found

    def done(self) -> None:
        left = sorted([*self._items, *(f"{name}[]" for name in self._lists)])
        if left:
            raise InvalidRequest(f"unknown query parameter(s): {', '.join(left)}", "unknown_parameter")


def parse_time(name: str, raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw.replace(" ", "+"))
    except ValueError as exc:
        raise InvalidRequest(f"{name} must be an ISO 8601 timestamp", "invalid_parameter") from exc
    if value.tzinfo is None:
        raise InvalidRequest(f"{name} must carry a time zone (e.g. Z)", "invalid_parameter")
    check_timestamp(name, value)
    return value


def balance_filters(q: Query) -> list[tuple[str, str, int]]:
    filters = []
    for field in sorted(BALANCE_FIELDS):
        for op, raw in q.take_bracketed(field).items():
            if op not in BALANCE_OPERATORS or not re.fullmatch(r"-?\d{1,40}", raw):
                raise InvalidRequest(f"{field}[{op}] needs an operator of gt/gte/lt/lte/eq/not_eq and an integer",
                                     "invalid_parameter")
            filters.append((field, op, int(raw)))
    return filters


def time_filters(q: Query, name: str) -> list[tuple[str, datetime]]:
    out = []
    for op, raw in q.take_bracketed(name).items():
        if op not in OPERATORS:
            raise InvalidRequest(f"{name}[{op}]: operator must be gt/gte/lt/lte/eq", "invalid_parameter")
        out.append((op, parse_time(f"{name}[{op}]", raw)))
    return out


def day_start(name: str, raw: str) -> datetime:
    """`YYYY-MM-DD`: that UTC day's first instant, in the documented range (so a day after it is still a datetime).
    A timestamp is taken for its date as written (Modern Treasury's SDK types some date filters as datetimes and
    sends `str(datetime)`), as PostgreSQL reads a timestamp given for a date."""
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        written = raw if "T" in raw else raw.replace(" ", "T", 1)  # then a space is an offset's unescaped +
        try:
            day = datetime.fromisoformat(written.replace(" ", "+")).date()
        except ValueError as exc:
            raise InvalidRequest(f"{name} must be a date (YYYY-MM-DD)", "invalid_parameter") from exc
    start = midnight_utc(day)
    check_timestamp(name, start)
    return start


def date_filters(q: Query, name: str) -> list[tuple[str, datetime]]:
    """`effective_date[op]=YYYY-MM-DD` as bounds on the instant (UTC days): gt a day is gte the next midnight."""
    out = []
    for op, raw in q.take_bracketed(name).items():
        if op not in OPERATORS:
            raise InvalidRequest(f"{name}[{op}]: operator must be gt/gte/lt/lte/eq", "invalid_parameter")
        start = day_start(f"{name}[{op}]", raw)
        end = start + timedelta(days=1)
        out += {"gt": [("gte", end)], "gte": [("gte", start)], "lt": [("lt", start)], "lte": [("lt", end)],
                "eq": [("gte", start), ("lt", end)]}[op]
    return out


def end_of_date(q: Query, name: str) -> datetime | None:
    """`name=YYYY-MM-DD`: the first instant after that UTC day (balances "as of a date" count the whole day)."""
    raw = q.take(name)
    if raw is None:
        return None
    end = day_start(name, raw) + timedelta(days=1)
    check_timestamp(name, end)
    return end


def order_of(q: Query) -> tuple[str, bool]:
    """order_by[created_at] or order_by[effective_at] = asc | desc (one at a time): (field, descending)."""
    order = q.take_bracketed("order_by")
    if len(order) > 1 or any(k not in ("created_at", "effective_at") or v not in ("asc", "desc")
                             for k, v in order.items()):
        raise InvalidRequest("order_by[created_at] or order_by[effective_at] = asc | desc", "invalid_parameter")
    field, direction = next(iter(order.items()), ("created_at", "asc"))
    return field, direction == "desc"


def int_filters(q: Query, name: str, lo: int, hi: int) -> list[tuple[str, int]]:
    out = []
    for op, raw in q.take_bracketed(name).items():
        if op not in OPERATORS or not re.fullmatch(r"-?\d{1,20}", raw) or not lo <= int(raw) <= hi:
            raise InvalidRequest(f"{name}[{op}] needs an operator of gt/gte/lt/lte/eq and an integer in "
                                 f"[{lo}, {hi}]", "invalid_parameter")
        out.append((op, int(raw)))
    return out
