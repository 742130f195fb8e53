"""cell.api.server's protocol closes a keep-alive connection once it has been idle timeout_keep_alive seconds, as
uvicorn's own does, with one timer per idle connection instead of one per answer: never earlier than that after its
last answer, never while a request is in progress, and closed in the end; a request still arriving is closed once its
read bound has passed, whatever else the connection is doing."""

from __future__ import annotations

import asyncio

import uvicorn
from uvicorn.server import ServerState

from cell.api.server import CellHttpProtocol, HttpBounds

KEEP_ALIVE_S = 0.2
DEADLINE_S = 20.0  # a bound on a hung close, never a wait for one
REQUEST = b"GET /x HTTP/1.1\r\nHost: cell\r\n\r\n"
ANSWER_END = b"\r\n\r\nok"


class _Transport:
    """A client connection's server side: the bytes written and when it was closed (loop time)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.data = bytearray()
        self.written_at = 0.0
        self.closed_at: float | None = None

    def write(self, data: bytes) -> None:
        self.data += data
        self.written_at = self.loop.time()

    def close(self) -> None:
        if self.closed_at is None:
            self.closed_at = self.loop.time()

    def is_closing(self) -> bool:
        return self.closed_at is not None

    def get_extra_info(self, name: str, default=None):
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8101)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _app(delay_s: float):
    async def app(scope, receive, send) -> None:
        while (await receive()).get("more_body"):  # the whole body (or the connection lost)
            pass
        await asyncio.sleep(delay_s)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
    return app


def _connection(delay_s: float = 0.0, read_s: float = 30.0) -> tuple[CellHttpProtocol, _Transport]:
    loop = asyncio.get_running_loop()
    config = uvicorn.Config(_app(delay_s), lifespan="off", access_log=False, log_level="warning",
                            timeout_keep_alive=KEEP_ALIVE_S)
    state = ServerState()
    state.http_bounds = HttpBounds(65_536, 65_536 + 4 * 1_048_576, read_s)  # (the app's own, from its settings)
    protocol = CellHttpProtocol(config=config, server_state=state, app_state={}, _loop=loop)
    transport = _Transport(loop)
    protocol.connection_made(transport)
    return protocol, transport


async def _until(condition, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"not {what} within {DEADLINE_S} s"
        await asyncio.sleep(0.005)


async def _ask(protocol: CellHttpProtocol, transport: _Transport) -> float:
    """One request answered; the loop time its answer was written."""
    answers = transport.data.count(ANSWER_END)
    protocol.data_received(REQUEST)
    await _until(lambda: transport.data.count(ANSWER_END) > answers, "answered")
    return transport.written_at


async def test_an_idle_connection_is_closed_after_the_keep_alive_timeout():
    protocol, transport = _connection()
    answered = await _ask(protocol, transport)
    await _until(lambda: transport.closed_at is not None, "closed")
    assert transport.closed_at >= answered + KEEP_ALIVE_S


async def test_a_connection_used_again_stays_open_its_whole_timeout_after_its_last_answer():
    protocol, transport = _connection()
    await _ask(protocol, transport)
    await asyncio.sleep(KEEP_ALIVE_S / 2)
    last = await _ask(protocol, transport)  # the first answer's timer comes due while this one is idle
    await _until(lambda: transport.closed_at is not None, "closed")
    assert transport.closed_at >= last + KEEP_ALIVE_S
    assert transport.data.count(ANSWER_END) == 2


async def test_a_request_longer_than_the_timeout_is_answered_before_the_connection_closes():
    protocol, transport = _connection(delay_s=2 * KEEP_ALIVE_S)
    await _ask(protocol, transport)  # the first answer's timer is due while the second request is in progress
    second = asyncio.ensure_future(_ask(protocol, transport))
    answered = await second
    assert transport.data.count(ANSWER_END) == 2
    await _until(lambda: transport.closed_at is not None, "closed")
    assert transport.closed_at >= answered + KEEP_ALIVE_S


async def test_a_lost_connection_leaves_no_timer():
    protocol, transport = _connection()
    await _ask(protocol, transport)
    assert protocol.timeout_keep_alive_task is not None
    protocol.connection_lost(None)
    assert protocol.timeout_keep_alive_task is None


async def test_a_pipelined_request_whose_body_never_ends_is_closed_after_its_read_bound():
    # The timer goes while an answer is made; a request that arrives meanwhile waits its turn (pipelined), and when
    # it starts its body is still arriving: the timer is armed again, and closes it by the read bound.
    read_s = 2 * KEEP_ALIVE_S
    protocol, transport = _connection(delay_s=3 * KEEP_ALIVE_S, read_s=read_s)
    loop = asyncio.get_running_loop()
    protocol.data_received(REQUEST)
    await _until(lambda: protocol.timeout_keep_alive_task is None, "the timer gone while the answer is made")
    began = loop.time()
    protocol.data_received(b"POST /x HTTP/1.1\r\nHost: cell\r\nContent-Length: 10\r\n\r\nab")  # 8 bytes never come
    await _until(lambda: transport.closed_at is not None, "closed")
    assert transport.closed_at >= began + read_s
    assert transport.data.count(ANSWER_END) == 1  # the first request's answer; the second is never answered
