"""The benchmark runs and reports every scenario and target; its figures are not asserted
(speed is measured by the benchmark, never by a timed test)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from exporter.devtools import nginx
from exporter.devtools.bench import Bench, header
from exporter.devtools.figures import format_row, summarise
from exporter.devtools.load import BODY, Run, post, read_answer
from exporter.devtools.processes import family

ROOT = Path(__file__).parent.parent


def need_nginx() -> str:
    """Debian's nginx (in /usr/sbin, off a user's PATH); skip without it locally, fail
    without it in CI."""
    path = nginx.binary()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is required in CI but is not installed (apt-get install nginx)")
        pytest.skip("nginx is not installed")
    return path


def test_bench_reports_every_scenario(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "exporter", "bench", "--duration", "0.3",
                           "--repetitions", "1", "--no-wrk", "--json", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    *rows, memory, scrape, observe = json.loads(out.read_text())
    assert [r["scenario"] for r in rows] == [
        "non-streaming, concurrency 1", "non-streaming, concurrency 32",
        "non-streaming, concurrency 128", "streaming, 50 chunks, concurrency 1",
        "streaming, 50 chunks, concurrency 32"]
    targets = ("direct", "nginx", "gateway") if nginx.binary() else ("direct", "gateway")
    for r in rows:
        assert r["cpu_ms_per_request"] > 0
        for target in targets:
            assert r[f"{target}_rps"] > 0 and r[f"{target}_p50_ms"] > 0
            assert (f"{target}_ttft_p50_ms" in r) == r["stream"]
        assert ("nginx_cpu_ms_per_request" in r) == ("nginx" in targets)
    assert "recorded_minus_client_duration_ms" in rows[0]
    assert "recorded_minus_client_ttft_ms" in rows[3]
    assert memory["peak_rss_mb"] > 0
    # 40 models x 25 keys, each used streamed and not. Counted by hand: per (model, key)
    # requests 1 + 3 made at zero (connect_error, timeout, upstream_error) + tokens 4 (input
    # text, cache read, output text, reasoning) + cost 4 = 12 (stream is no counter
    # label): 12,000. Histograms, each bucket + "+Inf" + _sum + _count:
    # duration per model and stream 80 x (16 + 3), TTFT per model 40 x (19 + 3), TPOT
    # 40 x (17 + 3), overhead one service 11 + 3; llm_build_info 1;
    # llm_record_errors_total at 0 per stage (accounting, metrics, history) 3;
    # llm_attribution_rejected_total at 0 per field (project, user, tags) 3;
    # llm_connections_refused_total 1. No _created series.
    expected = 12000 + 80 * 19 + 40 * 22 + 40 * 20 + 14 + 1 + 3 + 3 + 1
    assert scrape == {"metrics_series": expected, "metrics_render_ms": scrape["metrics_render_ms"]}
    assert scrape["metrics_render_ms"] > 0
    assert observe["observe_us"] > 0 and "exemplars_us" in observe
    lines = done.stdout.splitlines()
    assert "built-in async client" in lines[0]
    assert ("through nginx" in lines[0]) == ("nginx" in targets)
    assert ("nginx is not installed" in lines[1]) == ("nginx" not in targets)


def test_the_header_says_in_one_line_that_nginx_is_missing():
    bench = Bench(1.0, 3, use_wrk=False, use_nginx=False)
    bench.stop()  # nothing started: removes its temporary directory
    first, second = header(bench).splitlines()
    assert "the upstream direct and through the gateway, alternating, 3 x 1 s" in first
    assert second.startswith("nginx is not installed (Debian: apt-get install nginx)")


def run(requests: int, p50: float, ttft: float | None = None) -> Run:
    """A run of one second: `requests` of them, p99 twice p50."""
    return Run(requests, 1.0, p50, 2 * p50, p50, ttft, ttft)


def test_a_row_puts_the_gateway_beside_nginx_and_direct():
    runs = {"direct": [run(400, 0.0020, 0.0005), run(380, 0.0021, 0.0006)],
            "nginx": [run(360, 0.0023, 0.0006)],
            "gateway": [run(200, 0.0030, 0.0010), run(240, 0.0028, 0.0009),
                        run(220, 0.0032, 0.0011)]}
    row = summarise("streaming, 50 chunks", True, 1, runs,
                    {"nginx": [0.4], "gateway": [1.1, 1.2, 1.3]}, [(-0.0003, -0.0006)])
    assert row == pytest.approx({
        "scenario": "streaming, 50 chunks, concurrency 1", "stream": True,
        "direct_rps": 390, "direct_p50_ms": 2.05, "direct_p99_ms": 4.1,
        "direct_ttft_p50_ms": 0.55,
        "nginx_rps": 360, "nginx_p50_ms": 2.3, "nginx_p99_ms": 4.6, "nginx_ttft_p50_ms": 0.6,
        "gateway_rps": 220, "gateway_p50_ms": 3.0, "gateway_p99_ms": 6.0,
        "gateway_ttft_p50_ms": 1.0,
        "cpu_ms_per_request": 1.2, "nginx_cpu_ms_per_request": 0.4, "gateway_cpu_vs_nginx": 3.0,
        "recorded_minus_client_duration_ms": -0.3, "recorded_minus_client_ttft_ms": -0.6})
    assert format_row(row) == (
        "streaming, 50 chunks, concurrency 1: 220 req/s through the gateway, 360 through "
        "nginx, 390 direct (0.56x; nginx 0.92x); p50 3.00 ms (+0.95; nginx +0.25), p99 6.00 ms "
        "(+1.90; nginx +0.50); TTFT p50 1.00 ms (+0.45; nginx +0.05); gateway CPU 1.200 "
        "ms/request, nginx 0.400 (3.0x); recorded minus observed: duration -0.300 ms, "
        "TTFT -0.600 ms")


def test_a_row_without_nginx_and_a_cpu_below_a_tick():
    runs = {"direct": [run(4000, 0.00025)], "gateway": [run(1300, 0.00075)]}
    row = summarise("non-streaming", False, 32, runs, {"gateway": [0.35]}, [])
    assert format_row(row) == (
        "non-streaming, concurrency 32: 1,300 req/s through the gateway, 4,000 direct "
        "(0.33x); p50 0.75 ms (+0.50), p99 1.50 ms (+1.00); gateway CPU 0.350 ms/request")
    runs["nginx"] = [run(3000, 0.0003)]
    row = summarise("non-streaming", False, 32, runs, {"gateway": [0.35], "nginx": [0.0]}, [])
    assert row["gateway_cpu_vs_nginx"] is None  # a run shorter than nginx's clock tick
    assert format_row(row).endswith("gateway CPU 0.350 ms/request, nginx 0.000 "
                                     "(below a clock tick)")


async def answer(session: aiohttp.ClientSession, url: str, stream: bool):
    async with session.post(url, json={**BODY, "stream": stream}) as r:
        return r.status, r.headers, await r.read()


async def test_nginx_proxies_the_simulated_upstream_as_it_answers():
    need_nginx()
    bench = Bench(1.0, 1, use_wrk=False)
    try:
        direct = await asyncio.to_thread(bench.start_upstream)
        url, pid = await asyncio.to_thread(bench.start_nginx)
        # One process serves (master_process off): the one whose CPU the benchmark reads.
        assert Path(f"/proc/{pid}/comm").read_text().strip() == "nginx"
        assert family(pid) == [pid]
        async with aiohttp.ClientSession() as session:
            (s1, _, plain), (s2, _, proxied) = [await answer(session, u, False)
                                                for u in (direct, url)]
            assert s1 == s2 == 200
            assert json.loads(plain).keys() == json.loads(proxied).keys()
            assert json.loads(proxied)["usage"]["completion_tokens"] == 50
            status, headers, body = await answer(session, url, True)
            assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
            assert headers["Transfer-Encoding"] == "chunked"  # relayed as it comes, unsized
            events = [e for e in body.split(b"\n\n") if e]
            assert events[-1] == b"data: [DONE]"
            assert sum(b'"content":"' in e and b'"content":""' not in e for e in events) == 50
        # More requests on one connection than nginx's default keepalive_requests (1,000),
        # as the benchmark's client sends: none of them may find the connection closed.
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        request = post(url, {**BODY, "stream": False})
        for _ in range(1001):
            writer.write(request)
            await read_answer(reader, 0.0)
        writer.close()
    finally:
        await asyncio.to_thread(bench.stop)
