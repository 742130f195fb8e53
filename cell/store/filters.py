"""List filters as SQL: fixed fragments chosen by filter name, every value bound as a parameter (never user text)."""

from __future__ import annotations

from typing import Any

OPERATORS_SQL = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "="}


class Where:
    """The WHERE clause of a list query, `tenant_id = $1` first."""

    def __init__(self, tenant_id: str) -> None:
        self.args: list[Any] = [tenant_id]
        self.clauses: list[str] = []

    def bind(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def add(self, template: str, value: Any) -> None:
        self.clauses.append(template.format(self.bind(value)))

    def sql(self) -> str:
        return "".join(" AND " + c for c in self.clauses)
