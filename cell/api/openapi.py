"""Request and response schemas in the OpenAPI document. The handlers decode their bodies strictly themselves
(Litestar's own decoding would coerce "100" and 100.0 into 100, which a money API must refuse) and answer
with bytes they encoded once, so Litestar cannot see either shape: the operation classes here say them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from litestar.openapi.spec import Operation
from msgspec import Struct


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


def documented(request: type | None = None, response: type | None = None, status: int = 200,
               many: bool = False) -> type[Operation]:
    """An Operation class whose document carries `request` as the JSON request body, `response` (a list of
    them when `many`, paged by X-After-Cursor) as the answer for `status`, and problem+json for errors."""
    body = None
    if request is not None:
        body = {"required": True, "content": {"application/json": {"schema": inline_schema(request)}}}
    answer = None
    if response is not None:
        schema = inline_schema(response)
        answer = {"description": "OK" if status == 200 else "Created",
                  "content": {"application/json": {"schema": {"type": "array", "items": schema} if many else schema}}}
        if many:
            answer["headers"] = {"X-After-Cursor": {
                "description": "Present when there is a next page: pass it as `after_cursor`.",
                "schema": {"type": "string"}}}
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
            responses["default"] = problem
            return document

    return Documented


class Problem(Struct, kw_only=True):
    """RFC 9457 problem+json; `code` is stable and names the rejection (see the README's table)."""

    type: str
    title: str
    status: int
    code: str
    detail: str
