"""A counter's first increment reaches a real Prometheus: a key used in one burst of three
requests is counted by sum(increase(...)), with one gateway process and with --workers.

Prometheus's increase() cannot see a series' first jump: a series that appears at 3 has
increased by nothing. The gateway shows a new series at 0 to a scrape before its
increments count (telemetry/scrapes.py). Evaluated at the last sample's time over a range
that holds the first, increase() neither extrapolates past the end nor (from a 0) before
the start: the figure is exact. Fees by hand: openai_chat_cached.json is 93 uncached input
tokens, 1,024 cached and 46 output of gpt-4o at $2.50, $1.25 and $10 per million.
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal as D

import aiohttp
import pytest
from conftest import need_binary, start, stop, until_async, wait_ok
from upstream import json_file

pytestmark = pytest.mark.e2e
CHAT = "/v1/chat/completions"
FEE = (93 * D("2.50") + 1024 * D("1.25") + 46 * D("10")) / 1_000_000
assert FEE == D("0.0019725")


async def query(prom: str, expr: str, **params) -> list:
    async with aiohttp.ClientSession() as s, \
            s.get(prom + "/api/v1/query", params={"query": expr, **params}) as r:
        body = await r.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_keys_only_three_requests_are_in_increase(workers, tmp_path, aiohttp_server,
                                                          replay, unused_tcp_port_factory):
    prometheus = need_binary("prometheus")
    replay.routes[CHAT] = json_file("openai_chat_cached.json")
    upstream = str((await aiohttp_server(replay.app())).make_url("")).rstrip("/")
    listen, admin, prom_port = (unused_tcp_port_factory() for _ in range(3))
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps({
        "listen": f"127.0.0.1:{listen}", "admin_listen": f"127.0.0.1:{admin}",
        "services": [{"name": "openai", "base_url": upstream, "provider": "openai"}]}))
    (tmp_path / "prometheus.yml").write_text(json.dumps({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "gateway",
                            "static_configs": [{"targets": [f"127.0.0.1:{admin}"]}]}]}))
    gateway = await start(sys.executable, "-m", "exporter", "serve", "--config", str(config),
                          "--workers", str(workers), cwd=tmp_path, log=tmp_path / "gateway.log")
    prom = await start(prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                       f"--storage.tsdb.path={tmp_path / 'data'}",
                       f"--web.listen-address=127.0.0.1:{prom_port}",
                       log=tmp_path / "prometheus.log")
    url = f"http://127.0.0.1:{prom_port}"
    try:
        await wait_ok(f"http://127.0.0.1:{admin}/healthz")
        await wait_ok(url + "/-/ready")

        async def scraped() -> bool:
            return bool(await query(url, 'up{job="gateway"} == 1'))
        await until_async(scraped)
        async with aiohttp.ClientSession() as s:
            for _ in range(3):  # one burst, well within a scrape interval
                async with s.post(f"http://127.0.0.1:{listen}{CHAT}",
                                  json={"model": "gpt-4o", "messages": []},
                                  headers={"Authorization": "Bearer sk-only-three"}) as r:
                    assert r.status == 200
                    await r.read()
        selector = 'llm_requests_total{code="200"}'

        async def counted() -> bool:
            found = await query(url, selector)
            return bool(found) and found[0]["value"][1] == "3"
        await until_async(counted)
        [series] = await query(url, selector + "[1m]")
        samples = [(float(t), float(v)) for t, v in series["values"]]
        assert samples[0][1] == 0.0  # read at 0 first
        first, last = samples[0][0], samples[-1][0]
        window = {"time": last}
        span = f"{int(last - first) + 1}s"
        for expr, expected in (
                (f"sum(increase(llm_requests_total[{span}]))", 3.0),
                (f'sum(increase(llm_tokens_total{{token_type="cache_read"}}[{span}]))', 3072.0),
                (f"sum(increase(llm_cost_usd_total[{span}]))", float(3 * FEE))):
            [result] = await query(url, expr, **window)
            assert float(result["value"][1]) == pytest.approx(expected, rel=1e-9), expr
    finally:
        await stop(gateway)
        await stop(prom)
