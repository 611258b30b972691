"""The benchmark's figures: each target's medians over the repetitions, one line per scenario.

Targets are "direct" (the simulated upstream), "nginx" (a plain reverse proxy in front of
it, where installed) and "gateway"; latencies are reported as what a proxy adds to direct.
"""

from __future__ import annotations

import statistics

from .load import Run


def summarise(name: str, stream: bool, concurrency: int, runs: dict[str, list[Run]],
              cpu: dict[str, list[float]], accuracy: list[tuple]) -> dict:
    """One scenario's row: per target req/s, p50, p99 (and TTFT p50 of streams) in ms, and
    for the proxies their CPU in ms per request."""
    med = statistics.median
    row: dict = {"scenario": f"{name}, concurrency {concurrency}", "stream": stream}
    for target, done in runs.items():
        row[f"{target}_rps"] = med(r.rps for r in done)
        row[f"{target}_p50_ms"] = med(r.p50 for r in done) * 1000
        row[f"{target}_p99_ms"] = med(r.p99 for r in done) * 1000
        if stream:
            row[f"{target}_ttft_p50_ms"] = med(r.ttft_p50 for r in done) * 1000
    row["cpu_ms_per_request"] = med(cpu["gateway"])  # the gateway's, named so since the start
    if "nginx" in cpu:
        nginx = row["nginx_cpu_ms_per_request"] = med(cpu["nginx"])
        # A short run can take less than one clock tick of nginx's CPU: no ratio then.
        row["gateway_cpu_vs_nginx"] = row["cpu_ms_per_request"] / nginx if nginx else None
    if accuracy:  # recorded minus observed, mean per request
        row["recorded_minus_client_duration_ms"] = med(a for a, _ in accuracy) * 1000
        if stream:
            row["recorded_minus_client_ttft_ms"] = med(t for _, t in accuracy) * 1000
    return row


def format_row(r: dict) -> str:
    """The row as one line: the gateway first, nginx after it where it ran."""
    nginx = "nginx_rps" in r

    def added(figure: str) -> str:
        text = f"{r['gateway_' + figure]:.2f} ms " \
               f"({r['gateway_' + figure] - r['direct_' + figure]:+.2f}"
        if nginx:
            text += f"; nginx {r['nginx_' + figure] - r['direct_' + figure]:+.2f}"
        return text + ")"

    text = f"{r['scenario']}: {r['gateway_rps']:,.0f} req/s through the gateway"
    if nginx:
        text += f", {r['nginx_rps']:,.0f} through nginx"
    text += f", {r['direct_rps']:,.0f} direct ({r['gateway_rps'] / r['direct_rps']:.2f}x"
    if nginx:
        text += f"; nginx {r['nginx_rps'] / r['direct_rps']:.2f}x"
    text += f"); p50 {added('p50_ms')}, p99 {added('p99_ms')}"
    if r["stream"]:
        text += f"; TTFT p50 {added('ttft_p50_ms')}"
    text += f"; gateway CPU {r['cpu_ms_per_request']:.3f} ms/request"
    if nginx:
        ratio = r["gateway_cpu_vs_nginx"]
        text += (f", nginx {r['nginx_cpu_ms_per_request']:.3f} "
                 f"({f'{ratio:.1f}x' if ratio is not None else 'below a clock tick'})")
    if "recorded_minus_client_duration_ms" in r:
        text += (f"; recorded minus observed: duration "
                 f"{r['recorded_minus_client_duration_ms']:+.3f} ms")
        if r["stream"]:
            text += f", TTFT {r['recorded_minus_client_ttft_ms']:+.3f} ms"
    return text
