"""The write-once anchor directory: one read-only file per anchor, never replaced, read back as published."""

from __future__ import annotations

import asyncio

from control_plane import anchors


def test_an_anchor_is_written_once_and_read_back(tmp_path):
    head = {"tenant_id": "acme/eu", "seal_seq": 7, "hash": bytes(range(32))}
    assert anchors.publish_to_directory(str(tmp_path), "cell-1", [head]) == 1
    # a second head for the same position (a rewritten chain) does not replace the first
    assert anchors.publish_to_directory(str(tmp_path), "cell-2", [{**head, "hash": bytes(32)}]) == 0
    (path,) = tmp_path.rglob("*.json")
    assert not path.stat().st_mode & 0o222 and path.parent.parent == tmp_path  # one folder per tenant, quoted
    (anchor,) = asyncio.run(anchors.read("acme/eu", None, str(tmp_path)))
    assert (anchor.seal_seq, anchor.hash) == (7, bytes(range(32)))
    assert asyncio.run(anchors.read("nobody", None, str(tmp_path))) == []
