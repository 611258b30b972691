"""Gemini's own API through the gateway, with Google's own client (google-genai), on the
Gemini API and on Vertex AI: the client gets what the upstream sent, and the bill is worked
out here by hand from the fixture and Google's list prices (per million tokens):
gemini-2.5-flash $0.30 input, $0.03 cached input, $2.50 output and thinking;
gemini-2.5-pro $1.25 input and $10 output up to 200,000 prompt tokens, $2.50 and $15 above;
gemini-embedding-001 $0.15 input."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from decimal import Decimal as D

import aiohttp
import pytest
from aiohttp import web
from google import genai
from google.genai import errors, types
from prometheus_client import CollectorRegistry, generate_latest
from upstream import fixture, json_file

from exporter.store.database import Database
from exporter.store.writer import History
from exporter.telemetry.background import HistoryMetrics

KEY = "AIzaSy-test-0123456789-SECRET"
KEY_LABEL = "key-" + hashlib.sha256(KEY.encode()).hexdigest()[:8]
M = D(1_000_000)
FLASH = "/v1beta/models/gemini-2.5-flash"
VERTEX = "/v1beta1/projects/acme/locations/us-central1/publishers/google/models/gemini-2.5-flash"


def sse(name: str):
    """Gemini's stream with alt=sse: one chunk per write, as Google sends it."""
    async def route(request, body):
        assert request.query.get("alt") == "sse"
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for event in fixture(name).split(b"\r\n\r\n")[:-1]:
            await resp.write(event + b"\r\n\r\n")
        await resp.write_eof()
        return resp
    return route


def array(name: str):
    """Gemini's stream without alt=sse: one JSON array, written as its chunks come."""
    async def route(request, body):
        resp = web.StreamResponse(headers={"Content-Type": "application/json; charset=UTF-8"})
        await resp.prepare(request)
        data = fixture(name)
        for start in range(0, len(data), 300):
            await resp.write(data[start:start + 300])
        await resp.write_eof()
        return resp
    return route


def client(gw, **options) -> genai.Client:
    return genai.Client(api_key=KEY, http_options=types.HttpOptions(
        base_url=gw.url + "/gemini", api_version="v1beta", **options))


async def metrics_text(gw) -> str:
    return generate_latest(gw.registry).decode()


async def gemini(gateway):
    return await gateway(services=[{"name": "gemini", "base_url": gateway.upstream_url,
                                    "provider": "gemini"}])


async def test_generate_content_is_billed_with_its_cache_tools_and_thinking(gateway, replay):
    replay.routes[FLASH + ":generateContent"] = json_file("gemini_generate.json")
    gw = await gemini(gateway)
    answer = await client(gw).aio.models.generate_content(model="gemini-2.5-flash",
                                                          contents="What do tokens cost?")
    assert answer.text == "Tokens are priced per million."
    assert replay.seen[-1].headers["x-goog-api-key"] == KEY  # passed on as it came
    rec = await gw.records.wait(1)
    assert (rec.operation, rec.model, rec.api_key, rec.stream) == (
        "generate_content", "gemini-2.5-flash", KEY_LABEL, False)
    # 1,200 prompt tokens of which 1,000 cached, and 20 of tools; 50 out, 300 thinking.
    u = rec.usage
    assert (u.input_text, u.input_cache_read, u.output_text, u.output_reasoning) == (
        220, 1000, 50, 300)
    assert rec.fee == (220 * D("0.30") + 1000 * D("0.03") + 350 * D("2.50")) / M \
        == D("0.000971")
    assert gw.by_category("llm_tokens_total", service="gemini") == {
        ("input", "text"): 220, ("input", "cache_read"): 1000, ("output", "text"): 50,
        ("output", "reasoning"): 300}


async def test_a_stream_is_billed_from_its_last_chunk_never_a_sum(gateway, replay):
    replay.routes[FLASH + ":streamGenerateContent"] = sse("gemini_stream.sse")
    gw = await gemini(gateway)
    chunks = [c async for c in await client(gw).aio.models.generate_content_stream(
        model="gemini-2.5-flash", contents="What do tokens cost?")]
    assert "".join(c.text for c in chunks) == \
        "Tokens are priced per million, input and output apart."
    rec = await gw.records.wait(1)
    assert (rec.operation, rec.stream, rec.ttft is not None) == ("generate_content", True, True)
    # The last chunk's cumulative counts: 12 in, 17 out, 40 thinking (summed: 29 out).
    assert (rec.usage.input_text, rec.usage.output_text, rec.usage.output_reasoning,
            rec.usage.estimated_output) == (12, 17, 40, 0)
    assert rec.fee == (12 * D("0.30") + 57 * D("2.50")) / M == D("0.0001461")


async def test_the_stream_without_alt_sse_reaches_the_client_unchanged(gateway, replay):
    replay.routes[FLASH + ":streamGenerateContent"] = array("gemini_stream.json")
    gw = await gemini(gateway)
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url + "/gemini" + FLASH + ":streamGenerateContent",
                          json={"contents": [{"parts": [{"text": "Hi"}]}]},
                          headers={"x-goog-api-key": KEY}) as r:
            assert await r.read() == fixture("gemini_stream.json")
    rec = await gw.records.wait(1)
    assert (rec.stream, rec.usage.output_text, rec.usage.output_reasoning) == (True, 17, 40)
    assert rec.fee == (12 * D("0.30") + 57 * D("2.50")) / M


async def test_vertex_ai_paths_and_its_bearer_token(gateway, replay):
    from google.oauth2.credentials import Credentials
    replay.routes[VERTEX + ":generateContent"] = json_file("gemini_generate.json")
    gw = await gemini(gateway)
    vertex = genai.Client(vertexai=True, project="acme", location="us-central1",
                          credentials=Credentials(token="ya29.test-token"),
                          http_options=types.HttpOptions(base_url=gw.url + "/gemini",
                                                         api_version="v1beta1"))
    answer = await vertex.aio.models.generate_content(model="gemini-2.5-flash",
                                                      contents="What do tokens cost?")
    assert answer.text == "Tokens are priced per million."
    assert replay.seen[-1].headers["Authorization"] == "Bearer ya29.test-token"
    rec = await gw.records.wait(1)
    assert (rec.model, rec.api_key, rec.fee) == (
        "gemini-2.5-flash", "key-" + hashlib.sha256(b"ya29.test-token").hexdigest()[:8],
        D("0.000971"))


async def test_a_long_prompt_is_billed_at_the_long_context_price(gateway, replay):
    body = {"candidates": [{"content": {"parts": [{"text": "Done."}], "role": "model"}}],
            "usageMetadata": {"promptTokenCount": 250_000, "candidatesTokenCount": 100,
                              "totalTokenCount": 250_100},
            "modelVersion": "gemini-2.5-pro"}

    async def route(request, _):
        return web.json_response(body)

    replay.routes["/v1beta/models/gemini-2.5-pro:generateContent"] = route
    gw = await gemini(gateway)
    await client(gw).aio.models.generate_content(model="gemini-2.5-pro", contents="...")
    rec = await gw.records.wait(1)
    assert rec.fee == (250_000 * D("2.50") + 100 * 15) / M == D("0.6265")


async def test_embeddings_without_usage_are_estimated_and_count_tokens_is_free(gateway, replay):
    async def embedded(request, _):  # google-genai asks for one or several at once
        return web.json_response({"embeddings": [{"values": [0.1, 0.2]}]})

    async def counted(request, _):
        return web.json_response({"totalTokens": 5})

    replay.routes["/v1beta/models/gemini-embedding-001:batchEmbedContents"] = embedded
    replay.routes[FLASH + ":countTokens"] = counted
    gw = await gemini(gateway)
    c = client(gw)
    await c.aio.models.embed_content(model="gemini-embedding-001",
                                     contents="hello world, embed me")
    rec = await gw.records.wait(1)
    # No usage reported: 21 characters at four a token, rounded up, marked estimated.
    assert (rec.operation, rec.model, rec.usage.input_text, rec.usage.estimated_input) == (
        "embeddings", "gemini-embedding-001", 6, 6)
    assert rec.fee == 6 * D("0.15") / M
    await c.aio.models.count_tokens(model="gemini-2.5-flash", contents="hello")
    rec = await gw.records.wait(2)
    assert (rec.operation, rec.fee) == ("other", D(0))


async def test_a_key_in_the_query_is_named_never_kept(gateway, replay, tmp_path, caplog):
    replay.routes[FLASH + ":generateContent"] = json_file("gemini_generate.json")
    history = History(Database(str(tmp_path / "h.db")), HistoryMetrics(CollectorRegistry()))
    gw = await gateway(services=[{"name": "gemini", "base_url": gateway.upstream_url,
                                  "provider": "gemini"}], history=history)
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url + "/gemini" + FLASH + f":generateContent?key={KEY}",
                          json={"contents": [{"parts": [{"text": "Hi"}]}]}) as r:
            assert r.status == 200
    rec = await gw.records.wait(1)
    assert rec.api_key == KEY_LABEL
    await gw.listener.cleanup()  # the history written, the gateway stopped
    assert KEY not in json.dumps(dataclasses.asdict(rec), default=str)
    written = b"".join(f.read_bytes() for f in tmp_path.iterdir() if f.is_file())
    assert rec.request_id.encode() in written and KEY.encode() not in written
    assert KEY not in caplog.text and KEY not in await metrics_text(gw)


async def test_the_gateways_own_errors_speak_googles_format(gateway, replay):
    gw = await gateway(services=[{"name": "gemini", "base_url": "http://127.0.0.1:9",
                                  "provider": "gemini"}])
    with pytest.raises(errors.ServerError) as raised:
        await client(gw, retry_options=types.HttpRetryOptions(attempts=1)).aio.models.\
            generate_content(model="gemini-2.5-flash", contents="Hi")
    assert (raised.value.code, raised.value.status) == (502, "UNAVAILABLE")
    assert "cannot connect to the upstream" in raised.value.message
    rec = await gw.records.wait(1)
    assert (rec.error_type, rec.model) == ("connect_error", "gemini-2.5-flash")
