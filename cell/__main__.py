"""`python -m cell`: serve one cell's API (uvicorn + uvloop + cell.api.server's httptools protocol), settings from the
environment; at SIGTERM a bounded drain, then exit 0 (cell.api.serve)."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile

import msgspec

from cell.api.app import create_app
from cell.api.serve import serve
from cell.api.server import CellHttpProtocol
from cell.settings import load_settings


def main() -> None:
    settings = load_settings()
    if not settings.database_url:
        raise SystemExit("CELL_DATABASE_URL (or LEDGER_DATABASE_URL) is required; `make run` starts one for you")
    if not settings.cursor_secret:
        # In the environment before uvicorn starts its worker processes, which read their settings from it: every
        # process of this cell then seals and opens the same cursors.
        os.environ["CELL_CURSOR_SECRET"] = secrets.token_urlsafe(32)
        settings = msgspec.structs.replace(settings, cursor_secret=os.environ["CELL_CURSOR_SECRET"])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    options = dict(host=settings.host, port=settings.port, loop="uvloop", http=CellHttpProtocol, access_log=False,
                   log_level="warning", lifespan="on", server_header=False, timeout_keep_alive=settings.keep_alive_s,
                   proxy_headers=False)  # nothing reads the client address: skip uvicorn's X-Forwarded-* middleware
    if settings.processes > 1:
        # Each process imports the app itself (settings from the same environment). Their metrics meet in one
        # prometheus_client multiprocess directory (set before the processes import prometheus_client), which
        # the metrics listener of whichever process a scrape reaches aggregates.
        multiproc_dir = None
        if settings.metrics_port and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            multiproc_dir = tempfile.mkdtemp(prefix=f"cell-{settings.name}-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = multiproc_dir
        try:
            serve("cell.asgi:app", processes=settings.processes, **options)
        finally:
            if multiproc_dir:
                shutil.rmtree(multiproc_dir, ignore_errors=True)
    else:
        serve(create_app(settings), processes=1, **options)


if __name__ == "__main__":
    main()
