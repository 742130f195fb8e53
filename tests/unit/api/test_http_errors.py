"""What a client of the cell's HTTP server (cell.api.server's protocol) gets when the app fails before answering:
problem+json with a stable code, never uvicorn's plain text, never a traceback. A real uvicorn server on the
loopback, in the test's loop, with stand-in apps (the cell's own exception handlers answer every Exception)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import types

import msgspec
import uvicorn

from cell.api.server import CellHttpProtocol, Cycle, HttpBounds

WITHIN_S = 20  # a bound on a hung answer, never a wait for one


@contextlib.asynccontextmanager
async def serve(app):
    """The server for `app`; yields its port."""
    config = uvicorn.Config(app, http=CellHttpProtocol, lifespan="off", access_log=False, log_config=None)
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    server.server_state.http_bounds = HttpBounds(65_536, 65_536 + 4 * 1_048_576, 30.0)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(10)
    await server.startup(sockets=[sock])
    try:
        yield sock.getsockname()[1]
    finally:
        server.force_exit = True
        await server.shutdown()
        sock.close()


async def _answer(port: int) -> bytes:
    """The whole answer to one request, to the server's close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /x HTTP/1.1\r\nHost: cell\r\n\r\n")
    out = b""
    while chunk := await asyncio.wait_for(reader.read(65536), WITHIN_S):
        out += chunk
    writer.close()
    return out


async def _raises(scope, receive, send) -> None:
    raise RuntimeError("secret internals")


async def _returns_unanswered(scope, receive, send) -> None:
    return None


async def test_an_app_that_fails_before_answering_is_a_500_problem_without_a_traceback():
    for app in (_raises, _returns_unanswered):
        async with serve(app) as port:
            answer = await _answer(port)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 500 "), (app.__name__, answer)
        assert b"content-type: application/problem+json" in head.lower(), (app.__name__, answer)
        assert b"connection: close" in head.lower(), (app.__name__, answer)
        problem = msgspec.json.decode(body)
        assert problem["status"] == 500 and problem["code"] == "internal_error", (app.__name__, problem)
        assert b"secret" not in body and b"Traceback" not in body, body


@contextlib.contextmanager
def server_errors():
    """The records the server's error logger (uvicorn.error) emits, whatever an earlier test's uvicorn.Config did to
    it in this process (a log_level of critical, or uvicorn's own logging config, which stops it at `uvicorn`)."""
    logger = logging.getLogger("uvicorn.error")
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append
    saved = logger.level, logger.propagate, logger.disabled
    logger.setLevel(logging.ERROR)
    logger.propagate, logger.disabled = False, False
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.level, logger.propagate, logger.disabled = saved


async def test_an_app_that_raises_logs_its_traceback_once():
    with server_errors() as records:
        async with serve(_raises) as port:
            await _answer(port)
    tracebacks = [record for record in records if record.exc_info]
    assert len(tracebacks) == 1 and "secret internals" in str(tracebacks[0].exc_info[1]), records


class _Transport:
    """What a closed request's cycle may touch of its connection: nothing, here, is expected to be written."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


@types.coroutine
def _parked():
    yield  # an await that never resumes: the request's app waiting on its database


async def _waits(scope, receive, send) -> None:
    await _parked()


def test_a_request_whose_coroutine_is_closed_ends_quietly_without_an_answer(caplog):
    """A request's coroutine closed without its loop running (its loop stopped under it, the coroutine collected):
    it ends there. It neither answers (no loop to write with) nor fails its closing, which Python reports as an
    error nobody can act on."""
    caplog.set_level(logging.ERROR)
    transport = _Transport()
    cycle = Cycle({"type": "http", "method": "GET"}, transport, None, logging.getLogger("test.server"),
                  logging.getLogger("test.access"), False, [], asyncio.Event(), False, True, lambda: None)
    run = cycle.run_asgi(_waits)
    run.send(None)  # to the app's wait
    run.close()
    assert transport.written == [] and not caplog.records, (transport.written, caplog.text)
