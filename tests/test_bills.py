"""Every bill right: realistic setups that billed wrongly, each through the gateway with an
official SDK where one exists. Expected tokens and fees are worked out here by hand from
the providers' published prices, written in each test; never read back from the code."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal as D

import anthropic
import openai
import pytest
from aiohttp import web
from conftest import until
from upstream import json_file, sse_file, status

from exporter.accounting.bill import price
from exporter.accounting.pricing import Pricing
from exporter.accounting.providers import pricing_mode
from exporter.accounting.table import Table
from exporter.config.load import parse_config
from exporter.record import RequestRecord, Usage

M, K = D(1_000_000), D(1000)
MESSAGES = [{"role": "user", "content": "What do tokens cost?"}]


def tokens(gw, **match) -> dict:
    return gw.by_category("llm_tokens_total", **match)


def service(gw, name: str, provider: str, **extra) -> dict:
    return {"name": name, "base_url": gw.upstream_url, "provider": provider, **extra}


# --- which price table --------------------------------------------------------------------

@pytest.mark.parametrize("label,model,table,model_id", [
    # A guessed label prices by the model's own name: Claude is Anthropic's, DeepSeek's
    # and Gemini's theirs, and names nobody claims fall back to OpenAI's table.
    ("openai-compatible", "claude-sonnet-4-20250514", "anthropic", "claude-sonnet-4-0"),
    ("openai-compatible", "deepseek-chat", "deepseek", "deepseek-chat"),
    ("openai-compatible", "gemini-2.5-flash", "google", "gemini-2.5-flash"),
    ("openai-compatible", "text-embedding-3-small", "openai", "text-embedding-3-small"),
    ("openai-compatible", "anthropic/claude-sonnet-4.5", "anthropic", "claude-sonnet-4-5"),
    # Aliases and exact ids.
    ("gemini", "gemini-2.5-flash", "google", "gemini-2.5-flash"),
    ("xai", "grok-4", "x-ai", "grok-4-0709"),
    ("azure", "gpt-4o-2024-11-20", "azure", "gpt-4o"),
    ("litellm", "anthropic/claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5"),
])
def test_the_price_table_is_the_models_own(label, model, table, model_id):
    pricing = Pricing()
    sheet = pricing.sheet("s", label, model)
    assert (sheet.provider, sheet.model) == (table, model_id)


@pytest.mark.parametrize("label,model", [
    ("vllm", "gpt-oss-120b"),  # self-hosted: never a cloud price for a cloud name
    ("ollama", "llama3.1"),
    ("self-hosted", "gpt-4o"),
    ("my-openai-proxy", "gpt-4o"),  # a label that merely contains "openai": nobody's
    ("opneai", "gpt-4o"),
])
def test_no_cloud_price_for_self_hosted_or_unknown_labels(label, model):
    assert Pricing().sheet("s", label, model) is None


def test_pricing_provider_overrides_the_label():
    ids = Table().ids
    assert pricing_mode("vllm", "openai", ids).table == "openai"
    assert pricing_mode("openai", "none", ids).table == "none"
    assert pricing_mode("my-router", "auto", ids).table == "auto"


@pytest.mark.parametrize("url,guess", [
    ("https://api.openai.com", "openai"),
    ("https://api.anthropic.com", "anthropic"),
    ("https://generativelanguage.googleapis.com/v1beta/openai", "google"),
    ("https://my-resource.openai.azure.com", "azure"),
    ("https://api.deepseek.com", "deepseek"),
    ("http://127.0.0.1:8000", "self-hosted"),
    ("http://gpu-box:8000", "self-hosted"),
    ("http://10.0.3.7:11434", "self-hosted"),
    ("http://vllm.ml.svc.cluster.local", "self-hosted"),
    ("https://llm.example.com", "openai-compatible"),
])
def test_serve_upstream_guesses_the_provider_from_the_url(url, guess):
    assert Table().guess(url) == guess


async def test_claude_behind_a_guessed_label_is_billed_at_anthropics_price(gateway, replay):
    # claude-sonnet-4-5, published: input $3, cache read $0.30, 5-minute cache write $3.75,
    # 1-hour cache write $6, output $15 per million tokens. Was $0, unpriced.
    replay.routes["/v1/messages"] = json_file("anthropic_message.json")
    gw = await gateway(services=[service(gateway, "proxy", "openai-compatible")])
    client = anthropic.AsyncAnthropic(base_url=gw.url, api_key="sk-ant-test", max_retries=0)
    await client.messages.create(model="claude-sonnet-4-6", max_tokens=400, messages=MESSAGES)
    rec = await gw.records.wait(1)
    assert rec.fee == (50 * D(3) + 10000 * D("0.30") + 2000 * D("3.75") + 500 * D(6)
                       + 320 * D(15)) / M  # 0.0000150 + 0.003 + 0.0075 + 0.003 + 0.0048
    assert rec.fee == D("0.01845")
    assert gw.total("llm_unpriced_requests_total") == 0


def test_claude_override_on_another_label_keeps_anthropics_cache_rules():
    # A Claude model priced by the config on an OpenRouter service: cache reads at 0.1 x
    # input, 1-hour writes at 2 x, 5-minute writes at 1.25 x (Anthropic's published rule),
    # not the generic rule (reads at the full input price, 10 times too high).
    config = parse_config({"services": [{"name": "router", "base_url": "http://x",
                                         "provider": "openrouter"}],
                           "pricing": [{"model": "anthropic/claude-*", "input": 3,
                                        "output": 15}]})
    sheet = Pricing(config.pricing).sheet("router", "openrouter", "anthropic/claude-sonnet-4.5")
    assert [sheet.per_million(c, 0) for c in ("cache_read", "cache_write_5m",
                                              "cache_write_1h")] == [D("0.3"), D("3.75"), D(6)]


# --- prices at the moment of the request ----------------------------------------------------

def bill(pricing, when: str, model: str, provider: str, usage: Usage) -> D:
    rec = RequestRecord("r", datetime.fromisoformat(when).timestamp(), "s", provider, "k",
                        "chat", model=model, usage=usage)
    price(rec, pricing)
    return rec.fee


def test_deepseek_off_peak_prices_follow_each_requests_time():
    # deepseek-chat, published: 00:30-16:30 UTC input $0.27 (cache miss), $0.07 (cache hit),
    # output $1.10; off-peak 16:30-00:30 UTC half of that: $0.135, $0.035, $0.55.
    pricing = Pricing()  # one instance: its cache must not freeze the first price
    usage = Usage(input_text=1_000_000, input_cache_read=1_000_000, output_text=1_000_000)
    day = bill(pricing, "2026-12-01T10:00:00+00:00", "deepseek-chat", "deepseek", usage)
    night = bill(pricing, "2026-12-01T20:00:00+00:00", "deepseek-chat", "deepseek", usage)
    again = bill(pricing, "2026-12-02T10:00:00+00:00", "deepseek-chat", "deepseek", usage)
    assert (day, night, again) == (D("0.27") + D("0.07") + D("1.10"),
                                   D("0.135") + D("0.035") + D("0.55"), day)


def test_a_dated_price_change_applies_from_its_date():
    # grok-4.20, published: $2 input, $6 output per million tokens until a cut on
    # 2026-04-30 to $1.25 and $2.50 (below 200K input tokens, where a long-context tier
    # doubles both). 100,000 tokens each way.
    pricing = Pricing()
    usage = Usage(input_text=100_000, output_text=100_000)
    before = bill(pricing, "2026-04-29T12:00:00+00:00", "grok-4.20", "x-ai", usage)
    after = bill(pricing, "2026-05-01T12:00:00+00:00", "grok-4.20", "x-ai", usage)
    assert (before, after) == (D("0.2") + D("0.6"), D("0.125") + D("0.25"))


# --- server tools -----------------------------------------------------------------------

async def test_anthropic_web_searches_are_billed_per_thousand(gateway, replay):
    # claude-sonnet-4-5, published: input $3, output $15 per million tokens; web search
    # $10 per thousand searches. 2,100 input, 400 output tokens, 3 searches.
    replay.routes["/v1/messages"] = json_file("anthropic_web_search.json")
    gw = await gateway()
    client = anthropic.AsyncAnthropic(base_url=gw.url + "/anthropic", api_key="sk-ant-test",
                                      max_retries=0)
    await client.messages.create(model="claude-sonnet-4-6", max_tokens=400, messages=MESSAGES)
    rec = await gw.records.wait(1)
    assert rec.fee == (2100 * D(3) + 400 * D(15)) / M + 3 * D(10) / K == D("0.0423")
    assert gw.total("llm_cost_usd_total", direction="tool", token_type="web_search") == \
        pytest.approx(0.03, rel=1e-12)
    assert gw.total("llm_tool_calls_total", tool="web_search") == 3


async def test_responses_web_search_calls_are_billed_per_thousand(gateway, replay):
    # gpt-5-mini, published: input $0.25, output $2 per million tokens (reasoning billed as
    # output); web search $10 per thousand calls. 5,000 in, 600 out (128 reasoning), 2 calls.
    replay.routes["/v1/responses"] = json_file("openai_responses_web_search.json")
    gw = await gateway()
    client = openai.AsyncOpenAI(base_url=gw.url + "/openai/v1", api_key="sk-test",
                                max_retries=0)
    await client.responses.create(model="gpt-5-mini", input="Find prices.",
                                  tools=[{"type": "web_search"}])
    rec = await gw.records.wait(1)
    assert rec.fee == (5000 * D("0.25") + 600 * D(2)) / M + 2 * D(10) / K == D("0.02245")
    assert gw.total("llm_tool_calls_total", tool="web_search") == 2
    assert rec.usage.web_search_calls == 2


# --- Azure, Gemini ------------------------------------------------------------------------

async def test_azure_stream_is_priced_from_the_chunk_that_names_the_model(gateway, replay):
    # Azure's first chunk names no model ("model": ""). gpt-4o, published: input $2.50,
    # cached input $1.25, output $10. Prompt 1,250 with 1,024 cached: text 226; output 85.
    path = "/openai/deployments/prod-4o/chat/completions"
    replay.routes[path] = sse_file("azure_chat_stream.sse", "azure_chat_stream.no_usage.sse")
    gw = await gateway(services=[service(gateway, "azure", "azure")])
    client = openai.AsyncAzureOpenAI(azure_endpoint=gw.url + "/azure", api_key="azure-key",
                                     api_version="2024-10-21", max_retries=0)
    chunks = [c async for c in await client.chat.completions.create(
        model="prod-4o", messages=MESSAGES, stream=True)]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        "Azure bills by the token."
    assert all(c.usage is None for c in chunks)  # the usage the gateway asked for is removed
    rec = await gw.records.wait(1)
    assert (rec.model, rec.operation) == ("gpt-4o-2024-11-20", "chat")
    assert tokens(gw) == {("input", "text"): 226, ("input", "cache_read"): 1024,
                          ("output", "text"): 85}
    assert rec.fee == (226 * D("2.50") + 1024 * D("1.25") + 85 * D(10)) / M == D("0.002695")


async def test_azure_api_versions_without_stream_options_are_not_sent_it(gateway, replay):
    # 2024-06-01 answers 400 to stream_options: it is not injected, and the output is
    # estimated from the text (25 characters: 7 tokens), the model named by the stream.
    path = "/openai/deployments/prod-4o/chat/completions"
    replay.routes[path] = sse_file("azure_chat_stream.sse", "azure_chat_stream.no_usage.sse")
    gw = await gateway(services=[service(gateway, "azure", "azure")])
    client = openai.AsyncAzureOpenAI(azure_endpoint=gw.url + "/azure", api_key="azure-key",
                                     api_version="2024-06-01", max_retries=0)
    [c async for c in await client.chat.completions.create(
        model="prod-4o", messages=MESSAGES, stream=True)]
    rec = await gw.records.wait(1)
    assert "stream_options" not in json.loads(replay.seen[-1].body)
    assert (rec.model, rec.usage.estimated_output, rec.usage.output_text) == (
        "gpt-4o-2024-11-20", 7, 7)


async def test_azure_deployment_names_the_model_when_nothing_else_does(gateway, replay):
    path = "/openai/deployments/prod-4o/chat/completions"
    replay.routes[path] = json_file("openai_chat_cached.json", status=429)
    gw = await gateway(services=[service(gateway, "azure", "azure")])
    client = openai.AsyncAzureOpenAI(azure_endpoint=gw.url + "/azure", api_key="azure-key",
                                     api_version="2024-10-21", max_retries=0)
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model="prod-4o", messages=MESSAGES)
    rec = await gw.records.wait(1)
    assert (rec.model, rec.operation, rec.error_type) == ("prod-4o", "chat", "rate_limited")


async def test_gemini_thinking_tokens_are_billed_as_output(gateway, replay):
    # Gemini's OpenAI-compatible endpoint: completion_tokens 20 leaves out 100 thinking
    # tokens that total_tokens 130 holds. gemini-2.5-flash, published: input $0.30, output
    # (thinking included) $2.50 per million tokens.
    replay.routes["/v1beta/openai/chat/completions"] = json_file("gemini_chat_thinking.json")
    gw = await gateway(services=[service(gateway, "gemini", "gemini")])
    client = openai.AsyncOpenAI(base_url=gw.url + "/gemini/v1beta/openai", api_key="g-key",
                                max_retries=0)
    await client.chat.completions.create(model="gemini-2.5-flash", messages=MESSAGES)
    rec = await gw.records.wait(1)
    assert tokens(gw) == {("input", "text"): 10, ("output", "text"): 20,
                          ("output", "reasoning"): 100}
    assert rec.fee == (10 * D("0.30") + 120 * D("2.50")) / M == D("0.000303")


# --- assumptions visible, newer price data ---------------------------------------------------

async def test_tokens_at_an_assumed_price_are_counted(gateway, replay):
    # gpt-4o-audio-preview has no audio prices in the table: its 22 input and 150 output
    # audio tokens are billed at the text price, and counted as assumed.
    replay.routes["/v1/chat/completions"] = json_file("openai_chat_audio.json")
    gw = await gateway()
    client = openai.AsyncOpenAI(base_url=gw.url + "/openai/v1", api_key="sk-test",
                                max_retries=0)
    await client.chat.completions.create(model="gpt-4o-audio-preview", messages=MESSAGES)
    await gw.records.wait(1)
    assert gw.by_category("llm_assumed_price_tokens_total") == {
        ("input", "audio"): 22, ("output", "audio"): 150}


def price_data(tmp_path, input_price: str, output_price: str) -> str:
    """A genai-prices data file of one provider and model, in the package's format."""
    path = tmp_path / "data.json"
    path.write_text(json.dumps([{
        "id": "openai", "name": "OpenAI", "api_pattern": r"https://api\.openai\.com",
        "models": [{"id": "gpt-4o", "match": {"starts_with": "gpt-4o"},
                    "prices": {"input_mtok": input_price, "output_mtok": output_price}}]}]))
    return str(path)


async def test_a_newer_price_data_file_replaces_the_bundled_table(gateway, replay, tmp_path):
    # The file says gpt-4o costs $2 in and $8 out (the bundled table: $2.50 and $10).
    # openai_chat_cached.json: 1,117 prompt tokens (1,024 cached: no cache price in the
    # file, so at the input price, assumed) and 46 output.
    replay.routes["/v1/chat/completions"] = json_file("openai_chat_cached.json")
    gw = await gateway(pricing_data=price_data(tmp_path, "2", "8"))
    client = openai.AsyncOpenAI(base_url=gw.url + "/openai/v1", api_key="sk-test",
                                max_retries=0)
    await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    rec = await gw.records.wait(1)
    assert rec.fee == (1117 * D(2) + 46 * D(8)) / M == D("0.002602")


def test_check_config_warns_of_an_unknown_provider_and_refuses_bad_price_data(tmp_path, capsys):
    from exporter.cli.main import main
    config = tmp_path / "c.yaml"
    config.write_text("services:\n  - name: main\n    base_url: https://api.openai.com\n"
                      "    provider: opneai\n")
    assert main(["check-config", str(config)]) == 0
    err = capsys.readouterr().err
    assert "services[0].provider: provider 'opneai' is neither in the price table" in err
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a list"}')
    config.write_text(f"pricing_data: {bad}\nservices:\n  - name: main\n"
                      "    base_url: https://api.openai.com\n")
    assert main(["check-config", str(config)]) == 1
    assert capsys.readouterr().err == \
        f"{config}: pricing_data: {bad}: not genai-prices data (a list of providers)\n"


# --- images, audio, speech; the Assistants API --------------------------------------------

def openai_client(gw):
    return openai.AsyncOpenAI(base_url=gw.url + "/openai/v1", api_key="sk-test", max_retries=0)


async def test_image_generation_is_billed_by_its_tokens(gateway, replay):
    # gpt-image-1, published: text input $5, image input $10, image output $40 per million
    # tokens. 50 text tokens in, 4,160 image tokens out.
    replay.routes["/v1/images/generations"] = json_file("openai_image_generation.json")
    gw = await gateway()
    await openai_client(gw).images.generate(model="gpt-image-1", prompt="A price tag")
    rec = await gw.records.wait(1)
    assert (rec.operation, rec.model) == ("images", "gpt-image-1")
    assert tokens(gw) == {("input", "text"): 50, ("output", "image"): 4160}
    assert rec.fee == (50 * D(5) + 4160 * D(40)) / M == D("0.16665")
    assert gw.total("llm_assumed_price_tokens_total") == 0  # $40 is the image price


async def test_image_edit_names_its_model_in_a_multipart_body(gateway, replay):
    # The same prices; 30 text and 323 image tokens in, 4,160 out.
    replay.routes["/v1/images/edits"] = json_file("openai_image_edit.json")
    gw = await gateway()
    await openai_client(gw).images.edit(model="gpt-image-1", prompt="Add a discount",
                                        image=("tag.png", b"\x89PNG\r\n\x1a\n" + b"0" * 64,
                                               "image/png"))
    rec = await gw.records.wait(1)
    assert (rec.operation, rec.model) == ("images", "gpt-image-1")
    assert rec.fee == (30 * D(5) + 323 * D(10) + 4160 * D(40)) / M == D("0.16978")


async def test_transcription_billed_by_tokens(gateway, replay):
    # gpt-4o-transcribe, published: text input $2.50, audio input $6, text output $10 per
    # million tokens. 10 text and 130 audio tokens in, 45 out.
    replay.routes["/v1/audio/transcriptions"] = json_file("openai_transcription_tokens.json")
    gw = await gateway()
    await openai_client(gw).audio.transcriptions.create(
        model="gpt-4o-transcribe", file=("memo.mp3", b"ID3" + b"0" * 64, "audio/mpeg"))
    rec = await gw.records.wait(1)
    assert (rec.operation, rec.model) == ("transcription", "gpt-4o-transcribe")
    assert tokens(gw) == {("input", "text"): 10, ("input", "audio"): 130,
                          ("output", "text"): 45}
    assert rec.fee == (10 * D("2.50") + 130 * D(6) + 45 * D(10)) / M == D("0.001255")


async def test_whisper_billed_by_the_second(gateway, replay):
    # whisper-1, published: $0.006 a minute ($0.36 an hour). 90 seconds: $0.009.
    replay.routes["/v1/audio/transcriptions"] = json_file("openai_transcription_duration.json")
    gw = await gateway()
    await openai_client(gw).audio.transcriptions.create(
        model="whisper-1", file=("memo.mp3", b"ID3" + b"0" * 64, "audio/mpeg"))
    rec = await gw.records.wait(1)
    assert rec.fee == 90 * D("0.36") / 3600 == D("0.009")
    assert gw.value("llm_billed_units_total", service="openai", provider="openai",
                    model="whisper-1", api_key=rec.api_key, unit="audio_seconds") == 90
    assert gw.by_category("llm_cost_usd_total") == {
        ("input", "audio_seconds"): pytest.approx(0.009, rel=1e-12)}


async def speech_route(request, body):
    """What /v1/audio/speech answers: audio, and no usage."""
    return web.Response(body=b"ID3" + b"\0" * 512, content_type="audio/mpeg")


async def test_tts_1_billed_by_the_character(gateway, replay):
    # tts-1, published: $15 per million characters. 28 characters: $0.00042.
    replay.routes["/v1/audio/speech"] = speech_route
    gw = await gateway()
    answer = await openai_client(gw).audio.speech.create(
        model="tts-1", voice="alloy", input="Hello world, this is a test.")
    assert answer.content.startswith(b"ID3")
    rec = await gw.records.wait(1)
    assert (rec.operation, rec.usage.input_characters) == ("speech", 28)
    assert rec.fee == 28 * D(15) / M == D("0.00042")


async def test_speech_streamed_as_events_billed_by_its_usage(gateway, replay):
    # gpt-4o-mini-tts, published: text input $0.60, audio output $12 per million tokens.
    # 14 in, 230 out, from the last event.
    replay.routes["/v1/audio/speech"] = sse_file("openai_speech.sse")
    gw = await gateway()
    client = openai_client(gw)
    async with client.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="alloy", input="Hello there.",
            stream_format="sse") as answer:
        await answer.read()
    rec = await gw.records.wait(1)
    assert tokens(gw) == {("input", "text"): 14, ("output", "audio"): 230}
    assert rec.fee == (14 * D("0.60") + 230 * D(12)) / M == D("0.0027684")


async def test_speech_without_usage_is_unpriced_not_guessed(gateway, replay):
    # gpt-4o-mini-tts answering audio bytes reports no usage: its audio output cannot be
    # known, so the request is counted unpriced rather than billed for its input alone.
    replay.routes["/v1/audio/speech"] = speech_route
    gw = await gateway()
    await openai_client(gw).audio.speech.create(model="gpt-4o-mini-tts", voice="alloy",
                                                input="Hello there.")
    rec = await gw.records.wait(1)
    assert (rec.unpriced, rec.fee, tokens(gw)) == (True, D(0), {})
    assert gw.total("llm_unpriced_requests_total") == 1


@pytest.mark.filterwarnings("ignore:The Assistants API is deprecated")
async def test_assistants_thread_messages_are_not_anthropic_messages(gateway, replay):
    replay.routes["/v1/threads/thread_abc/messages"] = json_file("anthropic_message.json")
    gw = await gateway()
    await openai_client(gw).beta.threads.messages.create(thread_id="thread_abc", role="user",
                                                         content="hi")
    rec = await gw.records.wait(1)
    assert (rec.operation, rec.fee, tokens(gw)) == ("other", D(0), {})


# --- batches and background responses: billed once, later, to the key that started them ---

def jsonl(lines: list[dict]):
    async def route(request, body):
        return web.Response(body="".join(json.dumps(x) + "\n" for x in lines).encode(),
                            content_type="application/octet-stream")
    return route


def openai_line(i, prompt, completion, code=200):
    body = {"id": f"chatcmpl-{i}", "object": "chat.completion",
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion}}
    return {"id": f"batch_req_{i}", "custom_id": f"request-{i}",
            "response": {"status_code": code, "request_id": f"req_{i}",
                         "body": body if code == 200 else {"error": {"message": "bad"}}},
            "error": None}


def batch_routes(replay):
    batch = {"id": "batch_abc", "object": "batch", "endpoint": "/v1/chat/completions",
             "input_file_id": "file-in", "completion_window": "24h", "created_at": 1764700000,
             "status": "validating", "output_file_id": None, "error_file_id": None}
    replay.routes["/v1/batches"] = status(200, batch)
    replay.routes["/v1/batches/batch_abc"] = status(200, {**batch, "status": "completed",
                                                          "output_file_id": "file-out"})
    replay.routes["/v1/files/file-out/content"] = jsonl([
        openai_line(1, 100, 20), openai_line(2, 200, 40), openai_line(3, 50, 0, code=400)])


def key_client(gw, key):
    return openai.AsyncOpenAI(base_url=gw.url + "/openai/v1", api_key=key, max_retries=0)


async def test_openai_batch_results_billed_once_at_the_batch_price(gateway, replay, db):
    # gpt-4o-mini through the Batch API, published: input $0.075, output $0.30 per million
    # tokens (half the $0.15 and $0.60 of a request). Two answered lines: 100 + 200 prompt,
    # 20 + 40 completion tokens; the failed line costs nothing.
    from prometheus_client import CollectorRegistry

    from exporter.store.writer import History
    from exporter.telemetry.background import HistoryMetrics
    batch_routes(replay)
    history = History(db, HistoryMetrics(CollectorRegistry()))
    gw = await gateway(history=history, api_keys=[
        {"name": "batch-team", "key_env": "BATCH_KEY"}, {"name": "ops", "key_env": "OPS_KEY"}],
        env={"BATCH_KEY": "sk-batch", "OPS_KEY": "sk-ops"})
    creator, reader = key_client(gw, "sk-batch"), key_client(gw, "sk-ops")
    await creator.batches.create(input_file_id="file-in", endpoint="/v1/chat/completions",
                                 completion_window="24h")
    await creator.batches.retrieve("batch_abc")
    content = await reader.files.content("file-out")  # another key downloads the results
    assert content.content.count(b"\n") == 3  # passed unchanged
    records = await gw.records.wait(3)
    expected = (300 * D("0.075") + 60 * D("0.30")) / M
    assert (records.operation, records.model, records.api_key, records.fee) == (
        "batch", "gpt-4o-mini-2024-07-18", "batch-team", expected)
    assert expected == D("0.0000405")
    assert tokens(gw) == {("input", "text"): 300, ("output", "text"): 60}
    await reader.files.content("file-out")  # downloaded again: no second bill
    await gw.records.wait(4)
    assert tokens(gw) == {("input", "text"): 300, ("output", "text"): 60}
    await gw.listener.cleanup()  # a restart: the ledger is in the history
    gw2 = await gateway(history=History(db, HistoryMetrics(CollectorRegistry())))
    await key_client(gw2, "sk-ops").files.content("file-out")
    await gw2.records.wait(1)
    assert tokens(gw2) == {}


async def test_a_batch_seen_through_two_replicas_is_billed_once_to_its_creator(gateway,
                                                                             replay, db):
    """Created through one replica, polled by another key through the other (which must
    not take the creator's place), its results downloaded there, then again through the
    first: one bill, the creator's, at the batch price."""
    from prometheus_client import CollectorRegistry

    from exporter.store.writer import History
    from exporter.telemetry.background import HistoryMetrics
    batch_routes(replay)
    keys = {"api_keys": [{"name": "batch-team", "key_env": "BATCH_KEY"},
                         {"name": "ops", "key_env": "OPS_KEY"}],
            "env": {"BATCH_KEY": "sk-batch", "OPS_KEY": "sk-ops"}}
    histories = [History(db, HistoryMetrics(CollectorRegistry()), linger=0) for _ in "ab"]
    a, b = [await gateway(history=h, **keys) for h in histories]
    await key_client(a, "sk-batch").batches.create(
        input_file_id="file-in", endpoint="/v1/chat/completions", completion_window="24h")
    await key_client(b, "sk-ops").batches.retrieve("batch_abc")  # b learns the output file
    await a.records.wait(1)
    await b.records.wait(1)
    await until(lambda: histories[0].queue.qsize() == 0 and histories[0].lag() == 0
                and histories[1].queue.qsize() == 0 and histories[1].lag() == 0)
    await key_client(b, "sk-ops").files.content("file-out")
    billed = await b.records.wait(2)
    assert (billed.operation, billed.api_key, billed.fee) == (
        "batch", "batch-team", (300 * D("0.075") + 60 * D("0.30")) / M)
    await key_client(a, "sk-batch").files.content("file-out")  # again, through the first
    again = await a.records.wait(2)
    assert (again.api_key, again.fee) == ("batch-team", 0)
    assert tokens(a) == {} and tokens(b) == {("input", "text"): 300, ("output", "text"): 60}


async def test_anthropic_batch_results_in_two_models(gateway, replay):
    # Through the Message Batches API, published: claude-haiku-4-5 $0.50 input, $2.50
    # output (half of $1 and $5); claude-sonnet-4-5 $1.50 and $7.50 (half of $3 and $15).
    gw = await gateway()
    results_url = gw.url + "/anthropic/v1/messages/batches/msgbatch_01/results"
    batch = {"id": "msgbatch_01", "type": "message_batch", "processing_status": "ended",
             "request_counts": {"processing": 0, "succeeded": 2, "errored": 1, "canceled": 0,
                                "expired": 0},
             "created_at": "2026-12-01T00:00:00Z", "expires_at": "2026-12-02T00:00:00Z",
             "ended_at": "2026-12-01T01:00:00Z", "archived_at": None,
             "cancel_initiated_at": None, "results_url": results_url}
    replay.routes["/v1/messages/batches"] = status(200, {**batch,
                                                         "processing_status": "in_progress"})
    replay.routes["/v1/messages/batches/msgbatch_01"] = status(200, batch)

    def line(custom_id, model, inp, out):
        return {"custom_id": custom_id, "result": {"type": "succeeded", "message": {
            "id": f"msg_{custom_id}", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": inp, "output_tokens": out}}}}
    replay.routes["/v1/messages/batches/msgbatch_01/results"] = jsonl([
        line("a", "claude-haiku-4-5-20251001", 1000, 200),
        line("b", "claude-sonnet-4-5-20250929", 2000, 100),
        {"custom_id": "c", "result": {"type": "errored", "error": {"type": "error", "error": {
            "type": "invalid_request_error", "message": "bad"}}}}])
    client = anthropic.AsyncAnthropic(base_url=gw.url + "/anthropic", api_key="sk-ant-batch",
                                      max_retries=0)
    await client.messages.batches.create(requests=[{
        "custom_id": "a", "params": {"model": "claude-haiku-4-5", "max_tokens": 9,
                                     "messages": MESSAGES}}])
    results = [r async for r in await client.messages.batches.results("msgbatch_01")]
    assert [r.result.type for r in results] == ["succeeded", "succeeded", "errored"]
    await gw.records.wait(4)  # create, retrieve, the results: a record per model
    by_model = {r.model: r.fee for r in gw.records if r.operation == "batch"}
    assert by_model == {"claude-haiku-4-5-20251001": (1000 * D("0.50") + 200 * D("2.50")) / M,
                        "claude-sonnet-4-5-20250929": (2000 * D("1.50") + 100 * D("7.50")) / M}
    assert sum(by_model.values()) == D("0.001") + D("0.00375")
    # One request downloaded them: it counts once, whatever its models.
    assert gw.total("llm_requests_total", operation="batch") == 1


async def test_background_response_billed_once_when_fetched_done(gateway, replay):
    # gpt-5-mini, published: input $0.25, output $2 per million tokens. Created queued (no
    # usage: nothing billed, nothing estimated), fetched in progress, then completed with
    # 1,000 input and 300 output tokens (100 reasoning), then fetched again.
    queued = {"id": "resp_bg1", "object": "response", "created_at": 1764700000,
              "status": "queued", "background": True, "model": "gpt-5-mini-2025-08-07",
              "output": [], "usage": None}
    done = {**queued, "status": "completed", "output": [
        {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "Done.", "annotations": []}]}],
        "usage": {"input_tokens": 1000, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": 300, "output_tokens_details": {"reasoning_tokens": 100},
                  "total_tokens": 1300}}
    replay.routes["/v1/responses"] = status(200, queued)
    gw = await gateway()
    client = openai_client(gw)
    await client.responses.create(model="gpt-5-mini", input="Think long.", background=True)
    replay.routes["/v1/responses/resp_bg1"] = status(200, {**queued, "status": "in_progress"})
    await client.responses.retrieve("resp_bg1")
    replay.routes["/v1/responses/resp_bg1"] = status(200, done)
    await client.responses.retrieve("resp_bg1")
    await client.responses.retrieve("resp_bg1")
    await gw.records.wait(4)
    records = list(gw.records)
    assert [(r.operation, r.fee) for r in records] == [
        ("responses", D(0)), ("responses", D(0)),
        ("responses", (1000 * D("0.25") + 300 * D(2)) / M), ("responses", D(0))]
    assert records[2].fee == D("0.00085")
    assert gw.total("llm_estimated_tokens_total") == 0
    assert tokens(gw) == {("input", "text"): 1000, ("output", "text"): 200,
                          ("output", "reasoning"): 100}
