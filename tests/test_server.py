"""The proxy listener's HTTP/1.1 server on the wire, byte for byte."""

from __future__ import annotations

import asyncio

import pytest

from exporter.wire.request import BodyTooLarge, Request
from exporter.wire.server import Server


async def echo(request: Request) -> None:
    """Answer with the method, path and body; /stream answers in two chunks."""
    body = await request.read(1000)
    if request.path == "/stream":
        request.start(200, b"OK", b"X-Kind: stream\r\n", None)
        request.flush()
        assert request.write(b"first ") is None  # no backpressure on so little
        request.finish(b"last")
        return
    if request.path == "/fail":
        raise RuntimeError("handler bug")
    answer = b"%s %s %s" % (request.method.encode(), request.raw_path.encode(), body)
    request.start(200, b"OK", b"", len(answer))
    request.finish(answer)


@pytest.fixture
async def serve():
    servers = []

    async def start(handler=echo, keepalive=None, **limits):
        server = Server(handler, **limits)
        if keepalive:
            server.keepalive = keepalive
        port = await server.listen("127.0.0.1", 0)
        servers.append(server)
        return server, port

    yield start
    for server in servers:
        await server.shutdown(1)


async def exchange(port: int, data: bytes, *, until_close: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    async with asyncio.timeout(5):
        answer = await reader.read(-1) if until_close else await reader.read(65536)
    writer.close()
    return answer


async def test_keep_alive_and_pipelined_requests_answered_in_order(serve):
    _, port = await serve()
    answer = await exchange(port, b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none"
                                  b"GET /b?q=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                                  b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer == (b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nPOST /a one"
                      b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nGET /b?q=1 "
                      b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\n"
                      b"GET /c ")


async def test_chunked_request_body_and_chunked_answer(serve):
    _, port = await serve()
    answer = await exchange(port, b"POST /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert answer == (b"HTTP/1.1 200 OK\r\nX-Kind: stream\r\nTransfer-Encoding: chunked\r\n"
                      b"Connection: close\r\n\r\n6\r\nfirst \r\n4\r\nlast\r\n0\r\n\r\n")


async def test_http_1_0_client_gets_a_body_ending_at_close(serve):
    _, port = await serve()
    answer = await exchange(port, b"GET /stream HTTP/1.0\r\n\r\n")
    assert answer == (b"HTTP/1.1 200 OK\r\nX-Kind: stream\r\nConnection: close\r\n\r\n"
                      b"first last")


async def test_http_1_0_keep_alive_is_honoured(serve):
    _, port = await serve()
    answer = await exchange(port, b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                            until_close=False)
    assert answer == (b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: keep-alive\r\n\r\n"
                      b"GET /a ")


async def test_expect_100_continue(serve):
    _, port = await serve()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n"
                 b"Expect: 100-continue\r\n\r\n")
    async with asyncio.timeout(5):
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hi")
        assert (await reader.read(-1)).endswith(b"\r\n\r\nPOST /e hi")


async def test_head_gets_headers_only(serve):
    _, port = await serve()
    answer = await exchange(port, b"HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer == b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\n"


@pytest.mark.parametrize("data, status", [
    (b"NOT HTTP\r\n\r\n", b"400 Bad Request"),
    (b"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", b"400 Bad Request"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n",
     b"431 Request Header Fields Too Large"),
    (b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
     b"501 Not Implemented"),
])
async def test_unservable_requests_are_refused_and_closed(serve, data, status):
    _, port = await serve()
    answer = await exchange(port, data)
    assert answer.startswith(b"HTTP/1.1 " + status + b"\r\n")
    assert b"Connection: close\r\n" in answer


async def test_handler_error_is_500_and_closes(serve, caplog):
    _, port = await serve()
    answer = await exchange(port, b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert "unhandled error answering GET /fail" in caplog.text


async def test_body_over_the_limit_closes_after_the_answer(serve):
    async def small(request: Request):
        try:
            await request.read(4)
        except BodyTooLarge:
            request.respond(413, b"Payload Too Large", b"no")

    _, port = await serve(small)
    answer = await exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                  b"\r\n5\r\n12345\r\n")  # the body never ends: still answered
    assert answer.startswith(b"HTTP/1.1 413 Payload Too Large\r\n")
    assert b"Connection: close\r\n" in answer and answer.endswith(b"\r\n\r\nno")


async def test_client_going_away_cancels_the_handler(serve):
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow(request: Request):
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    _, port = await serve(slow)
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(5):
        await started.wait()
        writer.close()
        await cancelled.wait()


async def test_shutdown_finishes_running_requests_and_closes_idle_ones(serve):
    release = asyncio.Event()

    async def held(request: Request):
        await release.wait()
        request.start(200, b"OK", b"", 4)
        request.finish(b"done")

    server, port = await serve(held)
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(5):
        while not any(c.task for c in server.connections):
            await asyncio.sleep(0)
        stopping = asyncio.create_task(server.shutdown(5))
        assert await idle_reader.read(-1) == b""  # the idle connection is closed at once
        release.set()
        assert await reader.read(-1) == (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n"
                                         b"Connection: close\r\n\r\ndone")
        await stopping
    idle_writer.close()
    writer.close()


async def test_idle_connection_closed_after_keep_alive_time(serve):
    _, port = await serve(keepalive=0.05)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(5):
        assert await reader.read(-1) == b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nGET /a "
    writer.close()


async def test_write_asks_to_wait_while_the_client_reads_slower(serve):
    slow = asyncio.Event()
    writes = []

    async def big(request: Request):
        request.start(200, b"OK", b"", None)
        while True:  # until the socket and the transport's buffer are full
            drain = request.write(b"x" * 65536)
            writes.append(drain)
            if drain is not None:
                break
        slow.set()
        await drain
        request.finish()

    _, port = await serve(big)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    async with asyncio.timeout(10):
        await slow.wait()  # the client has read nothing yet
        answer = await reader.read(-1)
    body = answer.split(b"\r\n\r\n", 1)[1]
    assert body.count(b"10000\r\n") == len(writes) and body.endswith(b"\r\n0\r\n\r\n")
    writer.close()


async def test_shutdown_lets_a_slow_client_take_an_answer_already_written(serve):
    size = 16 << 20  # far more than the socket buffers: most of it waits in the transport

    async def big(request: Request):
        request.start(200, b"OK", b"", size)
        request.finish(b"x" * size)  # written at once: the handler is done

    server, port = await serve(big)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
        while any(c.task for c in server.connections):
            await asyncio.sleep(0)
        stopping = asyncio.create_task(server.shutdown(10))
        body = await reader.read(-1)  # read only now, while the server is stopping
        await stopping
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and len(body) == size
    writer.close()
