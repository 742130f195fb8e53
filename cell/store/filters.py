"""List filters as SQL: fixed fragments chosen by filter name, every value bound as a parameter (never user text)."""

from __future__ import annotations

from typing import Any

import asyncpg

OPERATORS_SQL = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "=", "not_eq": "<>"}


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

    def keyset(self, alias: str, order_by: str, after: tuple | None, descending: bool) -> str:
        """The rows of table `alias` past a cursor's position `after` in the list's order (by effective_at then
        seq, or by seq alone; either way) as a clause; returns that ORDER BY."""
        cmp, order = ("<", "DESC") if descending else (">", "ASC")
        if order_by == "effective_at":
            if after is not None:
                self.clauses.append(f"({alias}.effective_at, {alias}.seq) {cmp} "
                                    f"({self.bind(after[0])}::timestamptz, {self.bind(after[1])})")
            return f"{alias}.effective_at {order}, {alias}.seq {order}"
        if after is not None:
            self.add(f"{alias}.seq {cmp} {{}}", after[0])
        return f"{alias}.seq {order}"


def own_rows(source: str, conditions: list[str]) -> str:
    """The tenant's ($1) rows of `source` that `conditions` name (by ids, or by a key), as a subquery of their own
    (OFFSET 0) that a page's ORDER BY does not reach: beside it, a plan that did not know how few they are (any
    generic plan, or one made on tables analyzed while tiny) walked the tenant's rows in the page's order to find
    them (tests/integration/store/test_request_reads.py). No conditions: `source` itself."""
    if not conditions:
        return source
    return f"(SELECT * FROM {source} o WHERE tenant_id = $1 AND {' AND '.join(conditions)} OFFSET 0)"


async def at_most(conn: asyncpg.Connection, query: str, *args: Any, most: int) -> list | None:
    """The first column of `query`'s rows, sorted, when they are at most `most`; None when more. `query` takes `args`
    and then its LIMIT (given most + 1): one bounded probe of the rows a filter names, before a list reads them by id
    (own_rows) or, when more, takes its walk."""
    rows = await conn.fetch(query, *args, most + 1)
    return None if len(rows) > most else sorted({r[0] for r in rows})
