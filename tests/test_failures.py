"""Every way a request can go wrong is answered clearly and counted with the right error_type."""

from __future__ import annotations

import asyncio
import json
import socket
from decimal import Decimal as D

import aiohttp
import pytest
from upstream import events, hang, json_file, sse_file, status

CHAT = "/v1/chat/completions"
# 9 prompt characters ("Say hello"): ceil(9 / 4) = 3 estimated input tokens.
BODY = {"model": "gpt-4o-mini", "stream": True,
        "messages": [{"role": "user", "content": "Say hello"}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_first_event_reaches_client_while_upstream_is_blocked(gateway, replay):
    gate = asyncio.Event()
    replay.routes[CHAT] = sse_file("openai_chat_stream.sse", "openai_chat_stream.no_usage.sse",
                                   gate=gate, after=2)
    gw = await gateway()
    first_two = b"".join(events("openai_chat_stream.no_usage.sse")[:2])
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url + CHAT, json=BODY) as r:
            got = b""
            async with asyncio.timeout(5):  # a buffering gateway never gets here
                while len(got) < len(first_two):
                    got += await r.content.readany()
            assert got == first_two
            assert not gate.is_set()
            gate.set()
            await r.read()
    record = await gw.records.wait(1)
    assert record.ttft is not None and record.error_type == "none"


async def test_client_disconnect_mid_stream_closes_upstream_and_counts_usage_seen(gateway, replay):
    gate = asyncio.Event()  # never set: the upstream would stream forever
    replay.routes[CHAT] = sse_file("openai_chat_stream.sse", "openai_chat_stream.no_usage.sse",
                                   gate=gate, after=2)
    gw = await gateway()
    async with aiohttp.ClientSession() as s:
        r = await s.post(gw.url + CHAT, json=BODY)
        await r.content.readuntil(b"Hello")
        r.close()  # the client walks away
    async with asyncio.timeout(5):
        await replay.cancelled.wait()  # the upstream request was closed at once
    record = await gw.records.wait(1)
    assert (record.code, record.error_type) == (499, "client_disconnect")
    labels = dict(service="openai", provider="openai", model="gpt-4o-mini-2024-07-18",
                  api_key="none")
    assert gw.value("llm_requests_total", **labels, operation="chat", code="499",
                    error_type="client_disconnect") == 1
    # No usage arrived: input from "Say hello" (9 chars -> 3), output from "Hello" (5 -> 2).
    assert gw.value("llm_tokens_total", **labels, direction="input", token_type="text") == 3
    assert gw.value("llm_tokens_total", **labels, direction="output", token_type="text") == 2
    assert gw.value("llm_estimated_tokens_total", **labels, direction="input") == 3
    assert gw.value("llm_estimated_tokens_total", **labels, direction="output") == 2
    # Estimates are priced too: gpt-4o-mini at $0.15 in and $0.60 out per 1M tokens.
    assert record.fee == (3 * D("0.15") + 2 * D("0.60")) / 1_000_000
    assert gw.value("llm_requests_in_flight", service="openai") == 0


async def test_upstream_reset_mid_stream_breaks_client_stream(gateway, replay):
    # Three events reach the client: role chunk, "Hello", " there" (5 + 6 = 11 chars -> 3).
    replay.routes[CHAT] = sse_file("openai_chat_stream.sse", "openai_chat_stream.no_usage.sse",
                                   reset_after=3)
    gw = await gateway()
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url + CHAT, json=BODY) as r:
            assert r.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()  # the client must see a broken stream, not a complete one
    record = await gw.records.wait(1)
    assert (record.code, record.error_type) == (200, "stream_interrupted")
    assert record.usage.output_text == 3 and record.usage.estimated_output == 3
    assert record.usage.input_text == 3 and record.usage.estimated_input == 3


async def test_anthropic_stream_cut_keeps_reported_input(gateway, replay):
    # message_start reported input 472, cache reads 1200 and a provisional output of 2; the
    # final output never came. Text seen: "Hello" + "! How can I help?" = 5 + 17 = 22 chars
    # -> 6 tokens, of which 6 - 2 = 4 are estimated beyond what was reported.
    replay.routes["/v1/messages"] = sse_file("anthropic_stream.sse", reset_after=5)
    gw = await gateway()
    body = {"model": "claude-haiku-4-5", "max_tokens": 10, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url + "/anthropic/v1/messages", json=body) as r:
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()
    record = await gw.records.wait(1)
    u = record.usage
    assert (u.input_text, u.input_cache_read, u.estimated_input) == (472, 1200, 0)
    assert (u.output_text, u.estimated_output) == (6, 4)
    assert gw.value("llm_estimated_tokens_total", service="anthropic", provider="anthropic",
                    model="claude-haiku-4-5-20251001", api_key="none", direction="output") == 4


async def test_in_stream_error_event_is_an_upstream_error(gateway, replay):
    replay.routes["/v1/messages"] = sse_file("anthropic_stream_overloaded.sse")
    gw = await gateway()
    body = {"model": "claude-haiku-4-5", "max_tokens": 10, "stream": True, "messages": []}
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url + "/anthropic/v1/messages", json=body) as r:
            assert await r.read() == b"".join(events("anthropic_stream_overloaded.sse"))
    record = await gw.records.wait(1)
    assert (record.code, record.error_type) == (200, "upstream_error")
    assert record.error_message == "overloaded_error: Overloaded"


async def test_upstream_refused_is_502_in_each_api_format(gateway):
    dead = f"http://127.0.0.1:{free_port()}"
    gw = await gateway(services=[{"name": "openai", "base_url": dead},
                                 {"name": "anthropic", "base_url": dead,
                                  "provider": "anthropic"}])
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url + "/openai" + CHAT, json=BODY) as r:
            assert r.status == 502
            body = await r.json()
            assert body["error"]["code"] == "connect_error"
            assert body["error"]["type"] == "server_error"
            assert r.headers["X-Request-ID"]
        async with s.post(gw.url + "/anthropic/v1/messages", json={"model": "m"}) as r:
            assert r.status == 502
            body = await r.json()
            assert body["type"] == "error" and body["error"]["type"] == "api_error"
    await gw.records.wait(2)
    assert gw.total("llm_requests_total", code="502", error_type="connect_error") == 2
    assert gw.total("llm_tokens_total") == 0


async def test_upstream_timeout_is_504(gateway, replay):
    replay.routes[CHAT] = hang()
    gw = await gateway(services=[{"name": "openai", "base_url": gateway.upstream_url,
                                  "read_timeout_seconds": 0.3}])
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url + CHAT, json=BODY) as r:
            assert r.status == 504
            assert (await r.json())["error"]["code"] == "timeout"
    await gw.records.wait(1)
    assert gw.total("llm_requests_total", code="504", error_type="timeout") == 1


async def test_invalid_json_is_forwarded_unchanged_and_upstream_answers(gateway, replay):
    replay.routes[CHAT] = status(400, {"error": {
        "message": "We could not parse the JSON body of your request.",
        "type": "invalid_request_error", "param": None, "code": None}})
    gw = await gateway()
    raw = b'{"model": "gpt-4o", "messages": [}'
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url + CHAT, data=raw,
                          headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400
            assert "could not parse" in (await r.json())["error"]["message"]
    assert replay.seen[-1].body == raw
    record = await gw.records.wait(1)
    assert (record.model, record.code, record.error_type) == ("unknown", 400, "bad_request")
    assert gw.total("llm_tokens_total") == 0  # a refused request costs nothing


@pytest.mark.parametrize("chunked", [False, True])
async def test_oversized_body_is_413_and_never_sent_up(gateway, replay, chunked):
    replay.routes[CHAT] = json_file("openai_chat_cached.json")
    gw = await gateway(limits={"max_request_body_bytes": 1000})
    payload = json.dumps({"model": "gpt-4o", "messages": [
        {"role": "user", "content": "x" * 2000}]}).encode()

    async def gen():
        yield payload

    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url + CHAT, data=gen() if chunked else payload,
                          headers={"Content-Type": "application/json"}) as r:
            assert r.status == 413
            assert (await r.json())["error"]["code"] == "too_large"
    assert replay.seen == []
    await gw.records.wait(1)
    assert gw.total("llm_requests_total", code="413", error_type="too_large") == 1


@pytest.mark.parametrize("code,error_type", [(401, "auth"), (429, "rate_limited"),
                                             (500, "upstream_error"), (529, "upstream_error")])
async def test_upstream_error_status_is_passed_through(gateway, replay, code, error_type):
    payload = {"type": "error", "error": {"type": "x", "message": "upstream said no"}}
    replay.routes["/v1/messages"] = status(code, payload)
    gw = await gateway()
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url + "/anthropic/v1/messages", json={"model": "m"}) as r:
            assert r.status == code and await r.json() == payload
    record = await gw.records.wait(1)
    assert (record.code, record.error_type) == (code, error_type)
