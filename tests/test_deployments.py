"""Deployments: health followed, GPU time accrued only while up, exact across restarts, and
the deployments table with cost per million tokens worked out by hand."""

from __future__ import annotations

import asyncio
import json
import time
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from upstream import json_file

from exporter.config.load import parse_config
from exporter.config.schema import ConfigError
from exporter.deployments.probe import Deployments
from exporter.store.database import Database
from exporter.store.deployments import deployment_rows
from exporter.store.query import Filters
from exporter.store.rows import Uptime
from exporter.store.writer import History
from exporter.telemetry.background import DeploymentMetrics, HistoryMetrics

CHAT = "/v1/chat/completions"
T0 = 1_790_000_000.0  # wall clock of the first probe
UTC = ZoneInfo("UTC")


def rows(db: Database, filters: Filters) -> list[dict]:
    return deployment_rows(db, filters).all()


def config(**deployment):
    return parse_config({"services": [{"name": "openai", "base_url": "https://api.openai.com"}],
                         "deployments": [{"name": "llama", "model": "llama-3.1-70b",
                                          "base_url": "http://127.0.0.1:9", **deployment}]})


class Clocks:
    """The prober's two clocks, moved by the test: monotonic, and wall = base + monotonic."""

    def __init__(self, base: float = T0):
        self.now, self.base = 0.0, base

    def mono(self):
        return self.now

    def wall(self):
        return self.base + self.now


def sample(registry, name, **labels):
    return registry.get_sample_value(name, labels)


def test_gpu_time_accrues_only_between_two_probes_that_found_it_up():
    d = config(gpus=2, gpu_hourly_usd=2.5, gpu_type="H100").deployments[0]
    registry, clocks, events = CollectorRegistry(), Clocks(), []
    deployments = Deployments((d,), DeploymentMetrics(registry), persist=events.append,
                              clock=clocks.mono, wall=clocks.wall)
    deployments.announce()
    assert sample(registry, "llm_deployment_info", deployment="llama", model="llama-3.1-70b",
                  type="deployment", gpu_type="H100") == 1
    seen = []
    for t, up in ((0, True), (15, True), (30, False), (45, False), (60, True), (75, True)):
        clocks.now = t
        deployments.found(d, up)
        seen.append((sample(registry, "llm_deployment_up", deployment="llama"),
                     sample(registry, "llm_deployment_gpu_seconds_total", deployment="llama")))
    # Up 0-15 and 60-75: 2 x 15 s each time; nothing for 15-60, where it was down at 30.
    assert seen == [(1, 0), (1, 30), (0, 30), (0, 30), (1, 30), (1, 60)]
    # 60 GPU-seconds at $2.50 an hour: 60 x 2.5 / 3600.
    assert sample(registry, "llm_deployment_cost_usd_total", deployment="llama") == \
        pytest.approx(60 * 2.5 / 3600)
    assert events == [Uptime("llama", T0, T0 + 15, 2, 2.5, "llama-3.1-70b", "deployment"),
                      Uptime("llama", T0 + 60, T0 + 75, 2, 2.5, "llama-3.1-70b", "deployment")]


async def test_the_probe_follows_health_and_falls_back_to_v1_models(aiohttp_server):
    state = {"health": 200}

    async def health(request):
        return web.Response(status=state["health"])

    async def models(request):
        return web.json_response({"data": [{"id": "m"}]})

    with_health = web.Application()
    with_health.router.add_get("/health", health)
    without = web.Application()  # Ollama: /v1/models only
    without.router.add_get("/v1/models", models)
    a, b = await aiohttp_server(with_health), await aiohttp_server(without)
    registry = CollectorRegistry()
    c = parse_config({"services": [{"name": "x", "base_url": "http://127.0.0.1:9"}],
                      "deployments": [
                          {"name": "a", "model": "m", "base_url": str(a.make_url(""))},
                          {"name": "b", "model": "m", "base_url": str(b.make_url(""))}]})
    deployments = Deployments(c.deployments, DeploymentMetrics(registry))
    da, db = c.deployments
    try:
        assert [await deployments.check(da), await deployments.check(db)] == [True, True]
        state["health"] = 503  # loading weights, say
        assert await deployments.check(da) is False
        state["health"] = 200
        assert await deployments.check(da) is True
        await b.close()  # gone: connection refused
        assert await deployments.check(db) is False
        assert sample(registry, "llm_deployment_up", deployment="b") == 0
    finally:
        deployments.pool.close()


async def test_runs_across_a_restart_are_counted_once_and_priced_per_million_tokens(
        gateway, replay, db):
    history = History(db, HistoryMetrics(CollectorRegistry()), linger=0)
    history.start()
    d = config(gpus=2, gpu_hourly_usd=2.0).deployments[0]
    base = time.time() - 4000  # the runs end 200 s before the requests below
    for start, end in ((0, 1800), (2000, 3800)):  # two processes, a restart between
        clocks = Clocks(base)
        deployments = Deployments((d,), DeploymentMetrics(CollectorRegistry()),
                                  persist=history.put_event, clock=clocks.mono,
                                  wall=clocks.wall)
        for t in range(start, end + 1, 15):
            clocks.now = t
            deployments.found(d, True)
    # Traffic through the gateway to the deployment: two answers of the fixture.
    replay.routes[CHAT] = json_file("openai_chat_cached.json")
    gw = await gateway(history=history, deployments=[
        {"name": "llama", "model": "llama-3.1-70b", "base_url": gateway.upstream_url}])
    async with aiohttp.ClientSession() as s:
        for _ in range(2):
            async with s.post(gw.url + "/llama" + CHAT, json={"model": "llama"}) as r:
                assert r.status == 200
    record = await gw.records.wait(2)
    assert (record.service, record.provider, record.fee, record.unpriced) == (
        "llama", "vllm", 0, False)  # its tokens cost nothing: its GPU time does
    await asyncio.to_thread(history.close)
    [row] = rows(db, Filters(base - 60, base + 7200, UTC))
    # 1,800 + 1,800 s up, on 2 GPUs at $2 an hour: 2 GPU-hours, $4. Two answers of 1,117
    # prompt and 46 completion tokens: 2,326 tokens in all, 92 of output.
    assert (row["deployment"], row["type"], row["model"], row["requests"]) == (
        "llama", "deployment", "llama-3.1-70b", 2)
    assert (row["duration_seconds"], row["duration"], row["gpu_hours"], row["cost_usd"]) == (
        3600, "1 h 00 min", 2.0, 4.0)
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (2234, 92, 2326)
    assert row["usd_per_million_tokens"] == round(4 / 2326 * 1e6, 10)
    assert row["usd_per_million_output_tokens"] == round(4 / 92 * 1e6, 10)
    # A range that cuts the second run in half: its overlap only, and both requests.
    [row] = rows(db, Filters(base + 2900, base + 7200, UTC))
    assert (row["duration_seconds"], row["gpu_hours"], row["requests"]) == (900, 0.5, 2)
    assert rows(db, Filters(base - 7200, base - 60, UTC)) == []


def test_a_deployment_cannot_take_a_service_name():
    with pytest.raises(ConfigError) as e:
        parse_config({"services": [{"name": "openai", "base_url": "http://x"}],
                      "deployments": [{"name": "llama", "model": "m", "base_url": "http://y",
                                       "type": "lora"}]})
    assert e.value.problems == [
        "deployments[0].type: must be one of deployment, fine-tuning"]
    with pytest.raises(ConfigError) as e:
        parse_config({"services": [{"name": "llama", "base_url": "http://x"}],
                      "deployments": [{"name": "llama", "model": "m", "base_url": "http://y"}]})
    assert e.value.problems == ["deployments[0].name: 'llama' is a service's name already"]


async def test_the_api_serves_the_deployments_table(admin, db):
    history = History(db, HistoryMetrics(CollectorRegistry()), linger=0)
    history.start()
    history.put_event(Uptime("llama", T0, T0 + 5400, 4, 3.0, "llama-3.1-70b", "fine-tuning"))
    await asyncio.to_thread(history.close)
    client = await admin(CollectorRegistry(), db=db)
    async with client.get("/api/deployments", params={
            "from": str(T0), "to": str(T0 + 86400)}) as r:
        assert r.status == 200
        [row] = (await r.json())["data"]
    # 1.5 h on 4 GPUs: 6 GPU-hours at $3, $18; no traffic, so no cost per token.
    assert row == {"deployment": "llama", "type": "fine-tuning", "model": "llama-3.1-70b",
                   "requests": 0, "duration": "1 h 30 min", "duration_seconds": 5400.0,
                   "input_tokens": 0, "output_tokens": 0, "total_tokens": 0,
                   "estimated_tokens": 0, "gpu_hours": 6.0, "cost_usd": 18.0,
                   "usd_per_million_tokens": None, "usd_per_million_output_tokens": None}
    async with client.get("/api/deployments", params={"from": "x"}) as r:
        assert r.status == 400
        assert json.loads(await r.text())["error"]["parameter"] == "from"


def test_the_table_names_the_model_the_range_ran(db):
    history = History(db, HistoryMetrics(CollectorRegistry()), linger=0)
    history.put_event(Uptime("llama", T0, T0 + 3600, 1, 1.0, "llama-3.1-70b", "deployment"))
    history.put_event(Uptime("llama", T0 + 7200, T0 + 9000, 2, 1.0, "llama-3.3-70b",
                             "fine-tuning"))
    history.start()
    history.close()
    [before] = rows(db, Filters(T0, T0 + 3600, UTC))
    [both] = rows(db, Filters(T0, T0 + 9000, UTC))
    assert (before["model"], before["type"], before["gpu_hours"]) == (
        "llama-3.1-70b", "deployment", 1.0)
    # 1 h on 1 GPU and 0.5 h on 2: 2 GPU-hours; named as its latest run in the range.
    assert (both["model"], both["type"], both["gpu_hours"], both["cost_usd"]) == (
        "llama-3.3-70b", "fine-tuning", 2.0, 2.0)


async def test_a_server_replaced_by_one_without_health_is_found_again(aiohttp_server):
    state = {"health": True}

    async def health(request):
        return web.Response(status=200 if state["health"] else 404)

    async def models(request):
        return web.json_response({"data": []})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    server = await aiohttp_server(app)
    d = config(base_url=str(server.make_url(""))).deployments[0]
    deployments = Deployments((d,), DeploymentMetrics(CollectorRegistry()))
    try:
        assert await deployments.check(d) is True
        state["health"] = False  # /health is gone: /v1/models answers, at once
        assert await deployments.check(d) is True
        assert deployments.state[d.name].path == b"/v1/models"
    finally:
        deployments.pool.close()
