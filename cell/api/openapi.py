"""Request and response schemas in the OpenAPI document. The handlers decode their bodies strictly themselves
(Litestar's own decoding would coerce "100" and 100.0 into 100, which a money API must refuse) and answer
with bytes they encoded once, so Litestar cannot see either shape: the operation classes here say them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from litestar.openapi.spec import Operation
from msgspec import Struct

from cell.api.params import BALANCE_OPERATORS, OPERATORS
from cell.ledger.commands import PER_PAGE_MAX
from cell.ledger.currencies import EXPONENTS


def inline_schema(type_: type) -> dict[str, Any]:
    """msgspec's JSON schema with its $refs inlined (our request types are not recursive)."""
    schema = msgspec.json.schema(type_)
    defs = schema.pop("$defs", {})

    def resolve(node):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref is not None:
                return resolve(defs[ref.rsplit("/", 1)[-1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


def _merged(schema: dict, rules: dict) -> dict:
    out = dict(schema)
    for key, value in rules.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def query(name: str, schema: dict, description: str, *, nested: bool = False) -> dict[str, Any]:
    """A query parameter; `nested` ones are written name[key]=value (OpenAPI's deepObject style)."""
    parameter = {"name": name, "in": "query", "required": False, "description": description, "schema": schema}
    if nested:
        parameter.update(style="deepObject", explode=True)
    return parameter


def array_query(name: str, items: dict, description: str) -> dict[str, Any]:
    """A list parameter written name[]=a&name[]=b (the SDK's brackets array format)."""
    return {"name": f"{name}[]", "in": "query", "required": False, "description": description,
            "schema": {"type": "array", "items": items, "maxItems": 32}, "style": "form", "explode": True}


def operators(value: dict, names: set[str] = OPERATORS) -> dict:
    return {"type": "object", "properties": {op: value for op in sorted(names)}, "additionalProperties": False}


UUID = {"type": "string", "format": "uuid"}
TIME = {"type": "string", "format": "date-time"}
INT64 = {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
PAGING = [query("per_page", {"type": "integer", "minimum": 1, "maximum": PER_PAGE_MAX},
                f"Items per page (default 25, at most {PER_PAGE_MAX})."),
          query("after_cursor", {"type": "string", "maxLength": 1024},
                "The X-After-Cursor of the previous page (opaque).")]
METADATA = query("metadata", {"type": "object", "additionalProperties": {"type": "string"}},
                 "metadata[key]=value: only objects whose metadata holds every pair given.", nested=True)
BALANCE_FILTERS = [query(name, operators(INT64, BALANCE_OPERATORS),
                         f"{name}[gte]=0, {name}[not_eq]=0 and the like: accounts by current balance.", nested=True)
                   for name in ("pending_balance_amount", "posted_balance_amount", "available_balance_amount")]
# currency_exponent may be left out only for a currency whose exponent the ledger knows (ISO 4217 and a few).
CURRENCY_EXPONENT_RULE = {"anyOf": [
    {"required": ["currency_exponent"], "properties": {"currency_exponent": {"type": "integer"}}},
    {"properties": {"currency": {"enum": sorted(EXPONENTS)}}}]}
STATUS = {"type": "string", "enum": ["pending", "posted", "archived"]}
ORDER_BY = query("order_by", {"type": "object", "maxProperties": 1, "additionalProperties": False, "properties": {
    k: {"type": "string", "enum": ["asc", "desc"]} for k in ("created_at", "effective_at")}},
    "order_by[created_at] or order_by[effective_at] = asc | desc.", nested=True)


def documented(request: type | None = None, response: type | None = None, status: int = 200,
               many: bool = False, parameters: list[dict] = (), body_rules: dict | None = None) -> type[Operation]:
    """An Operation class whose document carries `request` as the JSON request body (with `body_rules`, JSON
    Schema keywords msgspec cannot say, added), `parameters` as its query parameters, `response` (a list of
    them when `many`, paged by X-After-Cursor and PAGING) as the answer for `status`, and problem+json for
    errors (a 400 too: Litestar's own would describe another shape)."""
    body = None
    if request is not None:
        body = {"required": True,
                "content": {"application/json": {"schema": _merged(inline_schema(request), body_rules or {})}}}
    parameters = [*(PAGING if many else ()), *parameters]
    answer = None
    if response is not None:
        schema = inline_schema(response)
        answer = {"description": "OK" if status == 200 else "Created",
                  "content": {"application/json": {"schema": {"type": "array", "items": schema} if many else schema}}}
        if many:
            answer["headers"] = {"X-After-Cursor": {
                "description": "Present when there is a next page: pass it as `after_cursor`.",
                "schema": {"type": "string"}}, "X-Per-Page": {
                "description": "The page size: `per_page` as given, or its default.", "schema": {"type": "integer"}}}
    problem = {"description": "A problem (RFC 9457) with a stable `code`",
               "content": {"application/problem+json": {"schema": inline_schema(Problem)}}}

    @dataclass
    class Documented(Operation):
        def to_schema(self) -> dict[str, Any]:
            document = super().to_schema()
            if body is not None:
                document["requestBody"] = body
            responses = document.setdefault("responses", {})
            if answer is not None:
                responses[str(status)] = answer
            responses.pop("400", None)
            responses["default"] = problem
            if parameters:
                document["parameters"] = [*document.get("parameters", []), *parameters]
            return document

    return Documented


class Problem(Struct, kw_only=True):
    """RFC 9457 problem+json; `code` is stable and names the rejection (see the README's table)."""

    type: str
    title: str
    status: int
    code: str
    detail: str
