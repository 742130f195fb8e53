"""The markdown report of one Locust run, from its CSV files (and run.json / thresholds.json when present).

    python -m loadtests.report loadtests/reports/20261130-031500 [--previous loadtests/reports/20261030-...]

Writes report.md in the run's directory: throughput and latency percentiles per request type, the run against
Modern Treasury's published load test (loadtests.mix.REFERENCE), the thresholds, plots of throughput and
p50/p90/p99 over time per request type and of the CPU by component (PNG with matplotlib, a development
dependency; SVG drawn here where it is not installed), and, given a previous run's directory, a regression table.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
from pathlib import Path

from loadtests.mix import REFERENCE, REQUESTS

PREFIX = "locust"  # the --csv prefix the runner gives Locust
REGRESSION_PCT = 10.0  # a latency up or a throughput down by more than this is flagged


def _num(value: str | None) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def not_a_run(run_dir: Path) -> str | None:
    """Why `run_dir` is no run's directory (for the command line), or None."""
    return None if (Path(run_dir) / f"{PREFIX}_stats.csv").is_file() else f"{run_dir}: no {PREFIX}_stats.csv there"


def read_stats(run_dir: Path) -> list[dict]:
    """One row per request type (and "Aggregated"), numbers as floats."""
    path = run_dir / f"{PREFIX}_stats.csv"
    rows = []
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            rows.append({"type": r["Type"], "name": r["Name"], "requests": _num(r["Request Count"]),
                         "failures": _num(r["Failure Count"]), "rps": _num(r["Requests/s"]),
                         "p50": _num(r["50%"]), "p90": _num(r["90%"]), "p99": _num(r["99%"]),
                         "avg": _num(r["Average Response Time"]), "max": _num(r["Max Response Time"])})
    return rows


def reference_table(stats: list[dict]) -> list[str]:
    """The run against Modern Treasury's published mix (mix.REFERENCE): writes/s of every POST /api/ledger_transactions
    and balance reads/s, and the p90 of the investing write and read (the reference's own requests); empty when the
    run made neither."""
    by_name = {r["name"]: r for r in stats}
    writes = [r for r in stats if r["name"].startswith("POST /api/ledger_transactions")]
    read, write = by_name.get(REQUESTS["invest_read"]), by_name.get(REQUESTS["invest_write"])
    if read is None and write is None:
        return []
    rows = [("writes/s (every POST /api/ledger_transactions)", REFERENCE["writes_per_s"],
             sum(r["rps"] for r in writes) if writes else math.nan, 1, False),
            ("balance reads/s (GET /api/ledger_accounts/{id})", REFERENCE["reads_per_s"],
             read["rps"] if read else math.nan, 1, False),
            ("p90 write ms (the investing write)", REFERENCE["write_p90_ms"], write["p90"] if write else math.nan, 0, True),
            ("p90 balance read ms", REFERENCE["read_p90_ms"], read["p90"] if read else math.nan, 0, True)]
    lines = ["| | Modern Treasury's published run | this run | |", "|---|---:|---:|---|"]
    for label, ref, now, digits, lower_is_better in rows:
        met = "" if math.isnan(now) else ("met" if (now <= ref if lower_is_better else now >= ref) else "not met")
        lines.append(f"| {label} | {_fmt(ref, digits)} | {_fmt(now, digits)} | {met} |")
    return lines


def rate_limited(run_dir: Path) -> int:
    """How many requests of the run the tenant's rate limit refused (429), from Locust's failures CSV: a load over
    the limit measures the limiter, not the ledger."""
    path = run_dir / f"{PREFIX}_failures.csv"
    if not path.exists():
        return 0
    with path.open(newline="") as f:
        return sum(int(_num(r["Occurrences"])) for r in csv.DictReader(f)
                   if re.search(r"\b429\b", r["Error"]) and not math.isnan(_num(r["Occurrences"])))


def rate_limit_hint(count: int, tenant: str | None) -> str:
    """What to do about `count` requests refused by the rate limit."""
    return (f"{count} requests were refused by the tenant's rate limit (429): the load measured the limiter. Raise "
            f"the limit for a load test: `ledgerctl tenants rate-limit {tenant or 'TENANT'} --per-s N`.")


def read_history(run_dir: Path) -> dict[str, list[dict]]:
    """Name -> time series {t (s from start), users, total, rps, p50, p90, p99}; the percentiles are Locust's
    over its last 10 s."""
    path = run_dir / f"{PREFIX}_stats_history.csv"
    series: dict[str, list[dict]] = {}
    if not path.exists():
        return series
    t0 = None
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            ts = _num(r["Timestamp"])
            t0 = ts if t0 is None else t0
            series.setdefault(r["Name"], []).append({
                "t": ts - t0, "users": _num(r["User Count"]), "total": _num(r["Total Request Count"]),
                "p50": _num(r["50%"]), "p90": _num(r["90%"]), "p99": _num(r["99%"])})
    for points in series.values():  # throughput per interval (Locust's own Requests/s is a 10 s moving window)
        for before, point in zip([None, *points], points):
            dt = point["t"] - before["t"] if before else 0
            point["rps"] = (point["total"] - before["total"]) / dt if before and dt > 0 else math.nan
    return series


def read_monitor(run_dir: Path) -> list[dict]:
    path = run_dir / "monitor.csv"
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [{k: _num(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _fmt(x: float, digits: int = 0) -> str:
    return "-" if math.isnan(x) else f"{x:,.{digits}f}"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60] or "aggregated"


# ---- plots ---------------------------------------------------------------------------------------------------

def _matplotlib():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        return None


def _svg_open(w: int, h: int, title: str) -> list[str]:
    """An SVG chart's first elements: the document on a white ground, and its title."""
    return [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
             f'font-size="11"><rect width="100%" height="100%" fill="white"/>'),
            f'<text x="{w / 2}" y="18" text-anchor="middle" font-size="13">{_esc(title)}</text>']


def _svg(path: Path, title: str, ylabel: str, lines: dict[str, list[tuple[float, float]]]) -> None:
    """A small line chart in SVG, for when matplotlib is not installed."""
    w, h, left, right, top, bottom = 720, 300, 60, 190, 30, 40
    points = [(x, y) for pts in lines.values() for x, y in pts if not math.isnan(y)]
    xmax = max((x for x, _ in points), default=1) or 1
    ymax = max((y for _, y in points), default=1) or 1
    sx = lambda x: left + (w - left - right) * x / xmax
    sy = lambda y: h - bottom - (h - top - bottom) * y / ymax
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]
    out = [*_svg_open(w, h, title),
           f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="black"/>',
           f'<text x="{left - 5}" y="{top + 4}" text-anchor="end">{ymax:,.0f}</text>',
           f'<text x="{left - 5}" y="{h - bottom}" text-anchor="end">0</text>',
           f'<text x="{w - right}" y="{h - bottom + 15}" text-anchor="end">{xmax:,.0f} s</text>',
           f'<text x="12" y="{h / 2}" transform="rotate(-90 12 {h / 2})" text-anchor="middle">{_esc(ylabel)}</text>']
    for i, (label, pts) in enumerate(lines.items()):
        colour = colours[i % len(colours)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts if not math.isnan(y))
        if coords:
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{coords}"/>')
        out.append(f'<text x="{w - right + 8}" y="{top + 14 * (i + 1)}" fill="{colour}">{_esc(label[:30])}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out))


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _chart(plt, run_dir: Path, file: str, title: str, ylabel: str,
           lines: dict[str, list[tuple[float, float]]]) -> str:
    """One line chart over seconds: a PNG through matplotlib when it is importable (`plt`), else an SVG."""
    if plt:
        fig, ax = plt.subplots(figsize=(9, 3.5))
        for label, pts in lines.items():
            ax.plot([x for x, _ in pts], [y for _, y in pts], label=label)
        ax.set_title(title)
        ax.set_xlabel("seconds")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        fig.savefig(run_dir / file, dpi=100)
        plt.close(fig)
    else:
        _svg(run_dir / file, title, ylabel, lines)
    return file


def plot(run_dir: Path, history: dict[str, list[dict]]) -> list[tuple[str, str]]:
    """(title, file name) of every plot written."""
    if not history:
        return []
    plt = _matplotlib()
    ext = "png" if plt else "svg"

    def chart(name: str, title: str, ylabel: str, lines: dict[str, list[tuple[float, float]]]) -> str:
        return _chart(plt, run_dir, f"{name}.{ext}", title, ylabel, lines)

    written = []
    names = sorted(n for n in history if n != "Aggregated")
    written.append(("Throughput per request type (requests/s)", chart(
        "throughput", "Throughput (requests/s)", "requests/s",
        {n: [(p["t"], p["rps"]) for p in history[n]] for n in names + ["Aggregated"] if n in history})))
    if "Aggregated" in history:
        written.append(("Users", chart("users", "Users", "users",
                                       {"users": [(p["t"], p["users"]) for p in history["Aggregated"]]})))
    for n in names:
        written.append((f"Latency of {n} (ms)", chart(
            f"latency-{_slug(n)}", f"Latency: {n}", "ms",
            {q: [(p["t"], p[q]) for p in history[n]] for q in ("p50", "p90", "p99")})))
    return written


def plot_monitor(run_dir: Path, samples: list[dict]) -> list[tuple[str, str]]:
    if not samples:
        return []
    plt = _matplotlib()
    ext = "png" if plt else "svg"
    out = []
    for name, title, ylabel, series in (
            ("queue", "Async queue: unapplied balance effects", "effects",
             {"unapplied effects": "unapplied_effects"}),
            ("apply-lag", "Apply lag (posting to applied), per sample interval", "seconds",
             {"p50": "apply_lag_p50_s", "p90": "apply_lag_p90_s", "p99": "apply_lag_p99_s",
              "oldest unapplied age": "oldest_unapplied_age_s"})):
        lines = {label: [(r["t"], r[col]) for r in samples if not math.isnan(r.get(col, math.nan))]
                 for label, col in series.items()}
        out.append((title, _chart(plt, run_dir, f"{name}.{ext}", title, ylabel, lines)))
    return out


def _bars_svg(path: Path, title: str, unit: str, bars: dict[str, float]) -> None:
    """Horizontal bars in SVG, for when matplotlib is not installed."""
    w, label_w, row_h, top = 720, 170, 22, 30
    h = top + row_h * len(bars) + 10
    most = max(bars.values(), default=1) or 1
    out = _svg_open(w, h, title)
    for i, (label, value) in enumerate(bars.items()):
        y = top + row_h * i
        length = (w - label_w - 90) * value / most
        out += [f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{_esc(label[:28])}</text>',
                f'<rect x="{label_w}" y="{y + 3}" width="{length:.1f}" height="{row_h - 6}" fill="#1f77b4"/>',
                f'<text x="{label_w + length + 5:.1f}" y="{y + 14}">{value:.3f} {_esc(unit)}</text>']
    out.append("</svg>")
    path.write_text("\n".join(out))


def plot_cpu(run_dir: Path, cpu: dict, requests: float) -> str | None:
    """The CPU by component, ms per request served, as bars (largest first): the chart's file name, or None
    without requests."""
    if not requests or not cpu.get("cpu_s"):
        return None
    bars = {name: 1000 * seconds / requests
            for name, seconds in sorted(cpu["cpu_s"].items(), key=lambda kv: -kv[1])}
    title = "CPU by component (ms per request)"
    plt = _matplotlib()
    if plt is None:
        _bars_svg(run_dir / "cpu.svg", title, "ms", bars)
        return "cpu.svg"
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(bars) + 1.2))
    names = list(bars)[::-1]  # largest at the top
    ax.barh(names, [bars[n] for n in names], color="#1f77b4")
    for y, name in enumerate(names):
        ax.text(bars[name], y, f" {bars[name]:.3f}", va="center", fontsize=8)
    ax.set_title(title)
    ax.set_xlabel("ms of CPU per request served")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(run_dir / "cpu.png", dpi=100)
    plt.close(fig)
    return "cpu.png"


def cpu_table(cpu: dict, requests: float) -> list[str]:
    total = sum(cpu["cpu_s"].values())
    lines = [(f"CPU time of each process of the stack over {cpu['seconds']:g} s (from /proc), per request served "
             f"({requests:,.0f} requests)."), "",
             "| Component | CPU s | ms per request | share |", "|---|---:|---:|---:|"]
    for name, seconds in sorted(cpu["cpu_s"].items(), key=lambda kv: -kv[1]):
        per = 1000 * seconds / requests if requests else math.nan
        lines.append(f"| {name} | {seconds:.2f} | {_fmt(per, 2)} | {100 * seconds / total if total else 0:.0f}% |")
    stack = {k: v for k, v in cpu["cpu_s"].items() if k != "load generator"}
    if requests and stack:
        lines.append(f"| **stack (all but the load generator)** | {sum(stack.values()):.2f} | "
                     f"**{1000 * sum(stack.values()) / requests:.2f}** | |")
    return lines


# ---- the report ----------------------------------------------------------------------------------------------

def _change(before: dict, now: dict, key: str, higher_is_worse: bool, digits: int, flags: list[str]) -> str:
    a, b = before[key], now[key]
    if math.isnan(a) or math.isnan(b) or a == 0:
        return f"{_fmt(a, digits)} → {_fmt(b, digits)}"
    pct = 100 * (b - a) / a
    if pct > REGRESSION_PCT if higher_is_worse else pct < -REGRESSION_PCT:
        flags.append(key)
    return f"{_fmt(a, digits)} → {_fmt(b, digits)} ({pct:+.0f}%)"


def _failures(before: dict, now: dict, flags: list[str]) -> str:
    """The error rate before -> now; flagged when it rose by more than REGRESSION_PCT (or from none to some):
    requests that now fail fast would otherwise read as faster percentiles."""
    a, b = (r["failures"] / r["requests"] if r["requests"] else math.nan for r in (before, now))
    if math.isnan(a) or math.isnan(b):
        return f"{_fmt(100 * a, 2)}% → {_fmt(100 * b, 2)}%"
    if b > a * (1 + REGRESSION_PCT / 100) if a else b > 0:
        flags.append("failures")
    return f"{100 * a:.2f}% → {100 * b:.2f}%"


def regression_table(current: list[dict], previous: list[dict]) -> list[str]:
    before = {r["name"]: r for r in previous}
    lines = ["| Request type | req/s before → now | p50 ms | p90 ms | p99 ms | failures | verdict |",
             "|---|---|---|---|---|---|---|"]
    for r in current:
        p = before.get(r["name"])
        if p is None:
            lines.append(f"| {r['name']} | new: {_fmt(r['rps'], 1)} | {_fmt(r['p50'])} | {_fmt(r['p90'])} | "
                         f"{_fmt(r['p99'])} | {_fmt(r['failures'])} | new |")
            continue
        flags: list[str] = []
        cells = [_change(p, r, key, worse, digits, flags)
                 for key, worse, digits in (("rps", False, 1), ("p50", True, 0), ("p90", True, 0), ("p99", True, 0))]
        cells.append(_failures(p, r, flags))
        verdict = "**regression: " + ", ".join(flags) + "**" if flags else "ok"
        lines.append(f"| {r['name']} | " + " | ".join(cells) + f" | {verdict} |")
    for name in before.keys() - {r["name"] for r in current}:
        lines.append(f"| {name} | gone | | | | | gone |")
    return lines


def load_differences(run: dict | None, before: dict | None) -> list[str]:
    """What the two runs' load was made of, where it differs ("users 16 → 64"): host, user class weights, shape,
    books and Locust's users, spawn rate, run time and processes (run.json); the set-up's duration is no load."""
    if not run or not before:
        return ["the load of one of the runs is unknown (no run.json)"] if run or before else []
    pairs = [(key, before.get(key), run.get(key)) for key in ("host", "weights", "shape")]
    pairs += [(key, (before.get("books") or {}).get(key), (run.get("books") or {}).get(key))
              for key in ("investors", "cards")]
    pairs += [(key.replace("_", " "), (before.get("locust") or {}).get(key), (run.get("locust") or {}).get(key))
              for key in ("users", "spawn_rate", "run_time_s", "processes")]
    return [f"{key} {a} → {b}" for key, a, b in pairs if a != b]


def generate(run_dir: Path, previous: Path | None = None) -> Path:
    run_dir = Path(run_dir)
    stats = read_stats(run_dir)
    history = read_history(run_dir)
    run = _json(run_dir / "run.json")
    thresholds = _json(run_dir / "thresholds.json")
    duration = max((p["t"] for p in history.get("Aggregated", [])), default=math.nan)

    md = [f"# Load test report: {run_dir.name}", ""]
    if run:
        md += [f"- Host: `{run.get('host')}`, tenant `{run.get('tenant_id')}`",
               f"- User class weights: {', '.join(f'{k} {v}' for k, v in run.get('weights', {}).items())}",
               f"- Shape: {run.get('shape') or 'none (users, spawn rate and run time from the command line)'}",
               f"- Books: {run.get('books')}"]
    md += [f"- Duration: {_fmt(duration)} s" if not math.isnan(duration) else "- Duration: unknown", ""]

    md += ["## Throughput and latency per request type", "",
           "| Request type | requests | failures | req/s | p50 ms | p90 ms | p99 ms | max ms |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in stats:
        label = f"**{r['name']}**" if r["name"] == "Aggregated" else r["name"]
        md.append(f"| {label} | {_fmt(r['requests'])} | {_fmt(r['failures'])} | {_fmt(r['rps'], 1)} | "
                  f"{_fmt(r['p50'])} | {_fmt(r['p90'])} | {_fmt(r['p99'])} | {_fmt(r['max'])} |")
    md.append("")
    if refused := rate_limited(run_dir):
        md += [f"**{rate_limit_hint(refused, run.get('tenant_id') if run else None)}**", ""]
    if reference := reference_table(stats):
        md += ["## Against Modern Treasury's published load test", "",
               f"{REFERENCE['writes_per_s']:,.0f} ledger transaction writes/s with {REFERENCE['reads_per_s']:,.0f} "
               f"balance reads/s, p90 {REFERENCE['write_p90_ms']:g} ms write and {REFERENCE['read_p90_ms']:g} ms read. "
               "Its mix is the investing user class alone (`LOADTEST_WEIGHTS=investing=1,card=0,statement=0,"
               "backdated=0`); the throughput a run reaches is set by its users, its shape and the machines (here: "
               "averaged over the whole run, its ramp included).", ""] + reference + [""]

    if thresholds:
        limits = ", ".join(f"{k} {v:g} ms" for k, v in thresholds["p90_ms"].items())
        md += ["## Thresholds", "", f"p90: {limits}; error rate at most {thresholds['max_error_rate']}.", ""]
        md += ["**Passed.**" if not thresholds["broken"] else
               "**Failed:**\n" + "\n".join(f"- {b}" for b in thresholds["broken"]), ""]

    plots = plot(run_dir, history)
    if plots:
        md += ["## Over time", ""]
        if plots[0][1].endswith(".svg"):
            md += ["(SVG: matplotlib is not installed; with it the plots are PNG.)", ""]
        md += [f"### {title}\n\n![{title}]({file})\n" for title, file in plots]

    samples = read_monitor(run_dir)
    if samples:
        md += ["## The stack during the run", ""]
        queues = [r["unapplied_effects"] for r in samples if not math.isnan(r["unapplied_effects"])]
        if queues:
            lags = [r["apply_lag_p90_s"] for r in samples if not math.isnan(r["apply_lag_p90_s"])]
            md += [(f"Largest async queue: {_fmt(max(queues))} effects; "
                   f"apply lag p90 (per {_fmt(samples[0]['t'], 1)} s sample, estimated within the worker's histogram "
                   f"buckets): worst "
                   f"{_fmt(max(lags), 3) if lags else '-'} s."), ""]
            md += [f"### {title}\n\n![{title}]({file})\n" for title, file in plot_monitor(run_dir, samples)]
        else:
            md += [("Async queue and apply lag: not measured (no cell's /metrics answered; give them with "
                    "`--metrics URL,...`)."), ""]
    cpu = _json(run_dir / "cpu.json")
    if cpu and cpu["cpu_s"]:
        total_requests = next((r["requests"] for r in stats if r["name"] == "Aggregated"), 0.0)
        md += ["### CPU by component", ""] + cpu_table(cpu, total_requests) + [""]
        if chart := plot_cpu(run_dir, cpu, total_requests):
            md += [f"![CPU by component (ms per request)]({chart})", ""]

    if previous is not None:
        md += [f"## Regression against {Path(previous).name}", "",
               f"Flagged when a percentile or the share of failed requests rises, or the throughput falls, by more "
               f"than {REGRESSION_PCT:g}% (failures: also from none to some).", ""]
        if differences := load_differences(run, _json(Path(previous) / "run.json")):
            md += [("**Not the same load, so not a like-for-like comparison**: "
                    + "; ".join(differences) + "."), ""]
        md += regression_table(stats, read_stats(Path(previous))) + [""]

    md += ["## Files", "", "- Locust's HTML report: [report.html](report.html)",
           f"- CSV: {', '.join(sorted(p.name for p in run_dir.glob('*.csv')))}", ""]
    out = run_dir / "report.md"
    out.write_text("\n".join(md))
    return out


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--previous", type=Path, help="a previous run's directory, for the regression table")
    args = parser.parse_args()
    for run_dir in (args.run_dir, args.previous):
        if run_dir is not None and (problem := not_a_run(run_dir)):
            parser.error(problem)
    print(generate(args.run_dir, args.previous))


if __name__ == "__main__":
    main()
