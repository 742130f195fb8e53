"""Request smuggling and header injection between a client, the router and a cell, over raw sockets: a request whose
framing two parsers could read differently (Content-Length and Transfer-Encoding, odd spellings, bad line ends, bad
chunk sizes), targets that are not paths, pipelined requests behind refused ones, cell answers whose framing is
easy to get wrong (HEAD, 1xx, 204/304 with a body, bytes behind an answer, `connection: close`, a close mid-answer),
and a client that says it closes. The cell here is a raw HTTP/1.1 server that reads with h11 (a
parser other than the router's) and records every request it receives: the cell must receive exactly the requests
the router meant to send, and each client its own answers."""

from __future__ import annotations

import asyncio
import base64
import contextlib

import h11
import msgspec
import pytest

from router_rig import new_tenant_id, read_answer

READ_S = 5
SMUGGLED = b"GET /api/smuggled HTTP/1.1\r\nhost: router\r\n\r\n"
CLOSE = b"<close>"  # in a RecordingCell script: the cell closes the connection there


def auth(tenant: str) -> str:
    return "Basic " + base64.b64encode(f"{tenant}:secret".encode()).decode()


def request(tenant: str, path: str = "/api/x", method: str = "GET", body: bytes = b"", extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nhost: router\r\nauthorization: {auth(tenant)}\r\n{extra}"
    if body:
        head += f"content-length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


class RecordingCell:
    """A cell that reads requests with h11 and records each (method, target, headers, body); it answers with what
    it received (JSON, content-length framed), or, for a path in `scripts`, with those bytes exactly (as many
    writes as parts; the parts after a None only when the connection's next request has come; at CLOSE it closes
    the connection)."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.ended: list[list[str]] = []  # each connection the router closed: the targets it carried
        self.scripts: dict[bytes, list[bytes]] = {}
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def start(self) -> RecordingCell:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        self.server.close()

    def api(self) -> list[dict]:
        """What it received for the API (the router's health checks left out)."""
        return [r for r in self.received if r["target"].startswith("/api/")]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        deferred: list[bytes] = []
        served: list[str] = []
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    conn.receive_data(data)
                    if not data:
                        return
                    continue
                if isinstance(event, h11.ConnectionClosed):
                    return
                assert isinstance(event, h11.Request), event
                body = b""
                while True:
                    part = conn.next_event()
                    if part is h11.NEED_DATA:
                        conn.receive_data(await reader.read(65536))
                        continue
                    if isinstance(part, h11.EndOfMessage):
                        break
                    body += part.data
                target = event.target.decode()
                served.append(target)
                headers = {k.decode(): v.decode() for k, v in event.headers}
                self.received.append({"method": event.method.decode(), "target": target, "headers": headers,
                                      "body": body.decode("latin-1")})
                if deferred:  # the rest of the last scripted answer, now that another request came
                    writer.write(b"".join(deferred))
                    deferred = []
                script = self.scripts.get(event.target)
                if script is not None:
                    for i, part in enumerate(script):
                        if part is CLOSE:
                            return
                        if part is None:  # what follows waits for the connection's next request
                            deferred = script[i + 1:]
                            break
                        writer.write(part)
                        await writer.drain()
                        await asyncio.sleep(0.02)  # each part in a read of its own
                    return_to_h11 = False
                else:
                    tenant = None
                    if "authorization" in headers:
                        tenant = base64.b64decode(headers["authorization"][6:]).decode().split(":", 1)[0]
                    payload = msgspec.json.encode({"tenant": tenant, "target": target, "body": body.decode()})
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                                 % len(payload) + payload)
                    await writer.drain()
                    return_to_h11 = True
                if not return_to_h11:
                    # The scripted bytes were written behind h11's back: read the next request afresh.
                    conn = h11.Connection(h11.SERVER)
                    continue
                conn.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
                conn.send(h11.EndOfMessage())
                conn.start_next_cycle()
        except (h11.RemoteProtocolError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.ended.append(served)
            writer.close()


@pytest.fixture(scope="module")
async def recording(platform):
    cell = await RecordingCell().start()
    name = f"cell-rec-{new_tenant_id('')[2:]}"
    await platform.sql("INSERT INTO cells (name, api_url, database_url) VALUES ($1, $2, '')", name, cell.url)
    yield name, cell
    await platform.sql("DELETE FROM tenants WHERE cell = $1", name)
    await platform.sql("DELETE FROM cells WHERE name = $1", name)
    await cell.stop()


@contextlib.asynccontextmanager
async def two_tenants(platform, recording, **overrides):
    """Tenants a and b on the recording cell, behind a new router: (a, b, router, cell)."""
    name, cell = recording
    a, b = new_tenant_id("a"), new_tenant_id("b")
    await platform.add_tenant(a, name)
    await platform.add_tenant(b, name)
    # What the cell saw is this test's alone (a test waits on a connection that carried a given target).
    cell.received.clear()
    cell.ended.clear()
    router = await platform.router(redis_url="", **overrides)
    try:
        yield a, b, router, cell
    finally:
        await router.stop()


async def closed(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(65536), READ_S) == b""


async def exchange(router, raw: bytes) -> tuple[int, dict[str, str], bytes, bool]:
    """`raw` on a fresh connection: the first answer, and whether the router then closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
    try:
        writer.write(raw)
        status, headers, body = await read_answer(reader)
        return status, headers, body, await closed(reader)
    finally:
        writer.close()


def framing_attacks(a: str) -> dict[str, bytes]:
    """Requests of tenant a that carry SMUGGLED in their body to a parser that frames them otherwise."""
    head = f"POST /api/x HTTP/1.1\r\nhost: router\r\nauthorization: {auth(a)}\r\n".encode()
    chunked_smuggle = b"0\r\n\r\n" + SMUGGLED
    return {
        "CL.TE": head + b"content-length: %d\r\ntransfer-encoding: chunked\r\n\r\n" % len(chunked_smuggle)
                 + chunked_smuggle,
        "TE.CL": head + b"transfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n" + b"%x\r\n" % len(SMUGGLED)
                 + SMUGGLED + b"\r\n0\r\n\r\n",
        "two equal CL": head + b"content-length: 5\r\ncontent-length: 5\r\n\r\nhello" + SMUGGLED,
        "two different CL": head + b"content-length: 0\r\ncontent-length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED,
        "CL list": head + b"content-length: 0, %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED,
        "TE chunked, identity": head + b"transfer-encoding: chunked, identity\r\n\r\n" + chunked_smuggle,
        "TE identity, chunked": head + b"transfer-encoding: identity, chunked\r\n\r\n" + chunked_smuggle,
        "TE leading comma": head + b"transfer-encoding: , chunked\r\n\r\n" + chunked_smuggle,
        "TE xchunked": head + b"transfer-encoding: xchunked\r\n\r\n" + chunked_smuggle,
        "TE twice": head + b"transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n" + chunked_smuggle,
        "TE obs-fold": head + b"transfer-encoding: identity\r\n chunked\r\n\r\n" + chunked_smuggle,
        "TE obs-fold alone": head + b"transfer-encoding:\r\n chunked\r\n\r\n" + chunked_smuggle,
        "TE space before colon": head + b"transfer-encoding : chunked\r\n\r\n" + chunked_smuggle,
        "CL space before colon": head + b"content-length : 0\r\n\r\n" + SMUGGLED,
        "chunk size hex overflow": head + b"transfer-encoding: chunked\r\n\r\n1000000000000000" + b"%x\r\n"
                                   % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n",
        "chunk size negative": head + b"transfer-encoding: chunked\r\n\r\n-1\r\n" + SMUGGLED + b"\r\n0\r\n\r\n",
        "chunk size 0x": head + b"transfer-encoding: chunked\r\n\r\n0x0\r\n\r\n" + SMUGGLED,
        "chunk size with space": head + b"transfer-encoding: chunked\r\n\r\n0 \r\n\r\n" + SMUGGLED,
        "chunk ext with CR": head + b"transfer-encoding: chunked\r\n\r\n0;a=\"x\r\n\"\r\n\r\n" + SMUGGLED,
        "chunk bare LF": head + b"transfer-encoding: chunked\r\n\r\n0\n\n" + SMUGGLED,
        "bare LF head": head.replace(b"\r\n", b"\n") + b"content-length: 0\n\n" + SMUGGLED,
        "bare LF one line": head + b"x-a: 1\ncontent-length: 0\r\n\r\n" + SMUGGLED,
        "CR in value": head + b"x-a: 1\rcontent-length: 0\r\n\r\n" + SMUGGLED,
        "NUL in value": head + b"x-a: 1\x00\r\ncontent-length: 0\r\n\r\n" + SMUGGLED,
    }


async def test_a_request_framed_two_ways_is_refused_and_nothing_of_it_reaches_the_cell(platform, recording):
    async with two_tenants(platform, recording) as (a, b, router, cell):
        answers = {name: await exchange(router, raw) for name, raw in framing_attacks(a).items()}
        await asyncio.sleep(0)
        received = cell.api()
    for name, (status, headers, body, was_closed) in answers.items():
        assert status in (400, 501), (name, status, body)
        assert headers["content-type"] == "application/problem+json", name
        assert was_closed, name
    assert received == []


async def test_chunk_extensions_are_read_and_the_body_alone_reaches_the_cell(platform, recording):
    async with two_tenants(platform, recording) as (a, b, router, cell):
        raw = request(a, method="POST", extra="transfer-encoding: chunked\r\n") + b"5;ext=1;q=\"v\"\r\nhello\r\n0\r\n\r\n"
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        writer.write(raw + request(b, "/api/after"))
        first = await read_answer(reader)
        second = await read_answer(reader)
        writer.close()
    assert first[0] == 200 and msgspec.json.decode(first[2])["body"] == "hello"
    assert msgspec.json.decode(second[2]) == {"tenant": b, "target": "/api/after", "body": ""}
    assert [(r["target"], r["body"]) for r in cell.api()] == [("/api/x", "hello"), ("/api/after", "")]


async def test_a_target_that_is_not_a_path_is_refused(platform, recording):
    async with two_tenants(platform, recording) as (a, b, router, cell):
        answers = [await exchange(router, request(a, path=target, extra="connection: close\r\n"))
                   for target in ("http://cell/api/x", "https://127.0.0.1/api/x", "api/x", "*", "//cell/api/x")]
        received = cell.api()
    assert [status for status, *_ in answers] == [400, 400, 400, 400, 404]
    assert received == []


async def test_expect_continue_then_a_second_request_each_reach_the_cell_once(platform, recording):
    async with two_tenants(platform, recording) as (a, b, router, cell):
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        writer.write(request(a, "/api/one", method="POST", extra="expect: 100-continue\r\ncontent-length: 4\r\n"))
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_S)
        writer.write(b"body" + request(b, "/api/two"))
        first = await read_answer(reader)
        second = await read_answer(reader)
        writer.close()
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert msgspec.json.decode(first[2]) == {"tenant": a, "target": "/api/one", "body": "body"}
    assert msgspec.json.decode(second[2]) == {"tenant": b, "target": "/api/two", "body": ""}
    assert [(r["target"], "expect" in r["headers"]) for r in cell.api()] == [("/api/one", False), ("/api/two", False)]


async def test_a_request_the_router_refuses_does_not_change_how_the_next_one_is_read(platform, recording):
    name, _ = recording
    limited = new_tenant_id("l")
    await platform.add_tenant(limited, name, rate=1, burst=1)
    async with two_tenants(platform, recording, body_bytes_max=64) as (a, b, router, cell):
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        writer.write(request(limited, "/api/spend"))
        assert (await read_answer(reader))[0] == 200
        refused = [
            request("nobody", "/api/x", method="POST", body=SMUGGLED),  # 401
            request(a, "/cell-only", method="POST", body=SMUGGLED),  # 404: not relayed
            request(a, "/api/big", method="POST", body=SMUGGLED + b"x" * 64),  # 413: over the bound
            request(limited, "/api/x", method="POST", body=SMUGGLED),  # 429
            request(a, "/api/big", method="POST", extra="transfer-encoding: chunked\r\n")
            + b"%x\r\n" % (len(SMUGGLED) + 64) + SMUGGLED + b"x" * 64 + b"\r\n0\r\n\r\n",  # 413, chunked
        ]
        writer.write(b"".join(raw + request(b, f"/api/after{i}") for i, raw in enumerate(refused)))
        answers = [await read_answer(reader) for _ in range(2 * len(refused))]
        writer.close()
    assert [status for status, *_ in answers[0::2]] == [401, 404, 413, 429, 413]
    assert [msgspec.json.decode(body) for _, _, body in answers[1::2]] == [
        {"tenant": b, "target": f"/api/after{i}", "body": ""} for i in range(len(refused))]
    assert [r["target"] for r in cell.api()] == ["/api/spend"] + [f"/api/after{i}" for i in range(len(refused))]


@pytest.mark.parametrize("script", [
    # A HEAD answer's content-length says what a GET would get: no body follows.
    ("HEAD", [b"HTTP/1.1 200 OK\r\ncontent-length: 40\r\nx-s: head\r\n\r\n"]),
    # Interim answers, then the real one.
    ("GET", [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n",
             b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-s: early\r\n\r\nok"]),
    # 204 and 304 have no body, whatever their content-length says: what follows is no answer to anybody.
    ("GET", [b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nx-s: 204\r\n\r\n"]),
    ("GET", [b"HTTP/1.1 304 Not Modified\r\ncontent-length: 99\r\nx-s: 304\r\n\r\n"]),
], ids=["head", "interim", "204", "304"])
async def test_a_cell_answer_without_a_body_is_relayed_and_the_next_answer_is_the_next_requests(
        platform, recording, script):
    method, parts = script
    async with two_tenants(platform, recording) as (a, b, router, cell):
        cell.scripts[b"/api/scripted"] = parts
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
            writer.write(request(a, "/api/scripted", method=method))
            first = await read_answer(reader, head_request=method == "HEAD")
            # Another tenant, another connection, after: its own answer.
            other = await exchange(router, request(b, "/api/other", extra="connection: close\r\n"))
            writer.write(request(a, "/api/next"))
            then = await read_answer(reader)
            writer.close()
        finally:
            cell.scripts.clear()
    assert first[1]["x-s"] == {"HEAD": "head"}.get(method, parts[-1].split(b"x-s: ")[1].split(b"\r\n")[0].decode())
    assert msgspec.json.decode(other[2])["tenant"] == b and msgspec.json.decode(other[2])["target"] == "/api/other"
    assert msgspec.json.decode(then[2]) == {"tenant": a, "target": "/api/next", "body": ""}


async def test_the_bytes_a_cell_sends_after_a_204_or_304_are_no_other_requests_answer(platform, recording):
    # A cell that sends a body after a 204 (or a 304) breaks HTTP: those bytes are no answer to anything. If the
    # router kept using the connection, they would be read as the answer to the next request sent on it, another
    # tenant's: here they look like an answer naming tenant a.
    async with two_tenants(platform, recording) as (a, b, router, cell):
        leaked = msgspec.json.encode({"tenant": a, "target": "/api/secret", "body": "a's"})
        stray = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(leaked) + leaked
        answers, others = [], []
        for status in (b"204 No Content", b"304 Not Modified"):
            cell.scripts[b"/api/bodiless"] = [b"HTTP/1.1 %s\r\ncontent-length: %d\r\n\r\n" % (status, len(stray)),
                                               None, stray]
            try:
                answers.append(await exchange(router, request(a, "/api/bodiless", extra="connection: close\r\n")))
                others.append(await exchange(router, request(b, "/api/other", extra="connection: close\r\n")))
            finally:
                cell.scripts.clear()
    assert [status for status, *_ in answers] == [204, 304]
    for status, _, body, _ in others:
        assert status == 200 and msgspec.json.decode(body) == {"tenant": b, "target": "/api/other", "body": ""}


async def test_bytes_a_cell_sends_on_an_idle_connection_end_it_before_another_request_is_sent_on_it(
        platform, recording):
    # A cell that sends bytes nobody asked for, once its answer is done (here the start of an answer head): fed to
    # the parser, they would be read as the start of the next answer on the connection, another tenant's request's.
    # The router drops the connection as soon as they come; the next request goes on another, and gets its answer.
    async with two_tenants(platform, recording) as (a, b, router, cell):
        cell.scripts[b"/api/first"] = [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
                                       b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-len"]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
            writer.write(request(a, "/api/first"))
            first = await read_answer(reader)
            deadline = asyncio.get_running_loop().time() + READ_S
            while not any("/api/first" in served for served in cell.ended):  # the router closed that connection
                assert asyncio.get_running_loop().time() < deadline, "the router kept the out-of-step connection"
                await asyncio.sleep(0.02)
            writer.write(request(b, "/api/other"))
            other = await read_answer(reader)
            writer.close()
        finally:
            cell.scripts.clear()
    print(first, other, cell.ended, [r["target"] for r in cell.received], flush=True)
    assert first[0] == 200 and first[2] == b"ok"
    assert other[0] == 200 and msgspec.json.decode(other[2]) == {"tenant": b, "target": "/api/other", "body": ""}


async def test_an_http_1_0_request_with_a_transfer_coding_closes_its_connection_after_its_answer(platform, recording):
    # HTTP/1.0 has no transfer codings: a server in front of the router may have read this body as the next request.
    # RFC 9112 6.1: its framing is faulty; the connection closes after the answer, whatever keep-alive says, and
    # what came after it is not read as a request.
    async with two_tenants(platform, recording) as (a, b, router, cell):
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        writer.write(request(a, "/api/old", method="POST", extra="connection: keep-alive\r\ntransfer-encoding: chunked\r\n")
                     .replace(b"HTTP/1.1", b"HTTP/1.0") + b"5\r\nhello\r\n0\r\n\r\n" + request(b, "/api/behind"))
        status, headers, body = await read_answer(reader)
        was_closed = await closed(reader)
        writer.close()
        received = [r["target"] for r in cell.api()]
    assert status == 200 and msgspec.json.decode(body)["body"] == "hello"
    assert headers.get("connection") == "close" and was_closed
    assert received == ["/api/old"]


async def test_a_cell_that_answers_with_a_protocol_switch_is_a_502_at_once_and_its_connection_dropped(platform, recording):
    # The router never offers an upgrade (it drops the header): a 101 is no answer, and what follows it is not HTTP.
    async with two_tenants(platform, recording, upstream_timeout_s=30.0) as (a, b, router, cell):
        cell.scripts[b"/api/switch"] = [b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: x\r\n\r\n"
                                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nno"]
        try:
            status, headers, body, _ = await exchange(router, request(a, "/api/switch", extra="connection: close\r\n"))
        finally:
            cell.scripts.clear()
        other = await exchange(router, request(b, "/api/other", extra="connection: close\r\n"))
    assert status == 502 and msgspec.json.decode(body)["code"] == "cell_failed"
    assert msgspec.json.decode(other[2]) == {"tenant": b, "target": "/api/other", "body": ""}


async def test_a_204_carries_no_content_length_and_a_304_only_the_cells(platform, recording):
    # RFC 9110 8.6: a server MUST NOT send Content-Length in a 204; a 304's may only be the one its 200 would have
    # had, which only the cell knows. A client that reads a length (0 or not) where none may be stays out of step.
    scripts = {
        "204 without": b"HTTP/1.1 204 No Content\r\nx-s: 1\r\n\r\n",
        "204 with 0": b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nx-s: 1\r\n\r\n",
        "204 closing": b"HTTP/1.1 204 No Content\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
        "304 without": b"HTTP/1.1 304 Not Modified\r\netag: \"e\"\r\n\r\n",
        "304 with 99": b"HTTP/1.1 304 Not Modified\r\ncontent-length: 99\r\netag: \"e\"\r\n\r\n",
        "304 closing": b"HTTP/1.1 304 Not Modified\r\nconnection: close\r\ncontent-length: 99\r\n\r\n",
    }
    async with two_tenants(platform, recording) as (a, b, router, cell):
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        answers = {}
        try:
            for name, script in scripts.items():
                cell.scripts[b"/api/bodiless"] = [script]
                writer.write(request(a, "/api/bodiless"))
                status, headers, _ = await read_answer(reader)
                answers[name] = (status, headers.get("content-length"))
            cell.scripts.clear()
            writer.write(request(a, "/api/then"))
            then = await read_answer(reader)
        finally:
            writer.close()
    assert answers == {"204 without": (204, None), "204 with 0": (204, None), "204 closing": (204, None),
                       "304 without": (304, None), "304 with 99": (304, "99"), "304 closing": (304, "99")}
    assert msgspec.json.decode(then[2]) == {"tenant": a, "target": "/api/then", "body": ""}


def connections_of(cell: RecordingCell, target: str) -> list[list[str]]:
    """The targets carried by each connection of the cell's that carried `target` (those ended, then any still open)."""
    return [served for served in cell.ended if target in served]


async def test_a_head_answer_has_no_body_and_the_cells_length_whatever_the_cell_sends_after_its_head(
        platform, recording):
    # HEAD: the length a GET would get (the cell's), or none when the cell framed its GET otherwise; no body, even
    # from a cell that wrongly sends one (it is no answer to the next request); pipelined behind, the next answer.
    heads = {
        "length": [b"HTTP/1.1 200 OK\r\ncontent-length: 40\r\nx-s: 1\r\n\r\n"],
        "chunked": [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-s: 1\r\n\r\n"],
        "closing": [b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 40\r\nx-s: 1\r\n\r\n"],
        "body": [b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-s: 1\r\n\r\nhello"],
        "404": [b"HTTP/1.1 404 Not Found\r\ncontent-type: application/problem+json\r\ncontent-length: 70\r\n\r\n"],
    }
    async with two_tenants(platform, recording) as (a, b, router, cell):
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        answers = {}
        try:
            for name, script in heads.items():
                cell.scripts[b"/api/head"] = script
                writer.write(request(a, "/api/head", method="HEAD") + request(a, f"/api/after-{name}"))
                status, headers, _ = await read_answer(reader, head_request=True)
                after = await read_answer(reader)
                answers[name] = (status, headers.get("content-length"), after)
        finally:
            cell.scripts.clear()
            writer.close()
    assert {name: (status, length, after[0], msgspec.json.decode(after[2]))
            for name, (status, length, after) in answers.items()} == {
        name: (status, length, 200, {"tenant": a, "target": f"/api/after-{name}", "body": ""})
        for name, status, length in [("length", 200, "40"), ("chunked", 200, None), ("closing", 200, "40"),
                                     ("body", 200, "5"), ("404", 404, "70")]}


async def test_a_cell_answer_saying_connection_close_ends_that_cell_connection_not_the_clients(platform, recording):
    # The cell says it closes, but here keeps reading: a router that reused the connection would send the next
    # request on it. The client's connection goes on, and is not told it closes.
    async with two_tenants(platform, recording) as (a, b, router, cell):
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        answers = []
        try:
            for spelling in (b"connection: close", b"Connection: Close", b"connection: keep-alive, close"):
                cell.scripts[b"/api/closing"] = [b"HTTP/1.1 200 OK\r\n%s\r\ncontent-length: 2\r\n\r\nok" % spelling]
                writer.write(request(a, "/api/warm"))
                await read_answer(reader)
                writer.write(request(a, "/api/closing"))
                answers.append(await read_answer(reader))
                writer.write(request(b, "/api/next"))
                answers.append(await read_answer(reader))
        finally:
            cell.scripts.clear()
            writer.close()
        deadline = asyncio.get_running_loop().time() + READ_S
        while len(connections_of(cell, "/api/closing")) < 3:  # the router closed each of those connections
            assert asyncio.get_running_loop().time() < deadline, "the router kept a connection the cell closes"
            await asyncio.sleep(0.02)
    for closing, following in zip(answers[0::2], answers[1::2]):
        assert (closing[0], closing[2], closing[1].get("connection")) == (200, b"ok", None)
        assert msgspec.json.decode(following[2]) == {"tenant": b, "target": "/api/next", "body": ""}
    for served in connections_of(cell, "/api/closing"):
        assert served[-1] == "/api/closing", served  # nothing was sent on it after the answer that closed it


async def test_a_cell_that_closes_mid_answer_is_a_502_and_the_clients_next_answer_is_its_own(platform, recording):
    # Never a truncated body passed off as whole, never bytes of another answer: a problem+json 502, and the client's
    # connection goes on. On a kept-alive cell connection (the fast path) and on fresh ones (idle ones never reused).
    scripts = {
        "mid-body": [b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"a\":1",
                     CLOSE],
        "mid-chunk": [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel", CLOSE],
        "before the last chunk": [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n", CLOSE],
        "mid-head": [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-a:", CLOSE],
        "close-delimited": [b"HTTP/1.1 200 OK\r\n\r\nall of it?", CLOSE],
    }
    answers = {}
    for idle_s_max in (300.0, 0.0):
        async with two_tenants(platform, recording, idle_connection_s_max=idle_s_max) as (a, b, router, cell):
            reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
            try:
                for name, script in scripts.items():
                    cell.scripts[b"/api/cut"] = script
                    writer.write(request(a, "/api/warm"))
                    await read_answer(reader)
                    writer.write(request(a, "/api/cut"))
                    status, headers, body = await read_answer(reader)
                    writer.write(request(b, "/api/next"))
                    after = await read_answer(reader)
                    own = msgspec.json.decode(after[2]) == {"tenant": b, "target": "/api/next", "body": ""}
                    answers[(name, idle_s_max)] = (status, headers["content-type"],
                                                   msgspec.json.decode(body).get("code"), own)
            finally:
                cell.scripts.clear()
                writer.close()
    assert answers == {(name, idle_s_max): (502, "application/problem+json", "cell_failed", True)
                       for name in scripts for idle_s_max in (300.0, 0.0)}


async def test_the_start_of_an_answer_a_cell_sends_behind_a_whole_one_is_not_read_into_the_next_requests_answer(
        platform, recording):
    # A cell out of step sends, in the same write as its answer, the start of another (a status line, header lines,
    # up to a header value left open). Kept by the parser, it would be read as the start of the answer to the next
    # request sent on that connection (here another tenant's, answered chunked: read by the parser too): its status,
    # the real answer's status line a header value.
    async with two_tenants(platform, recording) as (a, b, router, cell):
        cell.scripts[b"/api/first"] = [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                                       b"HTTP/1.1 500 Internal Server Error\r\nx-from: a\r\nx-pad: "]
        cell.scripts[b"/api/other"] = [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-for: b\r\n\r\n"
                                       b"2\r\n{}\r\n0\r\n\r\n"]
        answers = []
        try:
            for pipelined in (False, True):  # b's request sent once a's answer came, or behind a's at once
                reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
                writer.write(request(a, "/api/first"))
                if not pipelined:
                    answers.append(await read_answer(reader))
                writer.write(request(b, "/api/other"))
                if pipelined:
                    answers.append(await read_answer(reader))
                answers.append(await read_answer(reader))
                writer.close()
        finally:
            cell.scripts.clear()
    for first, other in (answers[0:2], answers[2:4]):
        assert first[0] == 200 and first[2] == b"ok"
        assert (other[0], other[1].get("x-for"), other[2]) == (200, "b", b"{}")
        assert "x-from" not in other[1] and "x-pad" not in other[1]


async def test_a_request_saying_connection_close_is_answered_then_its_connection_closes_and_nothing_behind_it_is_sent(
        platform, recording):
    # Whatever the answer (relayed on a kept-alive cell connection, bodiless, to HEAD, the router's own), it says it
    # closes and the connection closes after it; a request pipelined behind is neither answered nor sent to the cell.
    async with two_tenants(platform, recording) as (a, b, router, cell):
        cell.scripts[b"/api/empty"] = [b"HTTP/1.1 204 No Content\r\nx-s: 1\r\n\r\n"]
        answers = {}
        try:
            for name, (method, target, tenant) in {"relayed": ("GET", "/api/x", a), "204": ("GET", "/api/empty", a),
                                                   "HEAD": ("HEAD", "/api/x", a), "401": ("GET", "/api/x", "nobody"),
                                                   "404": ("GET", "/nowhere", a)}.items():
                reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
                writer.write(request(a, "/api/warm"))
                await read_answer(reader)
                writer.write(request(tenant, target, method=method, extra="connection: close\r\n")
                             + request(b, f"/api/behind-{name}"))
                status, headers, body = await read_answer(reader, head_request=method == "HEAD")
                answers[name] = (status, headers.get("connection"), await closed(reader))
                writer.close()
        finally:
            cell.scripts.clear()
        received = [r["target"] for r in cell.api()]
    assert answers == {"relayed": (200, "close", True), "204": (204, "close", True), "HEAD": (200, "close", True),
                       "401": (401, "close", True), "404": (404, "close", True)}
    assert not [target for target in received if target.startswith("/api/behind")]
