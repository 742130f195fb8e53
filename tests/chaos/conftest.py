"""The chaos suite: part of `make test` (and so of .ci/run); `make chaos` runs only it."""

from __future__ import annotations

import sys


def pytest_configure(config):
    config.addinivalue_line("markers", "chaos: the bank test under real faults against a `make run` stack")


def pytest_terminal_summary(terminalreporter):
    module = sys.modules.get("test_bank_under_faults")
    rows = getattr(module, "RESULTS", None)
    if not rows:
        return
    tr = terminalreporter
    tr.section("recovery times (s from the fault)")
    tr.write_line(f"{'fault':34} {'first 201':>9} {'queue empty':>11} {'slowest':>8} {'acked':>6} {'refused':>7} "
                  f"{'retried':>7} {'bystander':>9}  non-definite answers")
    for r in rows:
        first = "-" if r["first_201_s"] is None else f"{r['first_201_s']:.2f}"
        tr.write_line(f"{r['fault']:34} {first:>9} {r['queue_empty_s']:>11.2f} {r['slowest_s']:>8.2f} "
                      f"{r['acked']:>6} {r['refused']:>7} {r['retried']:>7} {r['bystander_errors']:>9}  "
                      + ",".join(r["codes"]))
