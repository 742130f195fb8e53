"""The router's own HTTP/1.1 server, over raw sockets: keep-alive, pipelining, chunked bodies, 100-continue,
bounds, malformed input, time bounds, clients that vanish, and a graceful stop."""

from __future__ import annotations

import asyncio
import base64
import socket

import httpx
import msgspec

from router_rig import eventually, new_tenant_id, read_answer

READ_S = 5


def request(tenant: str, path: str = "/api/x", method: str = "GET", body: bytes = b"", extra: str = "",
            version: str = "1.1") -> bytes:
    auth = base64.b64encode(f"{tenant}:secret".encode()).decode()
    head = f"{method} {path} HTTP/{version}\r\nhost: router\r\nauthorization: Basic {auth}\r\n{extra}"
    if body:
        head += f"content-length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(1), READ_S) == b""


async def connect(router):
    return await asyncio.open_connection("127.0.0.1", router.port)


async def test_keep_alive_and_pipelined_requests_are_answered_in_order(platform):
    async with platform.routed() as (tenant, router):
        reader, writer = await connect(router)
        writer.write(request(tenant, "/api/one"))
        first = await read_answer(reader)
        # Three requests in one write: three answers, in the order asked.
        writer.write(b"".join(request(tenant, f"/api/p{i}?sleep=0.0{3 - i}") for i in range(3)))
        pipelined = [await read_answer(reader) for _ in range(3)]
        writer.close()
    assert first[0] == 200 and msgspec.json.decode(first[2])["path"] == "/api/one"
    assert [msgspec.json.decode(body)["path"] for _, _, body in pipelined] == ["/api/p0", "/api/p1", "/api/p2"]
    assert all(headers.get("connection") != "close" for _, headers, _ in pipelined)


async def test_chunked_body_and_expect_100_continue_reach_the_cell_whole(platform):
    async with platform.routed() as (tenant, router):
        reader, writer = await connect(router)
        writer.write(request(tenant, method="POST", extra="transfer-encoding: chunked\r\n")
                     + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        chunked = await read_answer(reader)
        writer.write(request(tenant, method="POST", extra="expect: 100-continue\r\ncontent-length: 4\r\n"))
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_S)
        writer.write(b"body")
        continued = await read_answer(reader)
        writer.close()
    assert chunked[0] == 201
    echoed = msgspec.json.decode(chunked[2])
    assert echoed["body"] == "hello world"
    # The cell got a plain, length-framed request: framing is per connection.
    assert "transfer-encoding" not in echoed["headers"] and echoed["headers"]["content-length"] == "11"
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert continued[0] == 201 and msgspec.json.decode(continued[2])["body"] == "body"


async def test_a_head_request_is_answered_without_a_body_on_a_connection_that_goes_on(platform):
    async with platform.routed() as (tenant, router):
        reader, writer = await connect(router)
        writer.write(request(tenant, "/api/one", method="HEAD"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_S)
        writer.write(request(tenant, "/api/two"))
        after = await read_answer(reader)
        writer.close()
    assert head.startswith(b"HTTP/1.1 200 ")
    # Nothing but the head came for the HEAD request: the next bytes are the next answer.
    assert after[0] == 200 and msgspec.json.decode(after[2])["path"] == "/api/two"


async def test_connection_close_and_http_1_0_close_after_the_answer(platform):
    async with platform.routed() as (tenant, router):
        reader, writer = await connect(router)
        writer.write(request(tenant, extra="connection: close\r\n"))
        asked_close = await read_answer(reader)
        asked_close_closed = await closed_by_peer(reader)
        reader, writer = await connect(router)
        writer.write(request(tenant, version="1.0"))
        old = await read_answer(reader)
        old_closed = await closed_by_peer(reader)
    assert asked_close[0] == 200 and asked_close[1]["connection"] == "close" and asked_close_closed
    assert old[0] == 200 and old_closed


async def test_oversized_head_and_malformed_requests_are_refused_then_closed(platform):
    answers = []
    async with platform.routed(head_bytes_max=2048) as (tenant, router):
        for raw in (request(tenant, extra=f"x-big: {'a' * 4096}\r\n"),
                    b"GARBAGE\x00\x01 nonsense\r\n\r\n",
                    request(tenant, path="http://elsewhere/api/x"),
                    b"CONNECT elsewhere:443 HTTP/1.1\r\nhost: elsewhere:443\r\n\r\n",
                    request(tenant, extra="host: elsewhere\r\n"),  # two Host headers (RFC 9112 3.2)
                    request(tenant).replace(b"host: router\r\n", b""),  # HTTP/1.1 without Host (the same)
                    request(tenant, version="2.0"),
                    request(tenant, version="0.9")):
            reader, writer = await connect(router)
            writer.write(raw)
            answers.append((*await read_answer(reader), await closed_by_peer(reader)))
        # The router still serves.
        async with httpx.AsyncClient(base_url=router.url, auth=(tenant, "secret")) as client:
            after = await client.get("/api/x")
    assert [status for status, *_ in answers] == [431, 400, 400, 400, 400, 400, 505, 505]
    for status, headers, body, closed in answers:
        assert headers["content-type"] == "application/problem+json"
        problem = msgspec.json.decode(body)
        assert problem["status"] == status and problem["code"] == {
            431: "headers_too_large", 400: "bad_request", 505: "http_version_not_supported"}[status]
        assert closed
    assert after.status_code == 200


async def test_a_header_line_that_never_ends_is_refused_once_past_the_bound(platform):
    # The parser keeps a header line until its end: the router counts what it holds as it comes, so a line of
    # gigabytes is refused at the bound, not read to its end. Here the line never ends.
    async with platform.routed(head_bytes_max=2048) as (tenant, router):
        reader, writer = await connect(router)
        writer.write(request(tenant).replace(b"\r\n\r\n", b"\r\nx-big: ") + b"a" * 3000)
        status, headers, body = await read_answer(reader)
        closed = await closed_by_peer(reader)
        # Beyond the first data: after a request that ends within it, counted from the next.
        reader, writer = await connect(router)
        writer.write(request(tenant) + request(tenant).replace(b"\r\n\r\n", b"\r\nx-big: ") + b"a" * 1000)
        first = await read_answer(reader)
        writer.write(b"a" * 3000)
        second = await read_answer(reader)
        closed_after = await closed_by_peer(reader)
        # A head that begins after a body in the same data is not charged for that body.
        reader, writer = await connect(router)
        get = request(tenant, "/api/after")
        writer.write(request(tenant, method="POST", body=b"b" * 3000) + get[:20])
        posted = await read_answer(reader)
        writer.write(get[20:])
        after = await read_answer(reader)
        writer.close()
    # A chunked body's trailer line, held whole by the parser as a header line is: bounded with the request's data.
    async with platform.routed(head_bytes_max=2048, body_bytes_max=1000) as (tenant, router):
        reader, writer = await connect(router)
        writer.write(request(tenant, method="POST", extra="transfer-encoding: chunked\r\n")
                     + b"2\r\nab\r\n0\r\nx-trailer: " + b"t" * 7000)  # past 2048 + 4 x 1000
        trailer = await read_answer(reader)
        trailer_closed = await closed_by_peer(reader)
    assert status == 431 and msgspec.json.decode(body)["code"] == "headers_too_large" and closed
    assert first[0] == 200 and second[0] == 431 and closed_after
    assert trailer[0] == 413 and msgspec.json.decode(trailer[2])["code"] == "body_too_large" and trailer_closed
    assert posted[0] == 201 and after[0] == 200 and msgspec.json.decode(after[2])["path"] == "/api/after"


async def test_http_1_0_without_host_is_served(platform):
    async with platform.routed() as (tenant, router):
        reader, writer = await connect(router)
        writer.write(request(tenant, version="1.0").replace(b"host: router\r\n", b""))
        old = await read_answer(reader)
        writer.close()
    assert old[0] == 200 and msgspec.json.decode(old[2])["path"] == "/api/x"


async def test_a_bad_request_behind_good_ones_is_refused_after_their_answers(platform):
    async with platform.routed() as (tenant, router):
        reader, writer = await connect(router)
        writer.write(request(tenant, "/api/first?sleep=0.1") + request(tenant, "/api/second") + b"BAD\x00\r\n\r\n")
        answers = [await read_answer(reader) for _ in range(3)]
        closed = await closed_by_peer(reader)
    assert [status for status, _, _ in answers] == [200, 200, 400]
    assert [msgspec.json.decode(body)["path"] for _, _, body in answers[:2]] == ["/api/first", "/api/second"]
    assert answers[2][1]["connection"] == "close" and closed


async def test_an_upgrade_offer_is_declined_with_a_plain_answer(platform):
    async with platform.routed() as (tenant, router):
        reader, writer = await connect(router)
        writer.write(request(tenant, extra="connection: upgrade\r\nupgrade: websocket\r\n"))
        status, headers, body = await read_answer(reader)
        closed = await closed_by_peer(reader)
    assert status == 200 and headers["connection"] == "close" and closed
    # The offer is the connection's business: the cell never sees it.
    assert "upgrade" not in msgspec.json.decode(body)["headers"]


async def test_idle_and_slow_clients_are_dropped_within_their_bounds(platform):
    async with platform.routed(keep_alive_s=0.3, request_read_s=0.5) as (tenant, router):
        reader, writer = await connect(router)
        writer.write(request(tenant))
        await read_answer(reader)
        idle_closed = await closed_by_peer(reader)  # after keep_alive_s of silence
        reader, writer = await connect(router)
        writer.write(request(tenant)[:20])  # half a request head, then nothing
        slow_closed = await closed_by_peer(reader)
    assert idle_closed and slow_closed


async def test_a_client_that_vanishes_mid_request_harms_nobody(platform):
    async with platform.routed() as (tenant, router):
        for _ in range(5):
            reader, writer = await connect(router)
            writer.write(request(tenant, "/api/x?sleep=0.2"))
            await asyncio.sleep(0.05)
            writer.transport.abort()
        async with httpx.AsyncClient(base_url=router.url, auth=(tenant, "secret")) as client:
            answers = await asyncio.gather(*(client.get(f"/api/after{i}") for i in range(10)))
    assert [a.status_code for a in answers] == [200] * 10


async def test_stop_lets_answers_in_flight_go_out_and_takes_no_new_connections(platform):
    tenant = new_tenant_id()
    await platform.add_tenant(tenant, "cell-a")
    router = await platform.router(redis_url="")
    port = router.port
    reader, writer = await connect(router)
    writer.write(request(tenant, "/api/slow?sleep=0.5"))

    async def at_the_cell() -> bool:  # the slow answer is in flight
        return tenant in platform.echo("cell-a").seen

    assert await eventually(at_the_cell, 30, 0.01), "the request did not reach the cell"
    stopping = asyncio.create_task(router.stop())

    async def stopped_accepting() -> bool:
        return router.server.stopping

    assert await eventually(stopped_accepting, 30, 0.01)
    try:
        await asyncio.open_connection("127.0.0.1", port)
        refused = False
    except OSError:
        refused = True
    status, _, body = await read_answer(reader)
    await stopping
    assert refused
    assert status == 200 and msgspec.json.decode(body)["path"] == "/api/slow"


async def test_a_body_far_over_the_bound_is_refused_before_it_is_read(platform):
    async with platform.routed(body_bytes_max=1000) as (tenant, router):
        reader, writer = await connect(router)
        # Says 10 MB, sends 10 bytes: answered from the head alone.
        writer.write(request(tenant, method="POST", extra="content-length: 10000000\r\n") + b"0123456789")
        declared = await read_answer(reader)
        declared_closed = await closed_by_peer(reader)
        reader, writer = await connect(router)
        writer.write(request(tenant, method="POST", extra="transfer-encoding: chunked\r\n")
                     + b"".join(b"3e8\r\n" + b"x" * 1000 + b"\r\n" for _ in range(5)))
        streamed = await read_answer(reader)
        streamed_closed = await closed_by_peer(reader)
    for status, headers, body in (declared, streamed):
        assert status == 413 and msgspec.json.decode(body)["code"] == "body_too_large"
    assert declared_closed and streamed_closed


async def test_trailer_fields_are_dropped_not_forwarded_nor_taken_for_credentials(platform):
    async with platform.routed() as (tenant, router):
        reader, writer = await connect(router)
        trailers = b"x-forwarded-for: 6.6.6.6\r\nx-after: body\r\n"
        writer.write(request(tenant, method="POST", extra="transfer-encoding: chunked\r\n")
                     + b"5\r\nhello\r\n0\r\n" + trailers + b"\r\n")
        relayed = await read_answer(reader)
        # Credentials only after the body (RFC 9110 6.5.1: a trailer field is not for authentication).
        token = base64.b64encode(f"{tenant}:secret".encode())
        writer.write(b"POST /api/x HTTP/1.1\r\nhost: router\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n"
                     b"authorization: Basic " + token + b"\r\n\r\n")
        unauthenticated = await read_answer(reader)
        writer.close()
    echoed = msgspec.json.decode(relayed[2])
    assert relayed[0] == 201 and echoed["body"] == "hello"
    assert "x-after" not in echoed["headers"] and echoed["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert unauthenticated[0] == 401


async def test_a_client_that_leaves_its_answers_unread_holds_a_bounded_buffer_and_is_let_go(platform):
    """Pipelined requests from a client that reads nothing: the router stops reading them once its answers are
    past the transport's high-water mark (what it holds stays bounded, the client's sends stall), and drops the
    connection a keep-alive bound or two later, though its answers were never read."""
    loop = asyncio.get_running_loop()
    async with platform.routed(keep_alive_s=2.0) as (_tenant, router):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and never read
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", router.port))
        chunk = b"GET /healthz HTTP/1.1\r\nhost: router\r\n\r\n" * 1600  # ~64 KiB, no credentials needed
        sent, buffered = 0, []
        try:
            while sent < 64 * 1024 * 1024:
                try:
                    await asyncio.wait_for(loop.sock_sendall(sock, chunk), 0.5)
                except TimeoutError:  # the router no longer reads: what it holds now is all it will
                    buffered = [conn.transport.get_write_buffer_size() for conn in router.server.connections]
                    break
                sent += len(chunk)

            async def let_go() -> bool:
                return not router.server.connections

            dropped = await eventually(let_go, 30)
        finally:
            sock.close()
    assert sent < 64 * 1024 * 1024 and buffered and max(buffered) <= 1024 * 1024, (sent, buffered)
    assert dropped


async def test_a_client_that_reads_its_answers_slowly_gets_every_one(platform):
    """The bound above is on a client that reads nothing: one that reads slowly, for far longer than the keep-alive
    bound, gets every answer (each read moves the bound on)."""
    loop = asyncio.get_running_loop()
    async with platform.routed(keep_alive_s=1.5) as (_tenant, router):
        reader, writer = await connect(router)
        asked = 20_000
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: router\r\n\r\n" * asked)
        answer = b'{"status":"ok"}'
        got, started = b"", loop.time()
        while got.count(answer) < asked:
            data = await asyncio.wait_for(reader.read(16 * 1024), READ_S)
            if not data:
                break
            got += data
            await asyncio.sleep(0.02)  # ~0.8 MB/s at most
        slow_s = loop.time() - started
        writer.close()
    assert got.count(answer) == asked and got.count(b"HTTP/1.1 200 OK\r\n") == asked
    assert slow_s > 1.5, slow_s  # it did read for longer than the keep-alive bound


async def test_a_transfer_coding_other_than_chunked_is_refused_not_handed_on_still_coded(platform):
    async with platform.routed() as (tenant, router):
        reader, writer = await connect(router)
        writer.write(request(tenant, method="POST", extra="transfer-encoding: gzip, chunked\r\n")
                     + b"5\r\nhello\r\n0\r\n\r\n")
        status, _, body = await read_answer(reader)
        closed = await closed_by_peer(reader)
    assert status == 501 and msgspec.json.decode(body)["code"] == "transfer_coding_not_supported" and closed
