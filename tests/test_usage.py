"""The pure parsers, table-tested: usage objects and recorded SSE transcripts -> Usage."""

from __future__ import annotations

import json

import pytest
from upstream import fixture

from exporter.accounting.body import ResponseBody, request_text_chars
from exporter.accounting.operations import operation_for
from exporter.accounting.stream import StreamMeter
from exporter.accounting.usage import usage_from
from exporter.record import Usage


@pytest.mark.parametrize("path,operation", [
    ("/v1/chat/completions", "chat"),
    ("/openai/v1/chat/completions/", "chat"),
    ("/v1/completions", "completion"),
    ("/v1/responses", "responses"),
    ("/v1/embeddings", "embeddings"),
    ("/anthropic/v1/messages", "messages"),
    ("/v1/messages/count_tokens", "other"),
    ("/v1/models", "other"),
    ("/openai/deployments/gpt-4o/chat/completions", "chat"),
])
def test_operation_for(path, operation):
    assert operation_for(path) == operation


@pytest.mark.parametrize("operation,usage,expected", [
    # OpenAI: prompt 100 includes 30 cached + 20 audio + 10 image -> text 40;
    # completion 80 includes 50 reasoning + 5 audio -> text 25.
    ("chat", {"prompt_tokens": 100, "completion_tokens": 80,
              "prompt_tokens_details": {"cached_tokens": 30, "audio_tokens": 20,
                                        "image_tokens": 10},
              "completion_tokens_details": {"reasoning_tokens": 50, "audio_tokens": 5}},
     Usage(input_text=40, input_cache_read=30, input_audio=20, input_image=10,
           output_text=25, output_reasoning=50, output_audio=5)),
    # OpenAI's newer models bill cache writes apart: prompt 10,000 includes 4,000 cached
    # and 3,000 written -> text 3,000.
    ("chat", {"prompt_tokens": 10000, "completion_tokens": 500,
              "prompt_tokens_details": {"cached_tokens": 4000, "cache_write_tokens": 3000}},
     Usage(input_text=3000, input_cache_read=4000, input_cache_write_5m=3000,
           output_text=500)),
    ("responses", {"input_tokens": 10000, "output_tokens": 500, "input_tokens_details": {
        "cached_tokens": 4000, "cache_write_tokens": 3000}},
     Usage(input_text=3000, input_cache_read=4000, input_cache_write_5m=3000,
           output_text=500)),
    # Details null, as vLLM and older servers send.
    ("chat", {"prompt_tokens": 7, "completion_tokens": 3, "prompt_tokens_details": None,
              "completion_tokens_details": None}, Usage(input_text=7, output_text=3)),
    # DeepSeek: prompt 64 = 48 cache hits + 16 misses.
    ("chat", {"prompt_tokens": 64, "completion_tokens": 10, "prompt_cache_hit_tokens": 48,
              "prompt_cache_miss_tokens": 16},
     Usage(input_text=16, input_cache_read=48, output_text=10)),
    ("embeddings", {"prompt_tokens": 8, "total_tokens": 8}, Usage(input_text=8)),
    # Responses: input 1303 includes 1152 cached; output 410 includes 256 reasoning.
    ("responses", {"input_tokens": 1303, "input_tokens_details": {"cached_tokens": 1152},
                   "output_tokens": 410, "output_tokens_details": {"reasoning_tokens": 256}},
     Usage(input_text=151, input_cache_read=1152, output_text=154, output_reasoning=256)),
    # Anthropic: input excludes cache reads and writes; writes split by TTL.
    ("messages", {"input_tokens": 50, "cache_read_input_tokens": 10000,
                  "cache_creation_input_tokens": 2500,
                  "cache_creation": {"ephemeral_5m_input_tokens": 2000,
                                     "ephemeral_1h_input_tokens": 500},
                  "output_tokens": 320},
     Usage(input_text=50, input_cache_read=10000, input_cache_write_5m=2000,
           input_cache_write_1h=500, output_text=320)),
    # Anthropic without the TTL breakdown: all writes are 5-minute writes (the default TTL).
    ("messages", {"input_tokens": 3, "cache_creation_input_tokens": 1200, "output_tokens": 9},
     Usage(input_text=3, input_cache_write_5m=1200, output_text=9)),
    # Malformed counts are zero, never an exception.
    ("chat", {"prompt_tokens": "12", "completion_tokens": -4}, Usage()),
])
def test_usage_from(operation, usage, expected):
    assert usage_from(operation, usage) == expected


TRANSCRIPTS = [
    # name, operation, strip, model, usage final?, output chars
    ("openai_chat_stream.sse", "chat", False, "gpt-4o-mini-2024-07-18", True, 12),
    ("openai_chat_stream.no_usage.sse", "chat", False, "gpt-4o-mini-2024-07-18", False, 12),
    ("openai_completions_stream.sse", "completion", False,
     "gpt-3.5-turbo-instruct:20230824-v2", True, 2 + 4 + 3 + 2 + 5),
    ("openai_responses_stream.sse", "responses", False, "gpt-5-mini-2025-08-07", True,
     len("In a peaceful grove") + len(" beneath a silver moon.")),
    ("anthropic_stream.sse", "messages", False, "claude-haiku-4-5-20251001", True,
     len("Hello! How can I help?")),
]


@pytest.mark.parametrize("backlog", [StreamMeter.BACKLOG_LIMIT, 10])
@pytest.mark.parametrize("step", [1, 7, 1 << 20])
@pytest.mark.parametrize("name,operation,strip,model,final,chars", TRANSCRIPTS)
def test_stream_meter_any_chunking(name, operation, strip, model, final, chars, step, backlog,
                                   monkeypatch):
    """However the bytes are split, the client gets them all and the reading is the same.

    Text-only events after the first content are parsed when their text is asked for, or
    every `backlog` bytes: the count is the same either way.
    """
    monkeypatch.setattr(StreamMeter, "BACKLOG_LIMIT", backlog)
    data = fixture(name)
    meter = StreamMeter(operation, strip)
    out = b"".join(meter.feed(data[i:i + step])[0] for i in range(0, len(data), step))
    out += meter.finish()
    assert out == data
    assert (meter.model, meter.final, meter.output_chars) == (model, final, chars)


def test_stream_meter_strips_usage_the_client_did_not_ask_for():
    meter = StreamMeter("chat", strip_usage=True)
    out, content = meter.feed(fixture("openai_chat_stream.sse"))
    assert out == fixture("openai_chat_stream.no_usage.sse")
    assert content
    assert meter.usage["prompt_tokens"] == 2048


def test_stream_meter_content_flag_only_on_content():
    meter = StreamMeter("chat")
    role = (b'data: {"model":"m","choices":[{"index":0,"delta":{"role":"assistant",'
            b'"content":""}}]}\n\n')
    assert meter.feed(role) == (role, False)
    tool = (b'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":'
            b'{"name":"get","arguments":""}}]}}]}\n\n')
    assert meter.feed(tool) == (tool, True)


def test_stream_meter_unterminated_last_event_is_flushed_and_read():
    meter = StreamMeter("chat")
    last = b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1}}'
    assert meter.feed(last) == (b"", False)
    assert meter.finish() == last
    assert meter.usage == {"prompt_tokens": 5, "completion_tokens": 1}


def test_stream_meter_crlf_events():
    meter = StreamMeter("messages")
    data = fixture("anthropic_stream.sse").replace(b"\n", b"\r\n")
    assert meter.feed(data)[0] == data
    assert meter.usage["output_tokens"] == 89 and meter.final


def test_response_body_truncated_keeps_usage_and_model():
    """A 10 MB embeddings body is not kept whole, yet usage and model are still read."""
    body = json.dumps({"object": "list", "data": [{"embedding": [0.5] * 1000, "index": i}
                                                  for i in range(2000)],
                       "model": "text-embedding-3-large",
                       "usage": {"prompt_tokens": 4096, "total_tokens": 4096}}).encode()
    assert len(body) > 8 << 20
    collected = ResponseBody()
    for i in range(0, len(body), 65536):
        collected.feed(body[i:i + 65536])
    assert collected.parts is None  # not kept whole
    model, usage, whole = collected.parse()
    assert (model, usage, whole) == ("text-embedding-3-large",
                                     {"prompt_tokens": 4096, "total_tokens": 4096}, None)


def test_request_text_chars_counts_prompt_text_only():
    body = {"model": "gpt-4o", "temperature": 0.2, "messages": [
        {"role": "system", "content": "Be brief."},  # 9
        {"role": "user", "content": [{"type": "text", "text": "Hi there"},  # 8
                                     {"type": "image_url", "image_url": {"url": "data:..."}}]}]}
    assert request_text_chars(body) == 17


def test_json_orjson_refuses_still_parses_as_python_would():
    from exporter.accounting.body import loads
    body = b'{"n": 123456789012345678901234567890, "x": NaN, "s": "\\ud800"}'
    parsed = loads(body)
    assert parsed["n"] == 123456789012345678901234567890
    assert parsed["x"] != parsed["x"] and parsed["s"] == "\ud800"
    with pytest.raises(ValueError):
        loads(b'{"cut": ')


def oversized_stream(operation: str) -> tuple[bytes, int]:
    """A stream whose middle event is a 24 MB image, and that event's length."""
    image = "A" * (24 << 20)
    if operation == "responses":
        events = [{"type": "response.created", "response": {"model": "gpt-image-1"}},
                  {"type": "response.completed", "response": {
                      "model": "gpt-image-1", "output": [
                          {"type": "web_search_call", "status": "completed"},
                          {"type": "image_generation_call", "result": image}],
                      "usage": {"input_tokens": 20, "output_tokens": 4160}}}]
    else:
        events = [{"model": "gpt-4o", "choices": [{"index": 0, "delta": {"role": "assistant"}}]},
                  {"model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": image}}],
                   "usage": None},
                  {"model": "gpt-4o", "choices": [],
                   "usage": {"prompt_tokens": 9, "completion_tokens": 6000000}}]
    encoded = [b"data: " + json.dumps(e, separators=(",", ":")).encode() + b"\n\n"
               for e in events]
    return b"".join(encoded), len(encoded[1])


@pytest.mark.parametrize("operation", ["chat", "responses"])
@pytest.mark.parametrize("step", [65536, 1 << 20, 5_000_003])
def test_an_oversized_event_is_relayed_as_it_comes_in_bounded_memory(operation, step):
    """Held whole, a 24 MB event cost four times its size. Past a megabyte it goes on as
    it comes, its head and tail kept: the usage read all the same, its size standing for
    its text, and the memory the meter takes bounded whatever the event's size."""
    import tracemalloc
    data, big = oversized_stream(operation)
    pieces = [data[i:i + step] for i in range(0, len(data), step)]
    meter = StreamMeter(operation, strip_usage=operation == "chat")
    tracemalloc.start()
    try:
        out, peak = [], 0
        for piece in pieces:
            sent, _ = meter.feed(piece)
            out.append(sent)
            peak = max(peak, tracemalloc.get_traced_memory()[1] - sum(map(len, out)))
            tracemalloc.reset_peak()
        out.append(meter.finish())
    finally:
        tracemalloc.stop()
    expected = data
    if operation == "chat":  # usage the gateway asked for: taken out, its own event too
        expected = data[:data.rindex(b"data: ")].replace(b',"usage":null', b"")
    assert b"".join(out) == expected
    assert peak < 3 * (1 << 20) + 3 * step  # a megabyte held at most, and the reads
    if operation == "chat":
        assert (meter.model, meter.usage, meter.final) == (
            "gpt-4o", {"prompt_tokens": 9, "completion_tokens": 6000000}, True)
    else:
        assert (meter.model, meter.usage, meter.web_search_calls) == (
            "gpt-image-1", {"input_tokens": 20, "output_tokens": 4160}, 1)
    assert meter.output_chars >= big  # its size stands for its text
