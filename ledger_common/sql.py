"""Named SQL blocks from a directory of *.sql files (`-- name: fetch_account`), loaded once by name."""

from __future__ import annotations

import re
from pathlib import Path

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def load_queries(directory: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    for path in sorted(directory.glob("*.sql")):
        text = path.read_text()
        marks = list(_NAME.finditer(text))
        for i, mark in enumerate(marks):
            end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
            body = text[mark.end():end].strip()
            if mark.group(1) in queries:
                raise ValueError(f"query {mark.group(1)} defined twice ({path.name})")
            queries[mark.group(1)] = body
    return queries
