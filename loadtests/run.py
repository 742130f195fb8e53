"""`make loadtest`: Locust headless against a running stack, then the markdown report; exits with Locust's code.

    python -m loadtests.run [--host URL --tenant ID --api-key KEY] [--previous DIR] [locust options...]

Without --host/--tenant/--api-key (or LOADTEST_HOST / LOADTEST_TENANT_ID / LOADTEST_API_KEY) the credentials
are .ledger/dev.json's (what `make run` writes; --dev-json for another), for its host only: another host needs its
own tenant and key. Every other option goes to Locust,
after the defaults (-u 16 -r 4 -t 60s), so `-u 64 -t 5m` overrides them; with LOADTEST_SHAPE set there are
no defaults: the shape drives users and duration. The reports go to loadtests/reports/<UTC timestamp>/ (--reports for another
parent): Locust's report.html and CSV files (stats, full history, failures, exceptions), run.json,
thresholds.json and report.md; with a stack on this machine also monitor.csv (async queue, apply lag) and
cpu.json (CPU seconds by component: router, cells, workers, PostgreSQL, SQS endpoint, Valkey, load generator).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from loadtests import report
from loadtests.mix import dev_credentials, shape_stages, thresholds, weights
from loadtests.monitor import Monitor, Stack

HERE = Path(__file__).resolve().parent
DEFAULT_LOCUST_ARGS = ["-u", "16", "-r", "4", "-t", "60s"]


def master_port(locust_args: list[str]) -> list[str]:
    """With --processes, the master and its workers on a free loopback port rather than Locust's fixed 5557 on every
    interface: another run on the machine holds 5557 (the run then failed), and nothing else need reach them."""
    given = {arg.split("=")[0] for arg in locust_args}
    if "--processes" not in given or given & {"--master-bind-port", "--master-port", "--master-bind-host"}:
        return []
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    return ["--master-bind-host", "127.0.0.1", "--master-bind-port", port, "--master-port", port]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # the rest goes to Locust as given
    parser.add_argument("--host", default=os.environ.get("LOADTEST_HOST"))
    parser.add_argument("--tenant", default=os.environ.get("LOADTEST_TENANT_ID"))
    parser.add_argument("--api-key", default=os.environ.get("LOADTEST_API_KEY"))
    parser.add_argument("--dev-json", type=Path, default=Path(os.environ.get("LEDGER_DEV_JSON", ".ledger/dev.json")))
    parser.add_argument("--reports", type=Path, default=HERE / "reports", help="parent of the run's directory")
    parser.add_argument("--previous", type=Path, help="a previous run's directory: adds a regression table")
    parser.add_argument("--metrics", default=os.environ.get("LOADTEST_METRICS"),
                        help="comma-separated /metrics URLs of the cells and workers (default: found from the "
                             "local stack's processes)")
    parser.add_argument("--no-monitor", action="store_true", help="no queue, apply lag and CPU sampling")
    args, locust_args = parser.parse_known_args(argv)

    dev = json.loads(args.dev_json.read_text()) if args.dev_json.exists() else {}
    host = args.host or dev.get("base_url")
    dev_tenant, dev_key = dev_credentials(host, dev)
    tenant = args.tenant or dev_tenant
    api_key = args.api_key or dev_key
    if not (host and tenant and api_key):
        parser.error(f"no credentials: start `make run` (writes {args.dev_json}) or give --host, --tenant and "
                     "--api-key (or LOADTEST_HOST, LOADTEST_TENANT_ID, LOADTEST_API_KEY)")
    try:  # the suite's own settings, checked before the run rather than when Locust quits after it
        weights()
        thresholds()
        if os.environ.get("LOADTEST_SHAPE"):
            shape_stages(os.environ["LOADTEST_SHAPE"])
    except ValueError as error:
        parser.error(str(error))
    if args.previous is not None and (problem := report.not_a_run(args.previous)):
        parser.error(f"--previous {problem}")

    run_dir = args.reports / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=False)
    env = {**os.environ, "LEDGER_BASE_URL": host, "LEDGER_TENANT_ID": tenant, "LEDGER_API_KEY": api_key,
           "LOADTEST_REPORT_DIR": str(run_dir)}
    command = [sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless", "--host", host,
               "--csv", str(run_dir / report.PREFIX), "--csv-full-history", "--html", str(run_dir / "report.html"),
               *([] if os.environ.get("LOADTEST_SHAPE") else DEFAULT_LOCUST_ARGS), *master_port(locust_args),
               *locust_args]
    print(f"[loadtest] {host} as {tenant}; reports in {run_dir}", flush=True)
    # Locust stops on SIGINT only if it does not inherit it ignored (as a shell's background job does): a handler
    # here is reset to the default in the child, where Python makes it KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    locust = subprocess.Popen(command, env=env)
    # SIGTERM (`timeout`, a cancelled job) ends the run as Ctrl-C does: Locust stops and writes its files, then the
    # report is made from them as after a whole run. Locust is sent SIGINT: on its own SIGTERM it skips report.html.
    signal.signal(signal.SIGTERM, lambda signum, frame: locust.send_signal(signal.SIGINT))
    monitor = None
    if not args.no_monitor:
        stack = Stack(host, dev.get("control_plane_database_url") if host == dev.get("base_url") else None)
        urls = [u for u in args.metrics.split(",") if u] if args.metrics else None
        monitor = Monitor(run_dir, stack, urls, extra={"load generator": locust.pid})
        monitor.start()
    try:
        code = locust.wait()
    except KeyboardInterrupt:
        code = locust.wait()
    if monitor is not None:
        monitor.stop()
    if (run_dir / f"{report.PREFIX}_stats.csv").exists():
        print(f"[loadtest] report: {report.generate(run_dir, args.previous)}", flush=True)
        if refused := report.rate_limited(run_dir):
            print(f"[loadtest] {report.rate_limit_hint(refused, tenant)}", flush=True)
    print(f"[loadtest] locust exited with {code}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
