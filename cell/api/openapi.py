"""Request-body schemas in the OpenAPI document for handlers that decode their bodies strictly themselves
(Litestar's own decoding would coerce "100" and 100.0 into 100, which a money API must refuse)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from litestar.openapi.spec import Operation


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


def body_operation(type_: type) -> type[Operation]:
    """An Operation class whose document carries `type_` as the JSON request body."""
    body = {"required": True, "content": {"application/json": {"schema": inline_schema(type_)}}}

    @dataclass
    class WithBody(Operation):
        def to_schema(self) -> dict[str, Any]:
            document = super().to_schema()
            document["requestBody"] = body
            return document

    return WithBody
