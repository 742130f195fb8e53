"""The progress of `ledgerctl tenants move`: a live status line on a terminal, plain lines otherwise, JSON lines
with --format json (stderr; the result stays on stdout)."""

from __future__ import annotations

import io
import json

from click.testing import CliRunner

from control_plane.cli import Context, _Progress, cli
from control_plane.settings import load_settings
from test_moves import _world


class Terminal(io.StringIO):
    """What the progress display writes to, seen as an operator's terminal (a stand-in for the tty)."""

    def isatty(self) -> bool:
        return True


def _batch(step: str, table: str, rows: int, copied: int, planned: int = 1000, freeze_ms=None) -> dict:
    return {"event": "batch", "step": step, "table": table, "rows": rows, "table_rows": rows, "round_rows": copied,
            "rows_per_s": 500, "rows_copied": copied, "rows_planned": planned, "freeze_ms": freeze_ms}


def test_a_terminal_gets_one_status_line_rewritten_in_place():
    screen = Terminal()
    progress = _Progress(Context(settings=load_settings({}), format="pretty"), screen)
    progress({"event": "step", "step": "copy"})
    for copied in (100, 250):
        progress.last = 0.0  # not throttled: each batch redraws
        progress(_batch("copy", "ledger_entries", copied, copied))
    progress({"event": "step", "step": "catch_up"})
    out = screen.getvalue()
    assert out.startswith("step copy\n")
    assert "\r  copy: ledger_entries 100 rows, 100 this round, 100 of 1,000 rows (10.0%), 500 rows/s" in out
    assert "\r  copy: ledger_entries 250 rows, 250 this round, 250 of 1,000 rows (25.0%), 500 rows/s" in out
    # The status line is cleared before the next step's line, which stays.
    assert out.endswith("\r" + " " * len("  copy: ledger_entries 250 rows, 250 this round, 250 of 1,000 rows "
                                          "(25.0%), 500 rows/s") + "\rstep catch_up\n")
    assert out.count("\n") == 2


def test_a_catch_up_batch_names_its_round():
    screen = io.StringIO()
    progress = _Progress(Context(settings=load_settings({}), format="pretty"), screen)
    progress(_batch("catch_up", "ledger_entries", 40, 40) | {"round": 3})
    assert screen.getvalue() == "  catch_up round 3: ledger_entries 40 rows, 40 this round, 40 of 1,000 rows, " \
                                "500 rows/s\n"


def test_plain_lines_when_not_a_terminal(ctl, stack):
    w = _world(ctl, stack, postings=2)
    result = ctl("tenants", "move", w["tenant"], "--to", "cli-2", "--yes")
    lines = result.stderr.splitlines()
    assert "step copy" in lines and "step freeze" in lines and "step post_verify" in lines
    assert any(line.startswith("  copy: ") and " rows, " in line and " of " in line for line in lines)
    assert not any("\r" in line for line in lines)
    assert "freeze window:" in result.stdout


def test_json_lines_with_format_json(stack):
    ctl = stack["ctl"]
    w = _world(ctl, stack, postings=2)
    result = CliRunner().invoke(cli, ["--format", "json", "tenants", "move", w["tenant"], "--to", "cli-2", "--yes"],
                                env=stack["env"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    # (The plan shown before the move is text: it is for the operator who confirms.)
    events = [json.loads(line)["progress"] for line in result.stderr.splitlines() if line.startswith('{"progress"')]
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps == ["copy", "catch_up", "pre_verify", "catch_up", "freeze", "final_catch_up", "verify", "flip",
                     "source_moved_out", "unfreeze", "post_verify"]
    assert any(e["event"] == "batch" and e["rows_copied"] > 0 and e["rows_planned"] for e in events)
    assert [e["round"] for e in events if e["event"] == "batch" and e["step"] == "copy"][:1] == [1]
    assert json.loads(result.stdout)["state"] == "done"
