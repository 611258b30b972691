"""What holds for any input (hypothesis): the usage parsers never raise, a stream's totals do
not depend on how it was split into reads, and no string breaks /metrics or the history."""

from __future__ import annotations

import itertools
import json
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import need_binary
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from upstream import fixture

from exporter.accounting.batch import BatchMeter
from exporter.accounting.body import (
    ResponseBody,
    request_text_chars,
    response_text_chars,
)
from exporter.accounting.operations import (
    CHAT,
    COMPLETION,
    EMBEDDINGS,
    GENERATE,
    IMAGES,
    MESSAGES,
    RESPONSES,
    SPEECH,
    TRANSCRIPTION,
)
from exporter.accounting.stream import StreamMeter
from exporter.accounting.usage import MAX_COUNT, usage_from, web_search_calls
from exporter.record import TOKEN_FIELDS, RequestRecord, Usage
from exporter.store.database import Database
from exporter.store.writer import History
from exporter.telemetry.background import HistoryMetrics
from exporter.telemetry.exposition import render, render_openmetrics
from exporter.telemetry.metrics import Metrics

OPERATIONS = (CHAT, COMPLETION, EMBEDDINGS, RESPONSES, MESSAGES, IMAGES, TRANSCRIPTION, SPEECH,
              GENERATE)
# Every example is new (no example database in the tree); bounded so the suite stays quick.
QUICK = settings(max_examples=150, deadline=None, database=None)

# Keys the parsers look for, so arbitrary JSON reaches their inner branches, not only the
# first isinstance check.
KEYS = ("usage", "prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details",
        "completion_tokens_details", "cached_tokens", "audio_tokens", "image_tokens",
        "reasoning_tokens", "prompt_cache_hit_tokens", "input_tokens", "output_tokens",
        "input_tokens_details", "input_token_details", "output_tokens_details", "text_tokens",
        "cache_read_input_tokens", "cache_creation_input_tokens", "cache_creation",
        "ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens", "server_tool_use",
        "web_search_requests", "seconds", "type", "model", "choices", "delta", "content",
        "message", "text", "tool_calls", "output", "response", "status", "status_code", "body",
        "result", "error", "service_tier", "object", "background", "id", "index",
        # Gemini's
        "usageMetadata", "promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount",
        "cachedContentTokenCount", "toolUsePromptTokenCount", "promptTokensDetails",
        "candidatesTokensDetails", "cacheTokensDetails", "modality", "tokenCount",
        "modelVersion", "candidates", "parts")
leaves = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
          | st.sampled_from(("message_start", "message_delta", "duration", "succeeded",
                             "chat.completion", "response.completed", "web_search_call")))
json_values = st.recursive(
    leaves, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=6),
    max_leaves=40)


def dumps(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def valid(usage: Usage | None) -> bool:
    return usage is None or all(
        type(getattr(usage, f)) is int and 0 <= getattr(usage, f) < MAX_COUNT
        for f in TOKEN_FIELDS)


@QUICK
@given(json_values)
def test_usage_parsers_never_raise_and_count_only_sane_integers(value):
    for operation in OPERATIONS:
        assert valid(usage_from(operation, value))
        assert valid(usage_from(operation, {"usage": value}.get("usage")))
        assert response_text_chars(operation, value) >= 0
    assert request_text_chars(value) >= 0
    assert web_search_calls(value) >= 0


def events(values: list, raw: list[bytes]) -> bytes:
    """An SSE transcript of JSON events, garbage among them."""
    return b"".join([b"data: " + dumps(v) + b"\n\n" for v in values] + raw)


sse_bodies = st.builds(events, st.lists(json_values, max_size=6),
                       st.lists(st.binary(max_size=40), max_size=3))
cuts = st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=8)


def split(data: bytes, at: list[int]) -> list[bytes]:
    points = sorted({min(a, len(data)) for a in at})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def meter_all(meter, pieces: list[bytes]) -> bytes:
    out = b"".join(meter.feed(p)[0] for p in pieces)
    return out + meter.finish()


@QUICK
@given(st.sampled_from(OPERATIONS), sse_bodies | st.binary(max_size=300), cuts)
def test_stream_meter_never_raises_and_passes_every_byte(operation, data, at):
    meter = StreamMeter(operation)
    assert meter_all(meter, split(data, at)) == data
    assert valid(usage_from(operation, meter.usage))
    StreamMeter(operation, strip_usage=True).feed(data)  # it may drop usage; never raise


@QUICK
@given(st.lists(json_values, max_size=6), st.binary(max_size=100), cuts)
def test_batch_meter_and_response_body_never_raise(lines, garbage, at):
    data = b"\n".join(map(dumps, lines)) + garbage
    meter = BatchMeter()
    assert meter_all(meter, split(data, at)) == data
    assert all(valid(u) for u in meter.totals.values())
    body = ResponseBody(limit=256)
    for piece in split(data, at):
        body.feed(piece)
    body.parse()


# Each recorded transcript, with the operation that reads it.
TRANSCRIPTS = [("openai_chat_stream.sse", CHAT), ("openai_chat_stream.no_usage.sse", CHAT),
               ("azure_chat_stream.sse", CHAT), ("openai_completions_stream.sse", COMPLETION),
               ("openai_responses_stream.sse", RESPONSES), ("anthropic_stream.sse", MESSAGES),
               ("anthropic_stream_overloaded.sse", MESSAGES), ("openai_speech.sse", SPEECH)]


def totals(meter: StreamMeter, operation: str):
    return (meter.model, usage_from(operation, meter.usage), meter.final, meter.output_chars,
            meter.error_type, meter.service_tier, meter.web_search_calls)


@QUICK
@given(st.sampled_from(TRANSCRIPTS), st.booleans(), st.booleans(), cuts)
def test_every_split_of_a_transcript_gives_the_same_totals(transcript, crlf, strip, at):
    name, operation = transcript
    data = fixture(name)
    if crlf:  # servers may end lines with CRLF; the totals must not change
        data = data.replace(b"\n", b"\r\n")
    whole = StreamMeter(operation, strip)
    expected = meter_all(whole, [data])
    pieces = StreamMeter(operation, strip)
    assert meter_all(pieces, split(data, at)) == expected
    assert totals(pieces, operation) == totals(whole, operation)
    assert whole.malformed == pieces.malformed == 0


# Any text: lone surrogates, bytes a header carried that are no UTF-8, control characters.
texts = st.text(st.characters(exclude_categories=[]), max_size=300) | st.binary(
    max_size=200).map(lambda b: b.decode("utf-8", "surrogateescape"))


_examples = itertools.count()


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # a database per example
@given(st.lists(st.tuples(texts, texts, texts, texts, texts), min_size=1, max_size=5))
def test_no_string_breaks_metrics_or_history(request, engine, fields):
    promtool = need_binary("promtool")
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(str(Path(tmp) / "h.db")) if engine == "sqlite" else Database(
            request.getfixturevalue("postgres_server").create_database(
                f"prop{next(_examples)}"))
        history = History(db, HistoryMetrics(CollectorRegistry()), linger=0)
        history.start()
        for i, (model, rid, upstream_id, tier, message) in enumerate(fields):
            rec = RequestRecord(rid, time.time(), "s", "openai", f"key-{i}", CHAT, model=model,
                                code=500, error_type="upstream_error", error_message=message,
                                upstream_request_id=upstream_id, service_tier=tier,
                                usage=Usage(input_text=3), duration=0.5, ttft=0.1,
                                stream=True)
            rec.make_safe()
            metrics.observe(rec)
            history.put(rec)
        history.close()
        with db.connect() as conn:
            assert conn.one("SELECT count(*) FROM requests")[0] == len(fields)
        assert history.metrics.write_errors._value.get() == 0
    out = subprocess.run([promtool, "check", "metrics"], input=render(registry),
                         capture_output=True, timeout=30)
    assert out.returncode == 0 and out.stderr == b"", out
    assert render_openmetrics(registry).endswith(b"# EOF\n")
