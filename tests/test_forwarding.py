"""Requests and responses pass unchanged; keys are named, never revealed; labels stay bounded."""

from __future__ import annotations

import gzip
import hashlib
import logging
import subprocess

import aiohttp
from conftest import need_binary
from upstream import fixture, json_file, sse_file, status

from exporter.telemetry.exposition import render

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


async def test_headers_forwarded_minus_hop_by_hop(gateway, replay):
    replay.routes[CHAT] = json_file("openai_chat_cached.json",
                                    headers={"X-Ratelimit-Remaining-Tokens": "149000"})
    gw = await gateway()
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url + CHAT + "?api-version=2024-10-21", json=BODY, headers={
                "Authorization": "Bearer sk-client", "OpenAI-Organization": "org-1",
                "Connection": "keep-alive, X-Hop", "X-Hop": "drop me",
                "User-Agent": "my-app/1.0"}) as r:
            assert r.status == 200
            assert await r.read() == fixture("openai_chat_cached.json")
            assert r.headers["X-Ratelimit-Remaining-Tokens"] == "149000"
            rid = r.headers["X-Request-ID"]
    up = replay.seen[-1]
    assert up.path_qs == CHAT + "?api-version=2024-10-21"
    assert up.headers["Authorization"] == "Bearer sk-client"
    assert up.headers["OpenAI-Organization"] == "org-1"
    assert up.headers["User-Agent"] == "my-app/1.0"
    assert "X-Hop" not in up.headers
    assert up.headers["Host"] == gateway.upstream_url.split("//")[1]
    assert up.headers["X-Request-ID"] == rid and len(rid) == 32
    assert (await gw.records.wait(1)).request_id == rid


async def test_the_upstreams_request_id_reaches_the_client_unchanged(gateway, replay):
    """OpenAI's id is what its SDK shows as _request_id and its support asks for: it passes
    as it came; the gateway's own (the client's, here) comes in X-LLM-Request-ID."""
    replay.routes[CHAT] = json_file("openai_chat_cached.json",
                                    headers={"X-Request-ID": "req_openai_123"})
    replay.routes["/v1/messages"] = json_file("anthropic_message.json",
                                              headers={"request-id": "req_011anthropic"})
    gw = await gateway()
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url + CHAT, json=BODY, headers={"X-Request-ID": "mine-42"}) as r:
            assert r.headers.getall("X-Request-ID") == ["req_openai_123"]
            assert r.headers["X-LLM-Request-ID"] == "mine-42"
        async with s.post(gw.url + "/anthropic/v1/messages", json=BODY,
                          headers={"X-Request-ID": "mine-43"}) as r:
            assert r.headers["request-id"] == "req_011anthropic"
            # No X-Request-ID of the upstream's: the gateway's is given under that name too.
            assert r.headers["X-Request-ID"] == r.headers["X-LLM-Request-ID"] == "mine-43"
    assert replay.seen[0].headers["X-Request-ID"] == "mine-42"
    first, second = await gw.records.wait(1), await gw.records.wait(2)
    assert (first.request_id, first.upstream_request_id) == ("mine-42", "req_openai_123")
    assert (second.request_id, second.upstream_request_id) == ("mine-43", "req_011anthropic")


async def test_routing_by_service_prefix_and_default(gateway, replay):
    replay.routes[CHAT] = json_file("openai_chat_cached.json")
    replay.routes["/v1/models"] = status(200, {"object": "list", "data": []})
    gw = await gateway(default_service="anthropic")
    async with aiohttp.ClientSession() as s:
        for path in ("/openai" + CHAT, CHAT, "/openai/v1/models", "/v1/models"):
            async with s.request("GET" if "models" in path else "POST", gw.url + path,
                                 json=None if "models" in path else BODY) as r:
                assert r.status == 200, path
    await gw.records.wait(4)
    assert [r.service for r in gw.records] == ["openai", "anthropic", "openai", "anthropic"]
    assert [r.operation for r in gw.records] == ["chat", "chat", "other", "other"]
    assert [s.path_qs for s in replay.seen] == [CHAT, CHAT, "/v1/models", "/v1/models"]
    assert replay.seen[2].body == b""


async def test_upstream_key_injected_in_place_of_clients(gateway, replay):
    replay.routes[CHAT] = json_file("openai_chat_cached.json")
    replay.routes["/v1/messages"] = json_file("anthropic_message.json")
    base = gateway.upstream_url
    gw = await gateway(services=[
        {"name": "openai", "base_url": base, "api_key_env": "UP_OPENAI"},
        {"name": "anthropic", "base_url": base, "provider": "anthropic",
         "api_key_env": "UP_ANTHROPIC"}],
        env={"UP_OPENAI": "sk-upstream-o", "UP_ANTHROPIC": "sk-ant-upstream"})
    async with aiohttp.ClientSession() as s:
        await (await s.post(gw.url + "/openai" + CHAT, json=BODY,
                            headers={"Authorization": "Bearer sk-virtual-1"})).read()
        await (await s.post(gw.url + "/anthropic/v1/messages", json={"model": "m"},
                            headers={"x-api-key": "sk-virtual-2"})).read()
    o, a = replay.seen
    assert o.headers["Authorization"] == "Bearer sk-upstream-o"
    assert a.headers["x-api-key"] == "sk-ant-upstream" and "Authorization" not in a.headers
    await gw.records.wait(2)
    assert [r.api_key for r in gw.records] == [
        "key-" + hashlib.sha256(b"sk-virtual-1").hexdigest()[:8],
        "key-" + hashlib.sha256(b"sk-virtual-2").hexdigest()[:8]]


async def test_named_keys_and_no_raw_key_anywhere(gateway, replay, caplog):
    caplog.set_level(logging.DEBUG)
    named, unnamed, env_key = "sk-proj-NAMEDKEY000111", "sk-ant-api03-UNNAMED999", "sk-ENVKEY77"
    replay.routes[CHAT] = sse_file("openai_chat_stream.sse", reset_after=2)
    replay.routes["/v1/messages"] = json_file("anthropic_message.json")
    gw = await gateway(api_keys=[
        {"name": "search-team", "sha256": hashlib.sha256(named.encode()).hexdigest()},
        {"name": "batch-jobs", "key_env": "BATCH_KEY"}], env={"BATCH_KEY": env_key})
    async with aiohttp.ClientSession() as s:
        for headers, path in (({"Authorization": f"Bearer {named}"}, "/openai" + CHAT),
                              ({"x-api-key": unnamed}, "/anthropic/v1/messages"),
                              ({"api-key": env_key}, "/openai" + CHAT)):
            async with s.post(gw.url + path, json={**BODY, "stream": True},
                              headers=headers) as r:
                try:
                    await r.read()
                except aiohttp.ClientPayloadError:
                    pass  # the stream route breaks on purpose, so errors get logged too
    await gw.records.wait(3)
    assert [r.api_key for r in gw.records] == [
        "search-team", "key-" + hashlib.sha256(unnamed.encode()).hexdigest()[:8], "batch-jobs"]
    exposed = render(gw.registry).decode() + caplog.text
    assert "stream_interrupted" in caplog.text  # the logs were written, and checked
    for key in (named, unnamed, env_key):
        assert key not in exposed
        assert key[-8:] not in exposed


async def test_label_values_are_capped(gateway, replay):
    replay.routes[CHAT] = status(400, {"error": {"message": "no such model"}})
    gw = await gateway(limits={"max_models": 3, "max_api_keys": 2})
    async with aiohttp.ClientSession() as s:
        for i in range(4):
            async with s.post(gw.url + CHAT, json={"model": f"random-{i}"},
                              headers={"Authorization": f"Bearer k{i}"}) as r:
                assert r.status == 400
    await gw.records.wait(4)
    models = {s.labels["model"] for m in gw.registry.collect() for s in m.samples
              if s.name == "llm_requests_total"}
    keys = {s.labels["api_key"] for m in gw.registry.collect() for s in m.samples
            if s.name == "llm_requests_total"}
    # "unknown" is always allowed, so 3 slots hold unknown plus the first two models.
    assert models == {"random-0", "random-1", "other"}
    assert len(keys) == 2 and "other" in keys  # "none" holds a slot, one key fits


async def test_gzip_response_passes_unchanged_and_is_counted(gateway, replay):
    replay.routes[CHAT] = json_file("openai_chat_cached.json", compress=True)
    gw = await gateway()
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        async with s.post(gw.url + CHAT, json=BODY,
                          headers={"Accept-Encoding": "gzip, br, zstd"}) as r:
            assert r.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(await r.read()) == fixture("openai_chat_cached.json")
    assert replay.seen[-1].headers["Accept-Encoding"] == "gzip"  # only what the gateway reads
    await gw.records.wait(1)
    assert gw.total("llm_tokens_total") == 93 + 1024 + 46


async def test_admin_metrics_and_healthz(gateway, replay, admin):
    replay.routes[CHAT] = json_file("openai_chat_cached.json")
    gw = await gateway()
    async with aiohttp.ClientSession() as s:
        await (await s.post(gw.url + CHAT, json=BODY)).read()
    await gw.records.wait(1)
    client = await admin(gw.registry)
    r = await client.get("/healthz")
    assert r.status == 200 and (await r.json())["status"] == "ok"
    r = await client.get("/metrics")
    text = await r.text()
    assert 'llm_build_info{version="0.1.0"} 1.0' in text
    assert "llm_tokens_total{" in text
    assert "_created" not in text  # not a series of their own in Prometheus
    assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert " # {" not in text  # the text format has no exemplars
    # OpenMetrics when asked, as Prometheus asks: the request's id is the latency's exemplar.
    r = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert r.headers["Content-Type"] == \
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    om = await r.text()
    rid = gw.records[0].request_id
    assert om.endswith("# EOF\n")
    [line] = [line for line in om.splitlines()
              if line.startswith("llm_request_duration_seconds_bucket{") and rid in line]
    assert line.endswith(f' # {{request_id="{rid}"}} {gw.records[0].duration!r} ' +
                         line.rsplit(" ", 1)[1])


async def test_promtool_check_metrics_is_silent(gateway, replay):
    promtool = need_binary("promtool")
    replay.routes[CHAT] = sse_file("openai_chat_stream.sse", "openai_chat_stream.no_usage.sse")
    gw = await gateway()
    async with aiohttp.ClientSession() as s:
        await (await s.post(gw.url + CHAT, json={**BODY, "stream": True})).read()
    await gw.records.wait(1)
    out = subprocess.run([promtool, "check", "metrics"], input=render(gw.registry),
                         capture_output=True, timeout=30)
    assert out.returncode == 0 and out.stdout == b"" and out.stderr == b"", out


async def test_errors_take_the_model_name_their_successes_carry(gateway, replay):
    """A success for "gpt-4o" reports gpt-4o-2024-08-06; a later error for "gpt-4o" names
    no model, and is labelled gpt-4o-2024-08-06 too, so one model has one error ratio."""
    gw = await gateway()
    async with aiohttp.ClientSession() as s:
        replay.routes[CHAT] = status(500, {"error": {"message": "boom"}})
        await (await s.post(gw.url + CHAT, json=BODY)).read()       # nothing learned yet
        replay.routes[CHAT] = json_file("openai_chat_cached.json")
        await (await s.post(gw.url + CHAT, json=BODY)).read()
        replay.routes[CHAT] = status(500, {"error": {"message": "boom"}})
        await (await s.post(gw.url + CHAT, json=BODY)).read()
        await (await s.post(gw.url + CHAT, json={**BODY, "model": "o3"})).read()
    await gw.records.wait(4)
    assert [r.model for r in gw.records] == ["gpt-4o", "gpt-4o-2024-08-06",
                                             "gpt-4o-2024-08-06", "o3"]
