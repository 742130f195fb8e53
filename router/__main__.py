"""`python -m router`: the router on uvicorn (uvloop, httptools), configured from ROUTER_* variables."""

from __future__ import annotations

import logging

import uvicorn

from router.app import create_app
from router.settings import load_settings


def main() -> None:
    settings = load_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s router %(levelname)s %(message)s")
    # No server/date headers of our own: the cell's answer goes back unchanged.
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, loop="uvloop", http="httptools",
                lifespan="on", access_log=False, server_header=False, date_header=False,
                timeout_keep_alive=5, log_level="warning",
                # X-Forwarded-For is set from the socket peer by the router itself; uvicorn's rewrite costs ~15 us.
                proxy_headers=False)


if __name__ == "__main__":
    main()
