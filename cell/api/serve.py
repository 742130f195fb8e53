"""How `python -m cell` runs uvicorn (one process, or several sharing the port) and stops it at SIGTERM or SIGINT: a
bounded drain, then exit 0.

uvicorn alone waited for the requests in flight without a bound (the pod was killed at its grace period, the request
cut without a word in the log), and ended the process by raising the signal again once it had stopped (killed by
SIGTERM, not exit 0). Here, at the signal: /readyz answers 503 (the app's state.draining) and the listener closes
(no new connection); the requests in flight get the app's CellSettings.shutdown_drain_s to finish; those still
running then are cancelled (a posting's statement is cancelled on the server: it rolls back; a group commit already
sent runs to its end, cell.service.gather, and may commit: its client's retry with the same Idempotency-Key gets that
answer) and logged, each answered 503 shutting_down (cell.api.server.Cycle); the app's shutdown closes its pools
(waiting for such a group's statement, within its lock and statement bounds); the process exits 0. With
several processes, uvicorn's supervisor sends each the signal and waits for them: each serves with CellServer, and
reads its bound from its own app (settings from the same environment).
uvicorn 0.54's Server and Multiprocess (requirements.lock).
"""

from __future__ import annotations

import asyncio
import logging
import socket

import uvicorn
from uvicorn.supervisors import Multiprocess, multiprocess

from cell.settings import CellSettings

log = logging.getLogger("cell")

DRAIN_S_DEFAULT = CellSettings().shutdown_drain_s  # for an app without the cell's state
DRAIN_POLL_S = 0.05  # how often the drain looks whether the requests in flight are done
CANCELLED_WAIT_S_MAX = 5.0  # cancelled requests get this long to roll back and answer before the pools close
STARTUP_FAILURE = 3  # uvicorn's exit code when the app did not start


class CellServer(uvicorn.Server):
    """uvicorn's server, whose stop is the bounded drain above."""

    def _app_state(self):
        """The cell's app's state (cell.api.app), under the middleware uvicorn may have wrapped it in; None before
        the app is loaded."""
        app = getattr(self.config, "loaded_app", None)
        while app is not None and not hasattr(app, "state"):
            app = getattr(app, "app", None)
        return getattr(app, "state", None)

    def handle_exit(self, sig, frame) -> None:
        """The signal: out of rotation at once (the main loop closes the listener at its next tick, 0.1 s)."""
        state = self._app_state()
        if state is not None:
            state.draining = True
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        state = self.server_state
        for connection in list(state.connections):
            connection.shutdown()  # an idle one closes now, a busy one after its answer
        loop = asyncio.get_running_loop()
        drain_s = getattr(self._app_state(), "shutdown_drain_s", DRAIN_S_DEFAULT)
        deadline = loop.time() + drain_s
        while (state.connections or state.tasks) and not self.force_exit and loop.time() < deadline:
            await asyncio.sleep(DRAIN_POLL_S)
        running = list(state.tasks)
        if running:
            log.warning("shutdown: %d request(s) still running after the %s s drain cancelled (a posting's transaction "
                        "rolls back; each is answered 503 shutting_down)", len(running), drain_s)
            for task in running:
                task.cancel()
            await asyncio.wait(running, timeout=CANCELLED_WAIT_S_MAX)
        for connection in list(state.connections):
            connection.shutdown()  # answered by now: closed once what is left of the answer is written
        # uvicorn raises the signals it caught again once the server has stopped (capture_signals): the process would
        # end killed by SIGTERM. Stopped as asked is exit 0.
        self._captured_signals.clear()
        if not self.force_exit:
            await self.lifespan.shutdown()


class CellProcess(multiprocess.Process):
    """A process of uvicorn's supervisor, serving with CellServer."""

    @property
    def server(self) -> CellServer:
        if self._server is None:
            self._server = CellServer(config=self.config)
        return self._server


def serve(app, *, processes: int, **options) -> None:
    """Serve `app` (an app, or the import string each of several processes loads) with uvicorn `options`; returns
    once stopped. A process whose app failed to start exits STARTUP_FAILURE."""
    config = uvicorn.Config(app, workers=processes, **options)
    if config.workers > 1:
        # The supervisor makes its processes from this name (at start, for one that died, at SIGHUP and SIGTTIN).
        multiprocess.Process = CellProcess
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    server = CellServer(config)
    server.run()
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)
