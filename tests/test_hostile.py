"""Faults found by attacking the gateway, each as a test: every request still ends in one
record, the sinks keep working, every wait has a limit, and no key is stored."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import time
from decimal import Decimal as D

import aiohttp
import pytest
from aiohttp import web
from conftest import need_binary, read_rows
from prometheus_client import CollectorRegistry
from upstream import Wire, fixture, json_file, status

from exporter.gateway import exchange as exchange_module
from exporter.record import RequestRecord, Usage
from exporter.store.writer import History
from exporter.telemetry.background import HistoryMetrics
from exporter.telemetry.exposition import render, render_openmetrics

CHAT = "/v1/chat/completions"
PROMPT = [{"role": "user", "content": "hi"}]
CHUNK = {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o-mini-2024-07-18"}


def rows(path) -> list[dict]:
    return read_rows(path)


def history_at(db) -> History:
    history = History(db, HistoryMetrics(CollectorRegistry()), linger=0)
    history.start()
    return history


def check_metrics(registry) -> None:
    """promtool accepts the scrape, as Prometheus would; OpenMetrics renders too."""
    text = render(registry)
    out = subprocess.run([need_binary("promtool"), "check", "metrics"], input=text,
                         capture_output=True, timeout=30)
    assert out.returncode == 0 and out.stderr == b"", out
    assert render_openmetrics(registry).endswith(b"# EOF\n")


def sse(*events: dict | str):
    """An upstream that streams these events, each in its own write."""
    async def route(request, body):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for e in events:
            await resp.write(b"data: %s\n\n" % (e if isinstance(e, str) else json.dumps(e))
                             .encode())
        await resp.write_eof()
        return resp
    return route


def usage_chunk(prompt: int, completion: int) -> dict:
    return {**CHUNK, "choices": [], "usage": {"prompt_tokens": prompt,
                                              "completion_tokens": completion}}


async def raw(port: int, data: bytes, *, rcvbuf: int | None = None):
    """A client on a bare socket: for bytes aiohttp will not send, and reads it will not
    hold back. A small receive buffer makes a client that reads slowly."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(data)
    return reader, writer


def post(path: str, body: bytes, *headers: bytes) -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n%s\r\n%s"
            % (path.encode(), len(body), b"".join(h + b"\r\n" for h in headers), body))


# --- 1. one request must not blind /metrics or the history ------------------------------

async def test_lone_surrogate_model_and_non_utf8_request_id_keep_every_sink_working(
        gateway, replay, db):
    replay.routes[CHAT] = status(400, {"error": {"message": "no such model"}})
    history = history_at(db)
    gw = await gateway(history=history)
    # Valid JSON naming a lone surrogate; a request id that is no UTF-8 at all.
    body = b'{"model": "bad\\ud800name", "messages": []}'
    reader, writer = await raw(gw.listener.port, post(CHAT, body, b"X-Request-ID: r\xff\xfe1"))
    async with asyncio.timeout(10):
        answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"\r\nX-Request-ID: r\xff\xfe1\r\n" in answer  # returned as it came
    async with aiohttp.ClientSession() as s:  # and the next requests are recorded as usual
        await (await s.post(gw.url + CHAT, json={"model": "ok", "messages": PROMPT},
                            headers={"X-Request-ID": "r2"})).read()
        # A NUL, which no PostgreSQL text can hold: the row is kept, the NUL replaced.
        await (await s.post(gw.url + CHAT, json={"model": "nul\u0000name",
                                                 "messages": PROMPT},
                            headers={"X-Request-ID": "r3"})).read()
    await gw.records.wait(3)
    check_metrics(gw.registry)
    await asyncio.to_thread(history.close)
    got = rows(db)
    assert [(r["request_id"], r["model"]) for r in got] == [
        ("r\ufffd\ufffd1", "bad\ufffdname"), ("r2", "ok"), ("r3", "nul\ufffdname")]
    assert history.metrics.write_errors._value.get() == 0
    assert gw.value("llm_record_errors_total", stage="metrics") == 0


async def test_history_keeps_the_rows_of_a_batch_around_one_it_cannot_write(db):
    history = History(db, HistoryMetrics(CollectorRegistry()), linger=0)
    for rid in ("a", "bad", "c"):  # queued before the writer starts: one batch
        rec = RequestRecord(rid, time.time(), "s", "openai", "k", "chat", code=200)
        if rid == "bad":
            rec.usage = Usage(input_text=1 << 70)  # no integer column holds it
        history.put(rec)
    history.start()
    await asyncio.to_thread(history.close)
    assert [r["request_id"] for r in rows(db)] == ["a", "c"]
    assert history.metrics.write_errors._value.get() == 1


# --- 2. requests that vanished: accounting that fails still ends in one record -----------

async def test_accounting_that_raises_still_ends_in_one_record(gateway, replay, monkeypatch,
                                                                caplog):
    def broken(*args):
        raise RuntimeError("a bug")
    monkeypatch.setattr(exchange_module, "account", broken)
    replay.routes[CHAT] = json_file("openai_chat_cached.json")
    gw = await gateway()
    async with aiohttp.ClientSession() as s:
        r = await s.post(gw.url + CHAT, json={"model": "gpt-4o", "messages": PROMPT},
                         headers={"X-Request-ID": "acct-1"})
        assert (r.status, await r.read()) == (200, fixture("openai_chat_cached.json"))
    rec = await gw.records.wait(1)
    assert (rec.code, rec.error_type, rec.fee) == (200, "accounting_error", D(0))
    assert gw.total("llm_requests_total", error_type="accounting_error", code="200") == 1
    assert gw.value("llm_record_errors_total", stage="accounting") == 1
    logged = [r for r in caplog.records if r.levelno == logging.ERROR
              and r.name == "exporter.gateway.finish"]  # not a client an earlier test left open
    assert "acct-1" in logged[0].getMessage() and logged[0].exc_info[0] is RuntimeError


async def test_a_failing_sink_spares_the_others_and_recovers(gateway, replay):
    class Audit:
        calls = 0

        def put(self, record):
            self.calls += 1
            if self.calls == 1:
                raise OSError("disk full")

    audit = Audit()
    replay.routes[CHAT] = json_file("openai_chat_cached.json")
    gw = await gateway()
    gw.listener.proxy.sinks.insert(0, audit.put)  # before metrics and the test's own
    async with aiohttp.ClientSession() as s:
        for _ in range(2):
            await (await s.post(gw.url + CHAT, json={"model": "gpt-4o"})).read()
    await gw.records.wait(2)
    assert audit.calls == 2
    assert gw.total("llm_requests_total") == 2
    assert gw.value("llm_record_errors_total", stage="audit") == 1


async def test_prompt_nested_deeper_than_the_stack_is_estimated(gateway, replay):
    # 600 lists deep: json parses it; counting its text by recursion ran out of stack.
    prompt = "[" * 600 + '"abcdefgh"' + "]" * 600  # 8 characters: 2 estimated tokens
    answer = {"model": "gpt-4o-mini", "choices": [{"message": {"content": "abcd"}}]}
    replay.routes[CHAT] = status(200, answer)  # no usage: both directions estimated
    gw = await gateway()
    body = b'{"model": "gpt-4o-mini", "messages": %s}' % prompt.encode()
    async with aiohttp.ClientSession() as s:
        r = await s.post(gw.url + CHAT, data=body)
        assert r.status == 200 and await r.json() == answer
    rec = await gw.records.wait(1)
    assert rec.error_type == "none"
    u = rec.usage
    assert (u.input_text, u.estimated_input, u.output_text, u.estimated_output) == (2, 2, 1, 1)


async def test_answer_nested_deeper_than_the_parser_passes_and_is_recorded(gateway, replay):
    deep = b'{"model": "gpt-4o-mini", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

    async def route(request, body):
        return web.Response(body=deep, content_type="application/json")
    replay.routes[CHAT] = route
    gw = await gateway()
    async with aiohttp.ClientSession() as s:
        r = await s.post(gw.url + CHAT, json={"model": "gpt-4o-mini", "messages": PROMPT})
        assert (r.status, await r.read()) == (200, deep)
    rec = await gw.records.wait(1)
    assert (rec.code, rec.error_type) == (200, "none")
    assert len(gw.records) == 1


async def test_body_that_is_not_the_gzip_it_claims_passes_unchanged(gateway, replay):
    garbage = b"\x1f\x8b\x08\x00 this is no gzip stream" * 10

    async def route(request, body):
        return web.Response(body=garbage, headers={"Content-Type": "application/json",
                                                   "Content-Encoding": "gzip"})
    replay.routes[CHAT] = route
    gw = await gateway()
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        r = await s.post(gw.url + CHAT, json={"model": "gpt-4o-mini", "messages": PROMPT})
        assert (r.status, await r.read()) == (200, garbage)
    rec = await gw.records.wait(1)
    assert (rec.code, rec.error_type, rec.usage.estimated_input) == (200, "none", 1)


# --- 3. an odd-typed field in a stream is passed on, not cut -----------------------------

async def test_odd_typed_stream_field_passes_and_usage_still_counts(gateway, replay):
    events = (
        {**CHUNK, "choices": [{"index": 0, "delta": {"tool_calls": 5}}]},
        {**CHUNK, "choices": [{"index": 0, "delta": {"content": "Hi"}}]},
        {**CHUNK, "choices": 7},
        usage_chunk(10, 2), "[DONE]")
    replay.routes[CHAT] = sse(*events)
    gw = await gateway()
    sent = b"".join(b"data: %s\n\n" % (e if isinstance(e, str) else json.dumps(e)).encode()
                    for e in events)
    async with aiohttp.ClientSession() as s:
        r = await s.post(gw.url + CHAT, json={"model": "gpt-4o-mini", "stream": True,
                                              "stream_options": {"include_usage": True}})
        assert (r.status, await r.read()) == (200, sent)
    rec = await gw.records.wait(1)
    assert (rec.error_type, rec.usage.input_text, rec.usage.output_text) == ("none", 10, 2)
    # gpt-4o-mini: $0.15 per million input, $0.60 per million output tokens.
    assert rec.fee == D(10) * D("0.15") / 10**6 + D(2) * D("0.60") / 10**6


# --- 4. every wait has a limit -------------------------------------------------------------

async def test_request_head_that_trickles_gets_408(gateway):
    gw = await gateway(limits={"head_timeout_seconds": 0.2})
    reader, writer = await raw(gw.listener.port, b"POST /v1/chat/completions HTTP/1.1\r\nHo")
    async with asyncio.timeout(10):
        answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")


async def test_request_body_that_stalls_gets_408_and_is_recorded(gateway, replay):
    gw = await gateway(limits={"body_timeout_seconds": 0.2})
    head = post(CHAT, b"x" * 100)[:-100]  # the head, then 10 bytes of a 100-byte body
    reader, writer = await raw(gw.listener.port, head + b'{"model": ')
    async with asyncio.timeout(10):
        answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "client_timeout"
    rec = await gw.records.wait(1)
    assert (rec.code, rec.error_type) == (408, "client_timeout")
    assert replay.seen == []  # never reached the upstream


async def test_connections_past_the_cap_get_503(gateway, replay):
    gw = await gateway(limits={"max_connections": 2})
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2)) as s:
        # Two kept-alive connections, each known to the server once it answered on it.
        await asyncio.gather(*(s.get(gw.url + "/v1/models") for _ in range(2)))
        reader, writer = await raw(gw.listener.port, b"")
        async with asyncio.timeout(10):
            answer = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert gw.value("llm_connections_refused_total") == 1


# --- 5. a slow client is the client's problem, not the upstream's --------------------------

def big_stream(events: int = 128):
    """8 MiB of events: more than the sockets between gateway and client can hold, so a
    client that does not read makes the gateway hold the upstream back."""
    content = {**CHUNK, "choices": [{"index": 0, "delta": {"content": "x" * 65000}}]}
    return sse(*[content] * events, usage_chunk(5, 128 * 16250), "[DONE]")


async def test_slow_reader_holding_the_stream_longer_than_read_timeout_still_completes(
        gateway, replay):
    replay.routes[CHAT] = big_stream()
    gw = await gateway(services=[{"name": "openai", "base_url": gateway.upstream_url,
                                  "read_timeout_seconds": 0.3}])
    body = json.dumps({"model": "gpt-4o-mini", "stream": True}).encode()
    reader, writer = await raw(gw.listener.port, post(CHAT, body), rcvbuf=4096)
    await asyncio.sleep(1.0)  # the client pauses for three upstream read timeouts
    async with asyncio.timeout(30):
        answer = await reader.read()
    writer.close()
    assert answer.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")
    rec = await gw.records.wait(1)
    assert (rec.error_type, rec.usage.output_text) == ("none", 128 * 16250)


async def test_client_that_reads_nothing_is_a_client_timeout_not_an_upstream_one(
        gateway, replay):
    replay.routes[CHAT] = big_stream()
    gw = await gateway(services=[{"name": "openai", "base_url": gateway.upstream_url,
                                  "read_timeout_seconds": 0.1}],
                       limits={"client_timeout_seconds": 0.3})
    body = json.dumps({"model": "gpt-4o-mini", "stream": True}).encode()
    reader, writer = await raw(gw.listener.port, post(CHAT, body), rcvbuf=4096)
    rec = await gw.records.wait(1)
    writer.close()
    assert (rec.code, rec.error_type) == (200, "client_timeout")
    assert gw.total("llm_requests_total", error_type="timeout") == 0


# --- 6. a large event is relayed whole -----------------------------------------------------

async def test_one_large_event_is_relayed_whole_and_counted(gateway, replay):
    image = {**CHUNK, "choices": [{"index": 0, "delta": {"content": "A" * (8 << 20)}}]}
    events = (image, usage_chunk(7, 3), "[DONE]")
    replay.routes[CHAT] = sse(*events)
    gw = await gateway()
    async with aiohttp.ClientSession() as s:
        r = await s.post(gw.url + CHAT, json={"model": "gpt-4o-mini", "stream": True,
                                              "stream_options": {"include_usage": True}})
        got = await r.read()
    assert got == b"".join(b"data: %s\n\n" % (e if isinstance(e, str) else json.dumps(e))
                           .encode() for e in events)
    rec = await gw.records.wait(1)
    assert (rec.error_type, rec.usage.input_text, rec.usage.output_text) == ("none", 7, 3)


# --- 7. a reset before anything was sent is a 502 the client gets ---------------------------

async def test_reset_before_the_first_body_byte_is_a_502_in_the_clients_format(gateway):
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
    async with Wire((head, "close"), (head, "close")) as wire:
        gw = await gateway(services=[
            {"name": "openai", "base_url": wire.url, "provider": "openai"},
            {"name": "anthropic", "base_url": wire.url, "provider": "anthropic"}])
        async with aiohttp.ClientSession() as s:
            r = await s.post(gw.url + CHAT, json={"model": "gpt-4o", "messages": PROMPT})
            assert r.status == 502
            assert (await r.json())["error"]["code"] == "upstream_error"
            r = await s.post(gw.url + "/anthropic/v1/messages", json={"model": "claude"})
            assert r.status == 502
            assert (await r.json())["type"] == "error"
    await gw.records.wait(2)
    assert [(r.code, r.error_type) for r in gw.records] == [(502, "upstream_error")] * 2


# --- 8. keys never stored; hop-by-hop headers never passed ---------------------------------

async def test_keys_echoed_by_an_upstream_are_masked_in_what_is_stored(gateway, replay, db):
    message = ("Incorrect API key provided: sk-proj-AbCdEf123456789. Sent as "
               "Authorization: Bearer tok_9876543210abcdef; also sk-ant-api03-XyZ_0123456789.")
    replay.routes[CHAT] = status(401, {"error": {"message": message}})
    history = history_at(db)
    gw = await gateway(history=history)
    async with aiohttp.ClientSession() as s:
        r = await s.post(gw.url + CHAT, json={"model": "gpt-4o"})
        assert (await r.json())["error"]["message"] == message  # the client's, unchanged
    rec = await gw.records.wait(1)
    await asyncio.to_thread(history.close)
    masked = ("Incorrect API key provided: sk-proj-***. Sent as Authorization: Bearer ***; "
              "also sk-ant-***.")
    assert rec.error_message == masked
    assert rows(db)[0]["error_message"] == masked


async def test_connection_nominated_response_headers_are_dropped(gateway):
    body = b'{"model": "gpt-4o"}'
    answer = (b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\n"
              b"X-Kept: 1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
              % (len(body), body))
    async with Wire(answer) as wire:
        gw = await gateway(services=[{"name": "openai", "base_url": wire.url}])
        async with aiohttp.ClientSession() as s:
            r = await s.post(gw.url + CHAT, json={"model": "gpt-4o"})
            assert await r.read() == body
            assert "X-Hop" not in r.headers and r.headers["X-Kept"] == "1"


async def test_a_claim_under_way_outlives_a_cancel_and_its_record_follows():
    """A shutdown that cancels a handler waiting on the ledger: the claim is seen through,
    its outcome (records or the error) is handed back, and the cancel is reported."""
    from exporter.gateway.finish import through_cancel
    decided = asyncio.Event()

    async def claim(fail: bool):
        await decided.wait()
        if fail:
            raise RuntimeError("the ledger failed")
        return ["record"]

    for fail in (False, True):
        decided.clear()
        handler = asyncio.create_task(through_cancel(claim(fail)))
        await asyncio.sleep(0)  # the handler waits on the claim
        handler.cancel()
        await asyncio.sleep(0)
        decided.set()
        done, cancelled = await handler
        assert cancelled is True
        if fail:
            with pytest.raises(RuntimeError):
                done.result()
        else:
            assert done.result() == ["record"]
