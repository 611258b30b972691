"""The upstream client on the wire: framing, keep-alive, retries and failures, byte for byte."""

from __future__ import annotations

import asyncio
import ssl

import pytest
import trustme
from upstream import Wire

from exporter.wire.upstream import ConnectError, Origin, Pool, UpstreamError

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


async def fetch(pool: Pool, wire: Wire, method="POST", body=b'{"a":1}', length=None,
                read_timeout=5.0):
    conn = await pool.request(wire.origin, method, b"/base/v1/x", b"X-Test: 1\r\n", body,
                              length=length, connect_timeout=5, read_timeout=read_timeout)
    chunks = []
    await conn.pipe(lambda data, last: chunks.append(data), read_timeout)
    conn.release()
    return conn.status, conn.headers, b"".join(chunks)


async def test_request_bytes_and_connection_reuse():
    async with Wire(OK, OK, OK) as wire:
        pool = Pool()
        for _ in range(3):
            assert (await fetch(pool, wire))[::2] == (200, b"{}")
        pool.close()
    assert wire.connections == 1
    port = wire.origin.port
    assert wire.requests[0] == (b"POST /base/v1/x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                                b"X-Test: 1\r\nContent-Length: 7\r\n\r\n{\"a\":1}" % port)


async def test_chunked_response_is_dechunked_and_headers_kept_as_sent():
    answer = (b"HTTP/1.1 201 Created\r\nX-Odd-Case: V a l\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    async with Wire(answer, OK) as wire:
        pool = Pool()
        status, headers, body = await fetch(pool, wire)
        assert (status, body) == (201, b"hello world")
        assert (b"X-Odd-Case", b"V a l") in headers
        assert (await fetch(pool, wire))[2] == b"{}"  # the connection was kept
        pool.close()
    assert wire.connections == 1


async def test_body_ending_at_close_and_connection_not_kept():
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", "close")
    async with Wire(answer, OK) as wire:
        pool = Pool()
        assert (await fetch(pool, wire))[2] == b"until the end"
        assert (await fetch(pool, wire))[2] == b"{}"
        pool.close()
    assert wire.connections == 2


async def test_interim_100_continue_is_skipped():
    async with Wire(b"HTTP/1.1 100 Continue\r\n\r\n" + OK) as wire:
        pool = Pool()
        assert (await fetch(pool, wire))[::2] == (200, b"{}")
        pool.close()


async def test_head_response_has_no_body_and_closes():
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
    async with Wire(answer, OK) as wire:
        pool = Pool()
        assert (await fetch(pool, wire, method="HEAD", body=None))[::2] == (200, b"")
        assert wire.requests[0].startswith(b"HEAD /base/v1/x HTTP/1.1\r\n")
        assert b"Content-Length" not in wire.requests[0]
        assert (await fetch(pool, wire))[2] == b"{}"
        pool.close()
    assert wire.connections == 2


@pytest.mark.parametrize("method, idempotent, retried", [
    ("GET", False, True), ("POST", True, True), ("POST", False, False)])
async def test_kept_connection_closed_by_upstream(method, idempotent, retried):
    # The upstream answers, then drops the connection it let us keep: the next request
    # finds it closed before any answer. Sent again on a new connection only where RFC 9112
    # allows it: an idempotent method, or an Idempotency-Key; a POST may have been applied.
    async with Wire(OK, "close", OK) as wire:
        pool = Pool()
        assert (await fetch(pool, wire))[2] == b"{}"
        request = pool.request(wire.origin, method, b"/x", b"", b"{}", connect_timeout=5,
                               read_timeout=5, idempotent=idempotent)
        if retried:
            conn = await request
            await conn.pipe(lambda data, last: None, 5)
            assert conn.status == 200
            conn.release()
        else:
            with pytest.raises(UpstreamError, match="closed the connection"):
                await request
        pool.close()
    assert wire.connections == (2 if retried else 1)
    assert len(wire.requests) == (3 if retried else 2)
    if retried:
        assert wire.requests[1] == wire.requests[2]


async def test_streamed_request_body_is_chunked_without_length():
    async def parts():
        yield b"abc"
        yield b""
        yield b"defgh"

    async with Wire(OK) as wire:
        pool = Pool()
        assert (await fetch(pool, wire, body=parts()))[2] == b"{}"
        pool.close()
    assert wire.requests[0].endswith(b"Transfer-Encoding: chunked\r\n\r\n"
                                     b"3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n")


async def test_streamed_request_body_with_length_is_sent_as_is():
    async def parts():
        yield b"abc"
        yield b"de"

    async with Wire(OK) as wire:
        pool = Pool()
        assert (await fetch(pool, wire, body=parts(), length=5))[2] == b"{}"
        pool.close()
    assert wire.requests[0].endswith(b"Content-Length: 5\r\n\r\nabcde")


async def test_garbled_answer_and_cut_body_are_upstream_errors():
    async with Wire(b"NOT HTTP AT ALL\r\n\r\n") as wire:
        with pytest.raises(UpstreamError, match="invalid HTTP"):
            await fetch(Pool(), wire)
    cut = (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this", "close")
    async with Wire(cut) as wire:
        with pytest.raises(UpstreamError, match="closed the connection"):
            await fetch(Pool(), wire)


async def test_bytes_after_a_complete_answer_spoil_the_connection_not_the_answer():
    async with Wire((OK + b"GARBAGE", "close")) as wire:
        pool = Pool()
        conn = await pool.request(wire.origin, "GET", b"/", b"", None, connect_timeout=5,
                                  read_timeout=5)
        got = []
        await conn.pipe(lambda data, last: got.append((data, last)), 5)  # no error raised
        assert got == [(b"{}", True)]
        conn.release()
        assert not pool.idle  # closed, not kept for the next request


async def test_silence_is_a_timeout():
    never = asyncio.Event()

    async def silent(reader, writer):
        await never.wait()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    origin = Origin(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    with pytest.raises(TimeoutError):
        await Pool().request(origin, "GET", b"/", b"", None, connect_timeout=5,
                             read_timeout=0.05)
    server.close()


async def test_refused_connection_is_a_connect_error():
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(ConnectError):
        await Pool().request(Origin(f"http://127.0.0.1:{port}"), "GET", b"/", b"", None,
                             connect_timeout=5, read_timeout=5)


def test_origin_parsing():
    o = Origin("https://user:pw@api.example.com/openai/")
    assert (o.tls, o.host, o.port, o.host_header, o.path) == (
        True, "api.example.com", 443, b"api.example.com", "/openai")
    o = Origin("http://[::1]:8080")
    assert (o.tls, o.host, o.port, o.host_header, o.path) == (False, "::1", 8080, b"[::1]:8080",
                                                               "")
    # A default port written out is left out of Host, as clients send it and as a SigV4
    # signature (Bedrock's, made again by the gateway) covers it.
    o = Origin("https://bedrock-runtime.us-east-1.amazonaws.com:443")
    assert (o.port, o.host_header, o.url(b"/model/x/converse")) == (
        443, b"bedrock-runtime.us-east-1.amazonaws.com",
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/x/converse")


async def test_slow_client_pauses_reading_the_upstream():
    body = bytes(range(256)) * 8192  # 2 MiB
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
    async with Wire(answer) as wire:
        pool = Pool()
        conn = await pool.request(wire.origin, "GET", b"/", b"", None, connect_timeout=5,
                                  read_timeout=5)
        slow = asyncio.get_running_loop().create_future()
        got = []

        def sink(data, last):
            got.append(data)
            return slow if len(got) == 1 else None  # the client has not taken the first yet

        piping = asyncio.create_task(conn.pipe(sink, 5))
        async with asyncio.timeout(5):
            while not got:
                await asyncio.sleep(0)
            assert not conn.transport.is_reading()  # paused while the client is slow
            slow.set_result(None)
            await piping
        assert b"".join(got) == body  # read to the end: reading resumed
        conn.release()
        pool.close()


async def test_sink_failure_ends_the_exchange():
    async with Wire(OK) as wire:
        conn = await Pool().request(wire.origin, "GET", b"/", b"", None, connect_timeout=5,
                                    read_timeout=5)

        def sink(data, last):
            raise ConnectionResetError("the client closed the connection")

        with pytest.raises(ConnectionResetError):
            await conn.pipe(sink, 5)
        conn.release()


async def test_https_upstream_is_verified_by_name():
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_tls)
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)

    async def answer(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await writer.drain()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_tls)
    port = server.sockets[0].getsockname()[1]
    pool = Pool(tls=client_tls)
    conn = await pool.request(Origin(f"https://localhost:{port}"), "GET", b"/", b"", None,
                              connect_timeout=5, read_timeout=5)
    body = []
    await conn.pipe(lambda data, last: body.append((data, last)), 5)
    # Read with the end of the answer: told so with the bytes, to be sent in one write.
    assert (conn.status, body) == (200, [(b"{}", True)])
    conn.release()
    # A certificate for another name is refused: a connect error, never a silent answer.
    wrong = Origin(f"https://127.0.0.1:{port}")
    with pytest.raises(ConnectError, match="certificate"):
        await pool.request(wrong, "GET", b"/", b"", None, connect_timeout=5, read_timeout=5)
    pool.close()
    server.close()
