"""The official SDKs get through the gateway exactly what they get from the upstream directly,
and the token counters equal numbers worked out by hand from each fixture."""

from __future__ import annotations

import hashlib
from decimal import Decimal as D

import aiohttp
import anthropic
import openai
import pytest
from upstream import fixture, json_file, sse_file

KEY = "sk-test-0123456789abcdef-SECRET"
# The label is the spec's "key-" + first 8 hex digits of the key's SHA-256.
KEY_LABEL = "key-" + hashlib.sha256(KEY.encode()).hexdigest()[:8]
MESSAGES = [{"role": "user", "content": "Describe the picture."}]


async def chat(c):
    return await c.chat.completions.create(model="gpt-4o", messages=MESSAGES)


async def chat_stream(c):
    return [x async for x in await c.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True)]


async def chat_stream_with_usage(c):
    return [x async for x in await c.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True,
        stream_options={"include_usage": True})]


async def completion_stream(c):
    return [x async for x in await c.completions.create(
        model="gpt-3.5-turbo-instruct", prompt="Say this is a test", stream=True,
        stream_options={"include_usage": True})]


async def responses(c):
    return await c.responses.create(model="gpt-5-mini", input="Tell me a story.")


async def responses_stream(c):
    return [x async for x in await c.responses.create(model="gpt-5-mini",
                                                      input="Tell me a story.", stream=True)]


async def embeddings(c):
    return await c.embeddings.create(model="text-embedding-3-small", input=["a", "b"])


async def message(c):
    return await c.messages.create(model="claude-haiku-4-5", max_tokens=512, messages=MESSAGES)


async def message_stream(c):
    return [x async for x in await c.messages.create(
        model="claude-haiku-4-5", max_tokens=512, messages=MESSAGES, stream=True)]


CHAT, RESP, EMB, COMP, MSG = ("/v1/chat/completions", "/v1/responses", "/v1/embeddings",
                              "/v1/completions", "/v1/messages")
CASES = {
    # prompt 1117 includes 1024 cached: text 1117 - 1024 = 93.
    "chat cached": (CHAT, json_file("openai_chat_cached.json"), chat, "gpt-4o-2024-08-06",
                    "chat", False,
                    {("input", "text"): 93, ("input", "cache_read"): 1024, ("output", "text"): 46}),
    # completion 1186 includes 1024 reasoning: text 1186 - 1024 = 162.
    "chat reasoning": (CHAT, json_file("openai_chat_reasoning.json"), chat, "o4-mini-2025-04-16",
                       "chat", False,
                       {("input", "text"): 75, ("output", "text"): 162,
                        ("output", "reasoning"): 1024}),
    # prompt 36 includes 22 audio: text 14; completion 187 includes 150 audio: text 37.
    "chat audio": (CHAT, json_file("openai_chat_audio.json"), chat,
                   "gpt-4o-audio-preview-2025-06-03", "chat", False,
                   {("input", "text"): 14, ("input", "audio"): 22, ("output", "text"): 37,
                    ("output", "audio"): 150}),
    # The client did not ask for usage: the gateway asked; prompt 2048 - 1536 cached = 512.
    "chat stream": (CHAT, sse_file("openai_chat_stream.sse", "openai_chat_stream.no_usage.sse"),
                    chat_stream, "gpt-4o-mini-2024-07-18", "chat", True,
                    {("input", "text"): 512, ("input", "cache_read"): 1536,
                     ("output", "text"): 3}),
    "chat stream, client asked usage": (
        CHAT, sse_file("openai_chat_stream.sse", "openai_chat_stream.no_usage.sse"),
        chat_stream_with_usage, "gpt-4o-mini-2024-07-18", "chat", True,
        {("input", "text"): 512, ("input", "cache_read"): 1536, ("output", "text"): 3}),
    "completion stream": (COMP, sse_file("openai_completions_stream.sse"), completion_stream,
                          "gpt-3.5-turbo-instruct:20230824-v2", "completion", True,
                          {("input", "text"): 5, ("output", "text"): 7}),
    # input 1303 includes 1152 cached: 151; output 410 includes 256 reasoning: 154.
    "responses": (RESP, json_file("openai_responses.json"), responses, "gpt-5-mini-2025-08-07",
                  "responses", False,
                  {("input", "text"): 151, ("input", "cache_read"): 1152,
                   ("output", "text"): 154, ("output", "reasoning"): 256}),
    "responses stream": (RESP, sse_file("openai_responses_stream.sse"), responses_stream,
                         "gpt-5-mini-2025-08-07", "responses", True,
                         {("input", "text"): 151, ("input", "cache_read"): 1152,
                          ("output", "text"): 154, ("output", "reasoning"): 256}),
    "embeddings": (EMB, json_file("openai_embeddings.json"), embeddings,
                   "text-embedding-3-small", "embeddings", False, {("input", "text"): 8}),
    # Anthropic's input_tokens exclude cache reads and writes: nothing is subtracted;
    # writes are 2000 (5 min) + 500 (1 h) = 2500.
    "message": (MSG, json_file("anthropic_message.json"), message, "claude-sonnet-4-5-20250929",
                "messages", False,
                {("input", "text"): 50, ("input", "cache_read"): 10000,
                 ("input", "cache_write"): 2500, ("output", "text"): 320}),
    # message_start says output 2; message_delta's cumulative 89 replaces it (not 91).
    "message stream": (MSG, sse_file("anthropic_stream.sse"), message_stream,
                       "claude-haiku-4-5-20251001", "messages", True,
                       {("input", "text"): 472, ("input", "cache_read"): 1200,
                        ("output", "text"): 89}),
}


# Fees from published prices in USD per 1M tokens, by hand: sum of tokens x price / 1M.
FEES = {
    "chat cached": D("0.0019725"),       # gpt-4o: 93 x 2.50 + 1024 x 1.25 + 46 x 10
    "chat reasoning": D("0.0053009"),    # o4-mini: 75 x 1.10 + (162 + 1024) x 4.40
    # gpt-4o-audio-preview, with the audio prices of the override below:
    # 14 x 2.50 + 22 x 40 + 37 x 10 + 150 x 80
    "chat audio": D("0.013285"),
    "chat stream": D("0.0001938"),       # gpt-4o-mini: 512 x 0.15 + 1536 x 0.075 + 3 x 0.60
    "chat stream, client asked usage": D("0.0001938"),
    "completion stream": D("0.0000215"),  # gpt-3.5-turbo-instruct: 5 x 1.50 + 7 x 2.00
    # gpt-5-mini: 151 x 0.25 + 1152 x 0.025 + (154 + 256) x 2.00
    "responses": D("0.00088655"),
    "responses stream": D("0.00088655"),
    "embeddings": D("0.00000016"),       # text-embedding-3-small: 8 x 0.02
    # claude-sonnet-4-5: 50 x 3 + 10000 x 0.30 + 2000 x 3.75 + 500 x 6 + 320 x 15
    "message": D("0.01845"),
    "message stream": D("0.001037"),     # claude-haiku-4-5: 472 x 1 + 1200 x 0.10 + 89 x 5
}
# The pinned table has no audio prices for this model; OpenAI publishes $40 and $80.
AUDIO_PRICES = [{"model": "gpt-4o-audio-preview*", "input": 2.5, "output": 10,
                 "input_audio": 40, "output_audio": 80}]


def client_for(path: str, base: str, prefix: str):
    if path == MSG:
        return anthropic.AsyncAnthropic(base_url=base + prefix, api_key=KEY, max_retries=0)
    return openai.AsyncOpenAI(base_url=base + prefix + "/v1", api_key=KEY, max_retries=0)


def dump(result):
    if isinstance(result, list):
        return [x.model_dump() for x in result]
    return result.model_dump()


@pytest.mark.parametrize("case", list(CASES))
async def test_sdk_sees_upstream_and_tokens_are_exact(gateway, replay, case):
    path, route, call, model, operation, stream, expected = CASES[case]
    replay.routes[path] = route
    gw = await gateway(pricing=AUDIO_PRICES)
    service = "anthropic" if path == MSG else "openai"
    direct = await call(client_for(path, gateway.upstream_url, ""))
    through = await call(client_for(path, gw.url, "/" + service))
    assert dump(through) == dump(direct)

    record = await gw.records.wait(1)
    assert (record.code, record.error_type, record.model, record.stream) == (
        200, "none", model, stream)
    who = dict(service=service, provider=service, model=model, api_key=KEY_LABEL)
    for (direction, token_type), count in expected.items():
        assert gw.value("llm_tokens_total", **who, direction=direction,
                        token_type=token_type) == count, (direction, token_type)
    assert gw.total("llm_tokens_total") == sum(expected.values())  # no other category moved
    assert gw.total("llm_estimated_tokens_total") == 0
    assert record.fee == FEES[case]
    assert gw.total("llm_cost_usd_total", **who) == pytest.approx(float(FEES[case]), rel=1e-12)
    assert gw.value("llm_requests_total", **who, operation=operation, code="200",
                    error_type="none") == 1
    assert gw.value("llm_request_duration_seconds_count", service=service, provider=service,
                    model=model, operation=operation, stream=str(stream).lower()) == 1
    ttft_count = gw.value("llm_time_to_first_token_seconds_count", service=service,
                          provider=service, model=model)
    assert ttft_count == (1 if stream else 0)
    if stream:
        assert 0 < record.ttft <= record.duration
    assert gw.value("llm_gateway_overhead_seconds_count", service=service) == 1
    assert gw.value("llm_requests_in_flight", service=service) == 0


async def test_stream_without_include_usage_is_byte_identical(gateway, replay):
    """The gateway asks for usage upstream but the client gets exactly the stream it asked for."""
    replay.routes[CHAT] = sse_file("openai_chat_stream.sse", "openai_chat_stream.no_usage.sse")
    gw = await gateway()
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url + "/openai/v1/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {KEY}"}) as r:
            received = await r.read()
            assert r.headers["Content-Type"].startswith("text/event-stream")
            assert r.headers["X-Upstream-Test"] == "yes"
    assert received == fixture("openai_chat_stream.no_usage.sse")
    sent_up = replay.seen[-1].body
    assert b'"stream_options":{"include_usage":true}' in sent_up
    await gw.records.wait(1)
    assert gw.total("llm_tokens_total") == 512 + 1536 + 3


@pytest.mark.parametrize("raw,sent", [
    # Asked for usage by adding it to the client's own bytes: its spaces, escapes and key
    # order kept, the trailing newline too.
    (b'{"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": '
     b'"caf\\u00e9"}]}\n',
     b'{"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": '
     b'"caf\\u00e9"}],"stream_options":{"include_usage":true}}\n'),
    # stream_options there already (null, or other options): merged, the body written again.
    (b'{"model": "gpt-4o-mini", "stream": true, "stream_options": null}',
     b'{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true}}'),
    (b'{"model": "gpt-4o-mini", "stream": true, "stream_options": {"x": 1}}',
     b'{"model":"gpt-4o-mini","stream":true,"stream_options":{"x":1,"include_usage":true}}'),
])
async def test_usage_is_asked_for_in_the_clients_own_bytes(gateway, replay, raw, sent):
    replay.routes[CHAT] = sse_file("openai_chat_stream.sse", "openai_chat_stream.no_usage.sse")
    gw = await gateway()
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url + "/v1/chat/completions", data=raw,
                          headers={"Content-Type": "application/json"}) as r:
            assert await r.read() == fixture("openai_chat_stream.no_usage.sse")
    assert replay.seen[-1].body == sent
    assert (await gw.records.wait(1)).usage.output_text == 3  # the usage it asked for


async def test_client_asked_usage_body_forwarded_byte_for_byte(gateway, replay):
    replay.routes[CHAT] = sse_file("openai_chat_stream.sse", "openai_chat_stream.no_usage.sse")
    gw = await gateway()
    raw = (b'{"model": "gpt-4o-mini", "stream": true, "stream_options": {"include_usage": true},'
           b' "messages": [{"role": "user", "content": "caf\\u00e9"}]}')
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url + "/v1/chat/completions?trace=1", data=raw,
                          headers={"Content-Type": "application/json"}) as r:
            assert await r.read() == fixture("openai_chat_stream.sse")
    assert replay.seen[-1].body == raw
    assert replay.seen[-1].path_qs == "/v1/chat/completions?trace=1"
