"""End to end: gateway -> real Prometheus -> real Alertmanager -> a webhook receiver.

The shipped rules and routing are loaded as they are, but for shortened `for:` durations
and Alertmanager's grouping waits (or a resolution would take five minutes to arrive).
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from conftest import need_binary, start, stop, wait_ok
from upstream import fixture

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parent.parent
ALERTS = ROOT / "alerts"
CHAT = "/v1/chat/completions"


class Receiver:
    """Collect what Alertmanager sends, and wait for a given alert in a given state."""

    def __init__(self):
        self.seen: list[tuple[str, str]] = []
        self.changed = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        payload = await request.json()
        for alert in payload["alerts"]:
            self.seen.append((alert["labels"]["alertname"], alert["status"]))
        self.changed.set()
        return web.Response()

    async def wait(self, alertname: str, status: str, prometheus: str, timeout: float = 120):
        try:
            async with asyncio.timeout(timeout):
                while (alertname, status) not in self.seen:
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            async with aiohttp.ClientSession() as s:
                state = {path: (await (await s.get(prometheus + path)).json())["data"]
                         for path in ("/api/v1/alerts", "/api/v1/rules?type=record")}
                for query in ("sum by (error_type) (llm_requests_total)",
                              "service_model:llm_request_failures:ratio_rate5m"):
                    r = await s.get(prometheus + "/api/v1/query", params={"query": query})
                    state[query] = (await r.json())["data"]["result"]
            raise AssertionError(f"no {status} {alertname} within {timeout} s; the receiver "
                                 f"saw {self.seen}; Prometheus: {state}") from None


class FlakyUpstream:
    """An OpenAI-like upstream failing every `fail_every`-th request (0: never)."""

    def __init__(self):
        self.fail_every, self.count = 4, 0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.count += 1
        if self.fail_every and self.count % self.fail_every == 0:
            return web.json_response({"error": {"message": "boom", "type": "server_error"}},
                                     status=500)
        return web.Response(body=fixture("openai_chat_cached.json"),
                            content_type="application/json")


async def traffic(url: str) -> None:
    """Send about 50 requests a second until cancelled, like a steady client.

    Steady, not a burst: a counter series is born at its first increment, so a burst
    between two scrapes never shows Prometheus an increase.
    """
    async with aiohttp.ClientSession() as s:
        while True:
            async with s.post(url + CHAT, json={"model": "gpt-4o", "messages": []}) as r:
                await r.read()
            await asyncio.sleep(0.02)


async def test_error_ratio_and_exporter_down_alerts_arrive_and_resolve(
        aiohttp_server, tmp_path, unused_tcp_port_factory):
    prometheus = need_binary("prometheus")
    alertmanager = need_binary("prometheus-alertmanager")
    receiver, flaky = Receiver(), FlakyUpstream()
    hook = web.Application()
    hook.router.add_post("/alertmanager", receiver.handle)
    hook_server = await aiohttp_server(hook)
    up = web.Application()
    up.router.add_post(CHAT, flaky.handle)
    up_server = await aiohttp_server(up)
    listen, admin, prom_port, am_port = (unused_tcp_port_factory() for _ in range(4))

    gateway_config = tmp_path / "gateway.yaml"
    gateway_config.write_text(yaml.safe_dump({
        "listen": f"127.0.0.1:{listen}", "admin_listen": f"127.0.0.1:{admin}",
        "history": {"path": str(tmp_path / "history.db")},
        "services": [{"name": "openai", "base_url": str(up_server.make_url("")).rstrip("/")}]}))
    for name in ("rules.yml", "alerts.yml"):  # only the `for:` durations are shortened
        text = (ALERTS / name).read_text()
        (tmp_path / name).write_text(re.sub(r"(?m)^(\s+for:) \S+$", r"\1 1s", text))
    am_config = yaml.safe_load((ALERTS / "alertmanager.yml").read_text())
    am_config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    for receiver_config in am_config["receivers"]:
        for webhook in receiver_config.get("webhook_configs", ()):
            webhook["url"] = str(hook_server.make_url("/alertmanager"))
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(am_config))
    prom_config = yaml.safe_load((ALERTS / "prometheus.yml").read_text())
    prom_config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    prom_config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [
        f"127.0.0.1:{am_port}"]
    job = prom_config["scrape_configs"][0]  # the gateway here, not compose's DNS names
    del job["dns_sd_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{admin}"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom_config))

    gateway_cmd = (sys.executable, "-m", "exporter", "serve", "--config", str(gateway_config))
    sender = None
    procs = [await start(*gateway_cmd),
             await start(alertmanager, f"--config.file={tmp_path / 'alertmanager.yml'}",
                         f"--storage.path={tmp_path / 'am'}",
                         f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="),
             await start(prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                         f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                         f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn")]
    try:
        await wait_ok(f"http://127.0.0.1:{admin}/healthz")
        await wait_ok(f"http://127.0.0.1:{am_port}/-/ready")
        await wait_ok(f"http://127.0.0.1:{prom_port}/-/ready")
        gateway = f"http://127.0.0.1:{listen}"
        prom = f"http://127.0.0.1:{prom_port}"

        sender = asyncio.create_task(traffic(gateway))
        # One request in four fails upstream: 25%, over the 5% threshold, under 90%.
        await receiver.wait("LLMHighErrorRatio", "firing", prom)
        # Then none: once successes outnumber the window's failures 19 to 1, it resolves.
        flaky.fail_every = 0
        await receiver.wait("LLMHighErrorRatio", "resolved", prom)
        sender.cancel()

        procs[0].send_signal(15)  # the gateway goes away: Prometheus cannot scrape it
        await procs[0].wait()
        await receiver.wait("LLMExporterDown", "firing", prom)
        procs[0] = await start(*gateway_cmd)
        await receiver.wait("LLMExporterDown", "resolved", prom)
    finally:
        if sender is not None:
            sender.cancel()
        for proc in procs:
            await stop(proc)
    assert ("LLMUpstreamFailing", "firing") not in receiver.seen  # 25% is not "everything"
