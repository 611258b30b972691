"""The bill of a request without a socket: a meter fed the upstream's bytes, then settle().

Expected fees are worked out here by hand from the providers' list prices (per million
tokens): claude-haiku-4-5 $1 input, $0.10 cache read, $5 output; gpt-4o-2024-08-06 $2.50
input, $1.25 cached, $10 output; gpt-4o-mini $0.15 input, $0.60 output; half of each at
the batch price.
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from upstream import fixture

from exporter.accounting.batch import BatchMeter
from exporter.accounting.body import ResponseBody
from exporter.accounting.pricing import Pricing
from exporter.accounting.reading import Meter
from exporter.accounting.settle import settle, settle_batch
from exporter.accounting.stream import StreamMeter
from exporter.record import ErrorType, RequestRecord, Usage

M = D(1_000_000)
PRICING = Pricing()
AT = 1_794_000_000.0  # 2026-11-06 (the table has batch prices from 2026-10-14)


def record(provider: str, operation: str) -> RequestRecord:
    return RequestRecord("r1", AT, provider, provider, "team", operation)


def read(meter: Meter, data: bytes, piece: int = 7) -> bytes:
    """Feed `data` as the upstream might send it, in small reads; return what the client got."""
    out = [meter.feed(data[i:i + piece])[0] for i in range(0, len(data), piece)]
    return b"".join(out) + meter.finish()


def test_an_anthropic_stream_is_billed_from_its_last_usage():
    meter = StreamMeter("messages")
    assert read(meter, fixture("anthropic_stream.sse")) == fixture("anthropic_stream.sse")
    rec = settle(record("anthropic", "messages"), True, {"model": "claude-haiku-4-5"},
                 meter.reading(), PRICING)
    assert (rec.model, rec.usage.input_text, rec.usage.input_cache_read,
            rec.usage.output_text) == ("claude-haiku-4-5-20251001", 472, 1200, 89)
    # 472 x $1 + 1,200 x $0.10 + 89 x $5, per million.
    assert rec.fee == (472 * 1 + 1200 * D("0.10") + 89 * 5) / M == D("0.001037")
    assert rec.error_type == ErrorType.NONE and rec.service_tier == "standard"


def test_a_stream_broken_by_an_error_event_is_a_failure_billed_for_what_it_used():
    meter = StreamMeter("messages")
    read(meter, fixture("anthropic_stream_overloaded.sse"))
    rec = record("anthropic", "messages")
    rec.code = 200
    settle(rec, True, {"model": "claude-haiku-4-5"}, meter.reading(), PRICING)
    assert (rec.error_type, rec.error_message) == (ErrorType.UPSTREAM_ERROR,
                                                  "overloaded_error: Overloaded")
    # message_start's input, and its 2 output tokens ("Hello" estimates no more).
    assert (rec.usage.output_text, rec.usage.estimated_output) == (2, 0)
    assert rec.fee == (472 * 1 + 1200 * D("0.10") + 2 * 5) / M


def test_a_json_answer_is_billed_with_its_cached_tokens_apart():
    body = ResponseBody("chat")
    assert read(body, fixture("openai_chat_cached.json")) == fixture("openai_chat_cached.json")
    rec = settle(record("openai", "chat"), True, {"model": "gpt-4o"}, body.reading(), PRICING)
    assert (rec.usage.input_text, rec.usage.input_cache_read, rec.usage.output_text) == (
        93, 1024, 46)  # 1,117 prompt tokens of which 1,024 cached
    assert rec.fee == (93 * D("2.50") + 1024 * D("1.25") + 46 * 10) / M == D("0.0019725")


def test_an_error_answer_keeps_its_message_and_costs_nothing():
    body = ResponseBody("chat")
    read(body, b'{"error": {"message": "Rate limit reached", "type": "requests"}}')
    rec = record("openai", "chat")
    rec.code, rec.error_type = 429, ErrorType.RATE_LIMITED
    settle(rec, False, {"model": "gpt-4o"}, body.reading(), PRICING)
    assert (rec.error_type, rec.error_message, rec.fee) == (
        ErrorType.RATE_LIMITED, "Rate limit reached", D(0))


def test_an_answer_without_usage_is_estimated_from_its_text():
    body = ResponseBody("chat")
    read(body, b'{"model": "gpt-4o-2024-08-06", "choices": [{"message": '
               b'{"role": "assistant", "content": "twelve chars"}}]}')
    rec = settle(record("openai", "chat"), True,
                 {"model": "gpt-4o", "messages": [{"role": "user", "content": "1234567"}]},
                 body.reading(), PRICING)
    # Four characters a token, rounded up: 7 characters in, 12 out.
    assert (rec.usage.estimated_input, rec.usage.estimated_output) == (2, 3)
    assert rec.fee == (2 * D("2.50") + 3 * 10) / M


def test_nothing_read_bills_nothing_and_audio_is_unpriced():
    rec = settle(record("openai", "other"), True, None, None, PRICING)
    assert (rec.usage, rec.fee, rec.unpriced) == (Usage(), D(0), False)
    speech = settle(record("openai", "speech"), True, {"model": "gpt-4o-mini-tts"}, None,
                    PRICING)
    assert (speech.fee, speech.unpriced) == (D(0), True)


def test_a_batchs_results_are_billed_per_model_at_the_batch_price():
    meter = BatchMeter()
    lines = (b'{"custom_id": "a", "response": {"status_code": 200, "body": {"object": '
             b'"chat.completion", "model": "gpt-4o-mini", "usage": {"prompt_tokens": 1000, '
             b'"completion_tokens": 500}}}}\n'
             b'{"custom_id": "b", "response": {"status_code": 200, "body": {"object": '
             b'"chat.completion", "model": "gpt-4o-2024-08-06", "usage": {"prompt_tokens": '
             b'2000, "completion_tokens": 100}}}}\n'
             b'{"custom_id": "c", "response": {"status_code": 429, "body": {}}}\n')
    assert read(meter, lines) == lines
    totals = meter.reading().totals
    records = settle_batch(record("openai", "batch"), totals, PRICING)
    assert [(r.request_id, r.model, r.share) for r in records] == [
        ("r1", "gpt-4o-2024-08-06", False), ("r1#2", "gpt-4o-mini", True)]
    # Half the list prices: $1.25 and $5; $0.075 and $0.30.
    assert records[0].fee == (2000 * D("1.25") + 100 * 5) / M == D("0.003")
    assert records[1].fee == (1000 * D("0.075") + 500 * D("0.30")) / M


@pytest.mark.parametrize("meter,rewrites", [(StreamMeter("chat", strip_usage=True), True),
                                             (ResponseBody("chat"), False),
                                             (BatchMeter(), False)])
def test_every_meter_says_whether_the_client_gets_other_bytes(meter, rewrites):
    assert meter.rewrites is rewrites  # then no Content-Length is passed on


def test_fields_of_unexpected_json_types_neither_raise_nor_hide_the_rest():
    """A value no API sends (a list where a string belongs) is not a known one: the
    lines and bodies around it are billed as usual."""
    meter = BatchMeter()
    lines = (b'{"custom_id": "x", "response": {"status_code": 200, "body": {"object": [1], '
             b'"model": "gpt-4o-mini", "usage": {"prompt_tokens": 9}}}}\n'
             b'{"custom_id": "a", "response": {"status_code": 200, "body": {"object": '
             b'"chat.completion", "model": "gpt-4o-mini", "usage": {"prompt_tokens": 1000, '
             b'"completion_tokens": 500}}}}\n')
    assert read(meter, lines) == lines
    assert list(meter.reading().totals) == [("gpt-4o-mini", "chat")]
    body = ResponseBody("responses")
    read(body, b'{"object": "response", "status": ["completed"], "model": "gpt-4o-mini", '
               b'"usage": {"input_tokens": 1000, "output_tokens": 500}}')
    rec = settle(record("openai", "responses"), True, None, body.reading(), PRICING)
    assert rec.fee == (1000 * D("0.15") + 500 * D("0.60")) / M


def test_gemini_usage_by_modality():
    from exporter.accounting.usage import gemini_usage
    u = gemini_usage({
        "promptTokenCount": 1000, "cachedContentTokenCount": 300, "toolUsePromptTokenCount": 7,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 500},
                                {"modality": "AUDIO", "tokenCount": 200},
                                {"modality": "VIDEO", "tokenCount": 300}],
        "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 300}],
        "candidatesTokenCount": 1300, "thoughtsTokenCount": 5,
        "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 10},
                                    {"modality": "IMAGE", "tokenCount": 1290}]})
    # Uncached: 200 text + 200 audio + 300 video (priced as images), and 7 of tools.
    assert (u.input_text, u.input_cache_read, u.input_audio, u.input_image) == (207, 300, 200, 300)
    assert (u.output_text, u.output_image, u.output_reasoning) == (10, 1290, 5)


def test_a_gemini_stream_whose_counts_go_down_or_never_come_ends_in_one_bill():
    down = (b'data: {"candidates":[{"content":{"parts":[{"text":"abcdefgh"}]}}],'
            b'"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":9}}\r\n\r\n'
            b'data: {"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":4}}\r\n\r\n')
    meter = StreamMeter("generate_content")
    assert read(meter, down) == down
    rec = settle(record("gemini", "generate_content"), True, None, meter.reading(), PRICING)
    assert (rec.usage.input_text, rec.usage.output_text) == (10, 4)  # its last word stands
    silent = b'data: {"candidates":[{"content":{"parts":[{"text":"abcdefgh"}]}}]}\r\n\r\n'
    meter = StreamMeter("generate_content")
    read(meter, silent)
    rec = settle(record("gemini", "generate_content"), True,
                 {"contents": [{"parts": [{"text": "1234"}]}]}, meter.reading(), PRICING)
    # No usage at all: estimated both ways from the text, four characters a token.
    assert (rec.usage.estimated_input, rec.usage.estimated_output) == (1, 2)


def test_a_thinking_gemini_stream_cut_before_its_last_chunk_estimates_its_text():
    # Thinking models count their thoughts in every chunk, the answer only in the last.
    chunk = (b'data: {"candidates":[{"content":{"parts":[{"text":"' + b"x" * 400 + b'"}]}}],'
             b'"usageMetadata":{"promptTokenCount":10,"thoughtsTokenCount":300}}\r\n\r\n')
    meter = StreamMeter("generate_content")
    read(meter, chunk * 2)
    rec = settle(record("gemini", "generate_content"), True, None, meter.reading(), PRICING)
    # 800 characters delivered, four a token: 200 estimated, beside the 300 thoughts.
    assert (rec.usage.input_text, rec.usage.output_reasoning, rec.usage.output_text,
            rec.usage.estimated_output) == (10, 300, 200, 200)


def test_gemini_array_stream_ending_in_an_error_is_a_failure_billed_for_its_text():
    body = ResponseBody("generate_content")
    read(body, b'[{"candidates":[{"content":{"parts":[{"text":"' + b"y" * 40 + b'"}]}}],'
               b'"usageMetadata":{"promptTokenCount":10}},\r\n'
               b'{"error":{"code":500,"message":"Internal error","status":"INTERNAL"}}]')
    rec = record("gemini", "generate_content")
    rec.code = 200
    settle(rec, True, None, body.reading(), PRICING)
    assert (rec.error_type, rec.error_message) == (ErrorType.UPSTREAM_ERROR,
                                                  "INTERNAL: Internal error")
    assert (rec.usage.input_text, rec.usage.output_text, rec.usage.estimated_output) == (
        10, 10, 10)
