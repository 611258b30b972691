"""The benchmark runs and reports every scenario; its figures are not asserted (speed is
measured by the benchmark, never by a timed test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


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
    for r in rows:
        assert r["gateway_rps"] > 0 and r["direct_rps"] > 0 and r["cpu_ms_per_request"] > 0
        assert ("gateway_ttft_p50_ms" in r) == r["stream"]
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
    # llm_connections_refused_total 1. No _created series.
    expected = 12000 + 80 * 19 + 40 * 22 + 40 * 20 + 14 + 1 + 3 + 1
    assert scrape == {"metrics_series": expected, "metrics_render_ms": scrape["metrics_render_ms"]}
    assert scrape["metrics_render_ms"] > 0
    assert observe["observe_us"] > 0 and "exemplars_us" in observe
    assert "built-in async client" in done.stdout.splitlines()[0]
