"""Fees, worked out by hand from published per-million prices written here."""

from __future__ import annotations

import json
import socket
from decimal import Decimal as D

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter
from upstream import fixture, json_file, sse_file, status

from exporter.accounting.pricing import Pricing
from exporter.config.load import parse_config
from exporter.record import Usage

M = D(1_000_000)
CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def fee_by_type(gw, **match):
    """USD by (direction, token_type) from llm_cost_usd_total."""
    return gw.by_category("llm_cost_usd_total", **match)


def approx(expected: dict):
    return {k: pytest.approx(float(v), rel=1e-12) for k, v in expected.items()}


async def post(gw, path, body, headers=None):
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url + path, json=body, headers=headers or {}) as r:
            await r.read()
            return r.status


async def test_openai_chat_with_cached_prompt_tokens(gateway, replay):
    # gpt-4o, published: input $2.50, cached input $1.25, output $10.00 per 1M tokens.
    replay.routes[CHAT] = json_file("openai_chat_cached.json")
    gw = await gateway()
    await post(gw, "/openai" + CHAT, BODY)
    rec = await gw.records.wait(1)
    expected = {("input", "text"): 93 * D("2.50") / M,          # 0.0002325
                ("input", "cache_read"): 1024 * D("1.25") / M,   # 0.00128
                ("output", "text"): 46 * D("10.00") / M}         # 0.00046
    assert fee_by_type(gw) == approx(expected)
    assert rec.fee == D("0.0019725")


async def test_reasoning_tokens_at_output_price(gateway, replay):
    # o4-mini, published: input $1.10, output $4.40; reasoning is billed as output.
    replay.routes[CHAT] = json_file("openai_chat_reasoning.json")
    gw = await gateway()
    await post(gw, CHAT, BODY)
    rec = await gw.records.wait(1)
    assert fee_by_type(gw) == approx({("input", "text"): 75 * D("1.10") / M,
                                      ("output", "text"): 162 * D("4.40") / M,
                                      ("output", "reasoning"): 1024 * D("4.40") / M})
    assert rec.fee == D("0.0053009")  # 0.0000825 + 0.0007128 + 0.0045056


async def test_anthropic_cache_reads_and_both_cache_writes(gateway, replay):
    # claude-sonnet-4-5, published: input $3, 5-minute cache write $3.75, 1-hour cache write
    # $6, cache read $0.30, output $15 (12,550 input tokens: under the 200K long-context tier).
    replay.routes["/v1/messages"] = json_file("anthropic_message.json")
    gw = await gateway()
    await post(gw, "/anthropic/v1/messages", {"model": "claude-sonnet-4-5", "max_tokens": 9})
    rec = await gw.records.wait(1)
    assert fee_by_type(gw) == approx({
        ("input", "text"): 50 * D(3) / M,                                      # 0.00015
        ("input", "cache_read"): 10000 * D("0.30") / M,                        # 0.003
        ("input", "cache_write"): (2000 * D("3.75") + 500 * D(6)) / M,         # 0.0105
        ("output", "text"): 320 * D(15) / M})                                  # 0.0048
    assert rec.fee == D("0.01845")


async def test_embeddings(gateway, replay):
    # text-embedding-3-small, published: $0.02 per 1M tokens.
    replay.routes["/v1/embeddings"] = json_file("openai_embeddings.json")
    gw = await gateway()
    await post(gw, "/v1/embeddings", {"model": "text-embedding-3-small", "input": "hi"})
    rec = await gw.records.wait(1)
    assert rec.fee == D("0.00000016")  # 8 x 0.02 / 1M
    assert fee_by_type(gw) == approx({("input", "text"): D("0.00000016")})


async def test_stream_priced_from_usage_in_last_chunk(gateway, replay):
    # gpt-4o-mini, published: input $0.15, cached input $0.075, output $0.60.
    replay.routes[CHAT] = sse_file("openai_chat_stream.sse", "openai_chat_stream.no_usage.sse")
    gw = await gateway()
    await post(gw, CHAT, {**BODY, "model": "gpt-4o-mini", "stream": True})
    rec = await gw.records.wait(1)
    assert rec.fee == D("0.0001938")  # 512 x 0.15 + 1536 x 0.075 + 3 x 0.60, per 1M
    assert fee_by_type(gw)[("input", "cache_read")] == pytest.approx(1536 * 0.075 / 1e6)


async def test_override_replaces_default_price(gateway, replay):
    replay.routes[CHAT] = json_file("openai_chat_cached.json")
    gw = await gateway(pricing=[{"model": "gpt-4o-2024-*", "input": 5, "output": 20,
                                 "cache_read": 2.5}])
    await post(gw, CHAT, BODY)
    rec = await gw.records.wait(1)
    assert rec.fee == D("0.003945")  # 93 x 5 + 1024 x 2.5 + 46 x 20, per 1M


async def test_unknown_model_costs_nothing_and_is_counted(gateway, replay):
    # A self-hosted provider is never priced from a cloud table, even for a known name.
    replay.routes["/v1/messages"] = json_file("anthropic_message.json")
    gw2 = await gateway(services=[{"name": "local", "base_url": gateway.upstream_url,
                                   "provider": "vllm"}])
    await post(gw2, "/v1/messages", {"model": "my-finetune"})
    rec = await gw2.records.wait(1)
    assert (rec.unpriced, rec.fee, rec.fees) == (True, D(0), [])
    assert gw2.value("llm_unpriced_requests_total", service="local", provider="vllm",
                     model="claude-sonnet-4-5-20250929") == 1
    assert gw2.total("llm_cost_usd_total") == 0


async def test_self_hosted_priced_at_zero_is_not_unpriced(gateway, replay):
    replay.routes[CHAT] = json_file("openai_chat_cached.json")
    gw = await gateway(services=[{"name": "local", "base_url": gateway.upstream_url,
                                  "provider": "vllm"}],
                       pricing=[{"model": "*", "service": "local", "input": 0, "output": 0}])
    await post(gw, CHAT, BODY)
    rec = await gw.records.wait(1)
    assert (rec.unpriced, rec.fee) == (False, D(0))
    assert gw.total("llm_unpriced_requests_total") == 0


def test_anthropic_rule_derives_missing_cache_prices():
    config = parse_config({"services": [{"name": "a", "base_url": "http://x",
                                         "provider": "anthropic"}],
                           "pricing": [{"model": "claude-custom", "input": 2, "output": 10}]})
    p = Pricing(config.pricing)
    sheet = p.sheet("a", "anthropic", "claude-custom")
    # 5-minute write 1.25 x 2, 1-hour write 2 x 2, read 0.1 x 2.
    assert [sheet.per_million(c, 0) for c in ("cache_write_5m", "cache_write_1h",
                                              "cache_read")] == [D("2.50"), D(4), D("0.2")]
    assert sheet.sources["cache_read"] == "0.1 x input text (Anthropic's published rule)"
    assert sheet.sources["input_audio"] == "assumed: the input text price (none of its own)"


def test_long_context_tier_applies_above_200k_input_tokens():
    # claude-sonnet-4-5 above 200K input tokens, published: input $6, output $22.50.
    sheet = Pricing().sheet("a", "anthropic", "claude-sonnet-4-5-20250929")
    long = Usage(input_text=150_000, input_cache_read=60_000, output_text=1000)
    short = Usage(input_text=150_000, output_text=1000)
    fees = dict(((d, t), usd) for d, t, usd in Pricing().fees(sheet, long))
    assert fees[("input", "text")] == 150_000 * D(6) / M
    assert fees[("input", "cache_read")] == 60_000 * D("0.60") / M
    assert fees[("output", "text")] == 1000 * D("22.50") / M
    assert sum(usd for *_, usd in Pricing().fees(sheet, short)) == \
        (150_000 * D(3) + 1000 * D(15)) / M


def test_openai_cache_writes_are_billed_at_their_own_price():
    """gpt-6-sol, published: input $2, cache read $0.20, cache write $2.50, output $10 per
    million. 10,000 prompt tokens with 4,000 read and 3,000 written, 500 out: 3,000 x $2 +
    4,000 x $0.20 + 3,000 x $2.50 + 500 x $10 = $0.0193 (the writes as input were
    $0.0178)."""
    from exporter.accounting.usage import usage_from
    usage = usage_from("chat", {"prompt_tokens": 10000, "completion_tokens": 500,
                                "prompt_tokens_details": {"cached_tokens": 4000,
                                                          "cache_write_tokens": 3000}})
    p = Pricing()
    fees = dict(((d, t), usd) for d, t, usd in p.fees(p.sheet("o", "openai", "gpt-6-sol"),
                                                      usage))
    assert fees[("input", "cache_write")] == 3000 * D("2.5") / M
    assert sum(fees.values()) == D("0.0193")


def test_service_tier_from_the_response_selects_its_price():
    # gpt-4o priority processing, published: input $4.25, output $17.
    priority = Pricing().sheet("o", "openai", "gpt-4o-2024-08-06", "priority")
    assert (priority.per_million("input_text", 0), priority.per_million("output_text", 0)) == \
        (D("4.25"), D(17))


def test_a_million_small_fees_stay_exact_to_the_cent():
    """Decimal in the computation, float only at the counter: a million requests of
    7 input and 3 output gpt-4o-mini tokens are exactly 1M x (7 x 0.15 + 3 x 0.60) / 1M
    = $2.85, and the float counter ends within a thousandth of a cent of it."""
    sheet = Pricing().sheet("o", "openai", "gpt-4o-mini")
    fee = sum(usd for *_, usd in Pricing().fees(sheet, Usage(input_text=7, output_text=3)))
    assert fee == D("0.00000285")
    counter = Counter("fee_usd", "test", registry=CollectorRegistry())
    exact = D(0)
    for _ in range(1_000_000):
        counter.inc(float(fee))
        exact += fee
    assert exact == D("2.85")
    assert abs(counter._value.get() - 2.85) < 0.00001


def test_prices_never_fetch_anything(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pricing tried to use the network")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    sheet = Pricing().sheet("o", "openai", "gpt-4.1-mini")
    assert sheet is not None and sheet.per_million("input_text", 0) > 0


def test_prices_command_explains_each_price(capsys):
    from exporter.cli.main import main
    assert main(["prices", "claude-haiku-4-5", "--provider", "anthropic"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("claude-haiku-4-5 (provider anthropic, service tier default): "
                        "priced as claude-haiku-4-5 by table provider anthropic "
                        "(provider 'anthropic')")
    rows = {line[:20].strip(): line[20:].split(None, 1) for line in lines[2:]}
    assert rows["cache write, 1 hour"] == ["2", "genai-prices 0.2.3: anthropic claude-haiku-4-5 "
                                                 "cache_write_1h_mtok"]
    assert rows["reasoning"] == ["5", "the output text price (reasoning is billed as output)"]
    assert rows["input audio"] == ["1", "assumed: the input text price (none of its own)"]
    assert main(["prices", "llama-3", "--provider", "vllm"]) == 1
    assert "llm_unpriced_requests_total" in capsys.readouterr().err


@pytest.mark.parametrize("response_tier,applied,prices", [
    # A response without service_tier: the request's flex applies.
    # gpt-5-mini flex, published: input $0.125, cached $0.0125, output $1.00.
    (None, "flex", (D("0.125"), D("0.0125"), D(1))),
    # The response says default although flex was asked: default is what was billed.
    # gpt-5-mini default, published: input $0.25, cached $0.025, output $2.00.
    ("default", "default", (D("0.25"), D("0.025"), D(2))),
])
async def test_service_tier_of_response_else_request(gateway, replay, response_tier, applied,
                                                     prices):
    body = json.loads(fixture("openai_responses.json"))
    body["service_tier"] = response_tier
    replay.routes["/v1/responses"] = status(200, body)
    gw = await gateway()
    await post(gw, "/v1/responses", {"model": "gpt-5-mini", "input": "hi",
                                     "service_tier": "flex"})
    rec = await gw.records.wait(1)
    text, cached, output = prices
    assert rec.service_tier == applied
    assert rec.fee == (151 * text + 1152 * cached + 410 * output) / M
