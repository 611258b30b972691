"""Usage overview: the totals of the range, the trends and the month's forecast.

Seed pages 002 (totals, per-model trend with a total/input/output switch), 003 (request,
token and cost metrics, compare periods, forecasts, alerts) and 004 (tokens per minute,
cache read and write, max/min/avg, granularity).
"""

from __future__ import annotations

from .kit import (
    ALERTS_API,
    BUCKET,
    BY_KEY,
    BY_MODEL,
    SUCCEEDED,
    AlertList,
    Column,
    InfinityQuery,
    alerts_variable,
    api_table,
    common_variables,
    custom_variable,
    dashboard,
    granularity_variable,
    previous_period,
    promql,
    stat_panel,
    trend_panel,
)

UID = "llm-overview"


def _increase(metric: str, extra: str = "", window: str = "$__range") -> str:
    return f"sum(increase({metric}{{{BY_KEY}{extra}}}[{window}]))"


TOKENS = "llm_tokens_total"
REQUESTS = "llm_requests_total"


def totals() -> list:
    tokens = "Tokens of every category counted by the gateway over the dashboard's range: " \
        "sum(increase(llm_tokens_total[$__range]))"
    return [
        stat_panel("Total tokens", tokens + ".", "short", _increase(TOKENS)),
        stat_panel("Input tokens", tokens + ', direction="input" (text, cache read and '
                   "write, audio, image).", "short", _increase(TOKENS, ',direction="input"')),
        stat_panel("Output tokens", tokens + ', direction="output" (text, reasoning, audio, '
                   "image).", "short", _increase(TOKENS, ',direction="output"')),
        stat_panel("Cache-read tokens", tokens + ', token_type="cache_read": input served '
                   "from the provider's prompt cache, billed at a fraction of the input price.",
                   "short", _increase(TOKENS, ',token_type="cache_read"')),
        stat_panel("Requests", "Requests the gateway handled over the range, every outcome: "
                   "sum(increase(llm_requests_total[$__range])).", "short",
                   _increase(REQUESTS), decimals=0),
        stat_panel("Fee", "What the range's requests cost in US dollars, priced per token "
                   "category by the gateway: sum(increase(llm_cost_usd_total[$__range])).",
                   "currencyUSD", _increase("llm_cost_usd_total"), decimals=4),
        stat_panel("Success rate", "Share of the range's requests that succeeded "
                   '(error_type="none", or "accounting_error": the client got its answer, '
                   "only its bill failed) among all requests, client errors included.",
                   "percentunit", "(" + _increase(REQUESTS, f",{SUCCEEDED}")
                   + " or vector(0)) / " + _increase(REQUESTS), decimals=2),
        stat_panel("Average latency", "Mean request duration over the range, arrival to last "
                   "byte: the duration histogram's sum over its count. Histograms have no "
                   "api_key label: this follows every filter but the API key.", "s",
                   f"sum(increase(llm_request_duration_seconds_sum{{{BY_MODEL}}}[$__range]))"
                   f" / sum(increase(llm_request_duration_seconds_count{{{BY_MODEL}}}"
                   "[$__range]))"),
        stat_panel("QPS", "Requests per second, averaged over the range: the requests' "
                   "increase divided by the range in seconds.", "reqps",
                   f"{_increase(REQUESTS)} / $__range_s"),
        stat_panel("Tokens per minute", "Tokens per minute, averaged over the range: the "
                   "tokens' increase divided by the range in minutes.", "short",
                   f"{_increase(TOKENS)} / $__range_s * 60"),
        stat_panel("Month-end spend forecast", "The month's spend so far, extended at its "
                   "pace to the end of the month in the gateway's time zone (the recording "
                   "rule api_key:llm_spend_usd:month_forecast; on the month's first day, "
                   "the spend so far), summed over the API keys chosen. Needs the request "
                   "history.", "currencyUSD",
                   'sum(api_key:llm_spend_usd:month_forecast{api_key=~"$api_key"})',
                   decimals=2),
        stat_panel("Spend today", "Today's spend so far, the calendar day in the gateway's "
                   "time zone, from its request history (llm_spend_usd), summed over the API "
                   "keys chosen: right after a restart, unlike increase().", "currencyUSD",
                   'sum(max by (api_key) (llm_spend_usd{period="day",api_key=~"$api_key"}))',
                   decimals=4),
    ]


BUCKETS = ("Per bucket of the granularity chosen (wider over a range with more buckets than "
           "the panel can draw): ")


def trend(title: str, what: str, unit: str, selector: str, by: str, *, w: int = 12) -> object:
    """A per-bucket trend by one label, with each value's previous period dashed."""
    return previous_period(trend_panel(
        title, BUCKETS + what + " Dashed grey: each over the previous period of equal length "
        "(offset $__range), to compare periods.", unit,
        [promql(f"sum by ({by}) (increase({selector}{BUCKET}))", "{{" + by + "}}",
                interval="$granularity"),
         promql(f"sum by ({by}) (increase({selector}{BUCKET} offset $__range))",
                "{{" + by + "}} previous period", "B", interval="$granularity")],
        w=w, h=9), "B")


def trends() -> list:
    tokens = trend(
        "Tokens by model, ${tokens:text}",
        "increase(llm_tokens_total[$__interval]) summed by model; the Tokens switch picks "
        "total, input or output.", "short", f'{TOKENS}{{{BY_KEY},direction=~"$tokens"}}',
        "model", w=24)
    fee = trend("Fee by model", "US dollars, increase(llm_cost_usd_total[$__interval]) "
                "summed by model.", "currencyUSD", f"llm_cost_usd_total{{{BY_KEY}}}", "model")
    cache = trend("Cache read and write tokens",
                  "input tokens read from the provider's prompt cache, and written to it "
                  "(Anthropic bills writes above the input price): increase(llm_tokens_total"
                  '{token_type=~"cache_read|cache_write"}[$__interval]).', "short",
                  f'{TOKENS}{{{BY_KEY},token_type=~"cache_read|cache_write"}}', "token_type")
    per_minute = trend_panel(
        "Tokens per minute by direction",
        "Token throughput in tokens per minute, input and output: rate(llm_tokens_total"
        "[$__rate_interval]) times 60.", "short",
        [promql(f"sum by (direction) (rate({TOKENS}{{{BY_KEY}}}[$__rate_interval])) * 60",
                "{{direction}}")], w=24)
    return [tokens, fee, cache, per_minute]


def build():
    variables = common_variables() + [
        granularity_variable(), alerts_variable(),
        custom_variable("tokens", "Tokens", [("total", ".*"), ("input", "input"),
                                             ("output", "output")], ".*"),
    ]
    return dashboard(
        UID, "LLM usage overview",
        "What the team's LLM traffic used and cost over the range: totals, trends per model "
        "against the previous period, the month-end forecast and the firing alerts.",
        variables,
        [("Totals for the range", totals()),
         ("Trends", trends()),
         ("Alerts", [alerts_table(), AlertList(
             "Alert rules firing or pending", "The llm-usage-exporter alert rules that are "
             "firing or pending (waiting out their for:), from the Prometheus datasource's "
             "rules.", w=8)])])


def alerts_table():
    columns = [Column("labels.alertname", "Alert", kind="string"),
               Column("labels.severity", "Severity", kind="string"),
               Column("labels.service", "Service", kind="string"),
               Column("labels.model", "Model", kind="string"),
               Column("labels.api_key", "API key", kind="string"),
               Column("annotations.summary", "Summary", kind="string"),
               Column("startsAt", "Since", kind="timestamp")]
    query = InfinityQuery("/api/v2/alerts", [("active", "true"), ("silenced", "false"),
                                             ("inhibited", "false")], columns, root="",
                          datasource=ALERTS_API)
    return api_table("Firing alerts", "The alerts Alertmanager holds now, silenced and "
                     "inhibited ones left out: what it notifies (GET /api/v2/alerts, through "
                     "the Alertmanager API datasource).", query, w=16, h=8)
