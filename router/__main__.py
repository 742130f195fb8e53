"""`python -m router`: the router on its own HTTP server (router/server.py) and uvloop, configured from
ROUTER_* variables; stops gracefully on SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging

import uvloop

from router.server import RouterServer
from router.settings import load_settings


def main() -> None:
    settings = load_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s router %(levelname)s %(message)s")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(RouterServer(settings).serve_until_signalled())


if __name__ == "__main__":
    main()
