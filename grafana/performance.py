"""Performance: latency, time to first token, speed, the gateway's own overhead, errors.

Seed pages 001 (latency, success rate, errors, TTFT, gateway latency) and 003 (real-time
view: request rates, active requests). The latency panels show exemplars: a point on them
opens the request behind it in the request history.
"""

from __future__ import annotations

from .kit import (
    BY_KEY,
    BY_MODEL,
    BY_SERVICE,
    FAILED,
    SUCCEEDED,
    common_variables,
    dashboard,
    promql,
    trend_panel,
)

UID = "llm-performance"
QUANTILES = ((0.5, "p50"), (0.95, "p95"), (0.99, "p99"))


def quantiles(title: str, metric: str, what: str, *, exemplar: bool) -> object:
    targets = [promql(f"histogram_quantile({q}, sum by (le, model) (rate({metric}_bucket"
                      f"{{{BY_MODEL}}}[$__rate_interval])))", "{{model}} " + name, ref,
                      exemplar=exemplar and q == 0.99)
               for (q, name), ref in zip(QUANTILES, "ABC", strict=True)]
    links = (" Exemplars (points) name the last request in each bucket: open one to see it "
             "in the request history." if exemplar else "")
    return trend_panel(title, f"{what} at the 50th, 95th and 99th percentiles by model, from "
                       f"the histogram {metric} over $__rate_interval (interpolated within "
                       f"its buckets). Histograms carry no api_key label.{links}", "s",
                       targets)


def build():
    requests = f"llm_requests_total{{{BY_KEY}}}"
    # A failure is what the client did not get as a success: the success rates' rule.
    failed = f"llm_requests_total{{{BY_KEY},{FAILED}}}"
    succeeded = f"llm_requests_total{{{BY_KEY},{SUCCEEDED}}}"
    tokens = f"sum by (model) (rate(llm_tokens_total{{{BY_KEY}}}[$__rate_interval]))"
    every = f"sum by (model) (rate({requests}[$__rate_interval]))"
    latency = [
        quantiles("Request duration", "llm_request_duration_seconds",
                  "Time from a request's arrival to the last byte sent to the client",
                  exemplar=True),
        quantiles("Time to first token", "llm_time_to_first_token_seconds",
                  "Streams only: time from arrival to the first content-bearing event written "
                  "to the client", exemplar=True),
        quantiles("Time per output token", "llm_time_per_output_token_seconds",
                  "Streams only: (duration - TTFT) / (output tokens - 1), the speed of "
                  "generation once it started", exemplar=False),
        trend_panel("Gateway overhead", "Time the gateway itself spent on a request (its "
                    "duration less the waits on the upstream and the client), p50 and p99 by "
                    "service from llm_gateway_overhead_seconds; p99 is what LLMGatewayOverhead"
                    "High reads (service:llm_gateway_overhead_seconds:p99_5m).", "s",
                    [promql("histogram_quantile(0.5, sum by (le, service) (rate("
                            f"llm_gateway_overhead_seconds_bucket{{{BY_SERVICE}}}"
                            "[$__rate_interval])))", "{{service}} p50"),
                     promql(f"service:llm_gateway_overhead_seconds:p99_5m{{{BY_SERVICE}}}",
                            "{{service}} p99 (5m)", "B")]),
    ]
    outcomes = [
        trend_panel("Requests in flight", "Requests being handled now, by service: "
                    "llm_requests_in_flight.", "short",
                    [promql(f"sum by (service) (llm_requests_in_flight{{{BY_SERVICE}}})",
                            "{{service}}")], w=8),
        trend_panel("Errors by status code", "Failed requests per second by the HTTP status "
                    "the client got (499: it went away): rate(llm_requests_total"
                    "[$__rate_interval]) of every error_type but none and accounting_error "
                    "(the client got its answer; only its bill failed), as the success rates "
                    "judge.", "reqps",
                    [promql(f"sum by (code) (rate({failed}[$__rate_interval]))", "{{code}}")], w=8),
        trend_panel("Errors by type", "Failed requests per second by error_type: the "
                    "upstream's answer (bad_request, auth, not_found, rate_limited, "
                    "upstream_error) or what the gateway saw (connect_error, timeout, "
                    "stream_interrupted, client_disconnect, too_large, gateway_error).",
                    "reqps",
                    [promql(f"sum by (error_type) (rate({failed}[$__rate_interval]))",
                            "{{error_type}}")], w=8),
        trend_panel("Success rate", "Share of requests that succeeded, by model: "
                    'rate(llm_requests_total{error_type=~"none|accounting_error"}) (the '
                    "client got its answer) over every request's rate.",
                    "percentunit",
                    # `or ... * 0`: a model failing everything shows 0%, not a gap;
                    # `> 0`: an idle one shows a gap, not NaN.
                    [promql(f"(sum by (model) (rate({succeeded}[$__rate_interval])) or "
                            f"{every} * 0) / ({every} > 0)", "{{model}}")]),
        trend_panel("Estimated-token share", "Share of tokens estimated from text (4 "
                    "characters a token) because the upstream reported no usage: "
                    "llm_estimated_tokens_total over llm_tokens_total. High means the bill is "
                    "under-reported (LLMHighEstimatedTokenShare).", "percentunit",
                    # `or ... * 0`: a model with no estimates shows 0, not a gap.
                    [promql(f"(sum by (model) (rate(llm_estimated_tokens_total{{{BY_KEY}}}"
                            f"[$__rate_interval])) or {tokens} * 0) / {tokens}",
                            "{{model}}")]),
    ]
    return dashboard(
        UID, "LLM performance",
        "How fast and how reliably the LLM APIs answer through the gateway: latency, time to "
        "first token, generation speed, the gateway's own overhead, errors and success.",
        common_variables(), [("Latency", latency), ("Outcomes", outcomes)])
