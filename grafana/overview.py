"""Usage overview: the totals of the range, the trends and the month's forecast.

Seed pages 002 (totals, per-model trend with a total/input/output switch), 003 (request,
token and cost metrics, compare periods, forecasts, alerts) and 004 (tokens per minute,
cache read and write, max/min/avg, granularity).
"""

from __future__ import annotations

from exporter.record import TOKEN_FIELDS

from .kit import (
    ALERTS_API,
    BUCKET,
    BY_KEY,
    FORECAST,
    AlertList,
    Column,
    InfinityQuery,
    alerts_variable,
    api_table,
    api_variable,
    common_variables,
    custom_variable,
    dashboard,
    gateway_url_variable,
    granularity_variable,
    history_link,
    ledger_stat,
    ledger_trend,
    month_by_day_link,
    previous,
    previous_period,
    promql,
    report_links,
    stat_panel,
    trend_panel,
)

UID = "llm-overview"


TOKENS = "llm_tokens_total"
REQUESTS = "llm_requests_total"


# The usage API's token columns (record.TOKEN_FIELDS) by direction.
INPUT = [f for f in TOKEN_FIELDS if f.startswith("input_")]
OUTPUT = [f for f in TOKEN_FIELDS if f.startswith("output_")]
LEDGER = ("From the request history (the usage API's total for the dashboard's range and "
          "filters): the same figure, to the request and the cent, as its exports, reports "
          "and the bill it reconciles with. ")


FORECAST_TEXT = ("The current calendar month so far (in the dashboard's time zone, whatever "
                 "its range), extended at its pace to the month's end: so far x the month's "
                 "length / the part elapsed (on its first day, the month so far). From the "
                 "request history (/api/forecast), for the filters chosen. ")


def totals() -> list:
    return [
        ledger_stat("Total tokens", LEDGER + "Tokens of every category.", "locale",
                    ["total_tokens"], decimals=0),
        ledger_stat("Input tokens", LEDGER + "Input tokens: text, cache read and write, "
                    "audio, image.", "locale", INPUT, decimals=0),
        ledger_stat("Output tokens", LEDGER + "Output tokens: text, reasoning, audio, "
                    "image.", "locale", OUTPUT, decimals=0),
        ledger_stat("Cache-read tokens", LEDGER + "Input served from the provider's prompt "
                    "cache, billed at a fraction of the input price.", "locale",
                    ["input_cache_read"], decimals=0),
        ledger_stat("Requests", LEDGER + "Requests the gateway handled, every outcome.",
                    "locale", ["requests"], decimals=0),
        ledger_stat("Fee", LEDGER + "What the requests cost in US dollars, priced per "
                    "token category by the gateway.", "currencyUSD", ["fee_usd"]),
        ledger_stat("Success rate", LEDGER + "Share of the requests that succeeded (or "
                    "whose answer the client got and only the bill failed: "
                    "accounting_error), client errors included; - without requests.",
                    "percentunit", ["success_rate"]),
        ledger_stat("Average latency", LEDGER + "Mean request duration, arrival to last "
                    "byte; - without requests.", "ms", ["avg_latency_ms"]),
        ledger_stat("QPS", LEDGER + "Requests per second, averaged over the range.",
                    "reqps", ["qps"]),
        stat_panel("Tokens per minute", "Token throughput now, per minute: the rate of "
                   "llm_tokens_total over the last few scrapes, from Prometheus.", "locale",
                   f"sum(rate({TOKENS}{{{BY_KEY}}}[$__rate_interval])) * 60", decimals=0),
        ledger_stat("Month-end spend forecast", FORECAST_TEXT + "US dollars.",
                    "currencyUSD", ["forecast_fee_usd"], source=FORECAST),
        ledger_stat("Month-end requests forecast", FORECAST_TEXT + "Requests.", "locale",
                    ["forecast_requests"], decimals=0, source=FORECAST),
        ledger_stat("Month-end tokens forecast", FORECAST_TEXT + "Tokens of every "
                    "category.", "locale", ["forecast_total_tokens"], decimals=0,
                    source=FORECAST),
        stat_panel("Spend today", "Today's spend so far, the calendar day in the gateway's "
                   "time zone, from its request history (llm_spend_usd), summed over the API "
                   "keys chosen (every other filter left aside).", "currencyUSD",
                   'sum(max by (api_key) (llm_spend_usd{period="day",api_key=~"$api_key"}))'),
    ]


BUCKETS = ("Per bucket of the granularity chosen (wider over a range with more buckets than "
           "the panel can draw), each shown at its start as in the usage tables (the bar at "
           "10:00 holds 10:00 to 11:00); from Prometheus, whose counts over a bucket are "
           "estimates (whole days, exact: the ledger's row below): ")


def trend(title: str, what: str, unit: str, selector: str, by: str, *, w: int = 12) -> object:
    """A per-bucket trend by one label, and the previous period's total dashed."""
    return previous_period(trend_panel(
        title, BUCKETS + what + " Dashed grey: the total of all of them over the previous "
        "period of equal length (offset $__range), to compare periods.", unit,
        [promql(f"sum by ({by}) (increase({selector}{BUCKET}))", "{{" + by + "}}",
                interval="$granularity"),
         promql(previous(selector),
                "all, previous period", "B", interval="$granularity")],
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
        "Tokens per minute by model, ${tokens:text}",
        "Token throughput in tokens per minute by model: rate(llm_tokens_total"
        "[$__rate_interval]) times 60; the Tokens switch picks total, input or output.",
        "short", [promql(f'sum by (model) (rate({TOKENS}{{{BY_KEY},direction=~"$tokens"}}'
                         "[$__rate_interval])) * 60", "{{model}}")])
    requests = trend("Requests by model", "requests of every outcome, "
                     "increase(llm_requests_total[$__interval]) summed by model.", "short",
                     f"{REQUESTS}{{{BY_KEY}}}", "model")
    qps = trend_panel(
        "QPS by model", "Requests per second by model: rate(llm_requests_total"
        "[$__rate_interval]).", "reqps",
        [promql(f"sum by (model) (rate({REQUESTS}{{{BY_KEY}}}[$__rate_interval]))",
                "{{model}}")])
    return [tokens, fee, cache, requests, per_minute, qps]


DAYS = ("From the request history (the usage API by day), a bar per calendar day of the "
        "dashboard's time zone (${__timezone}: the viewer's midnight, or UTC's), stacked by "
        "model, to the request and the cent; the last day so far. ")


def days() -> list:
    return [ledger_trend("Fee per day", DAYS + "US dollars.", "currencyUSD", "fee_usd",
                         "model"),
            ledger_trend("Tokens per day", DAYS + "Tokens of every category.", "short",
                         "total_tokens", "model"),
            ledger_trend("Requests per day", DAYS + "Requests of every outcome.", "short",
                         "requests", "model")]


def build():
    variables = common_variables() + [
        granularity_variable(), api_variable(), alerts_variable(), gateway_url_variable(),
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
         ("Day by day, from the ledger", days()),
         ("Alerts", [alerts_table(), AlertList(
             "Alert rules firing or pending", "The llm-usage-exporter alert rules that are "
             "firing or pending (waiting out their for:), from the Prometheus datasource's "
             "rules.", w=8)])], links=[month_by_day_link(UID), *report_links()])


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
                     "the Alertmanager API datasource). A row opens the requests of its "
                     "service, model and API key (those it names) in the request history.",
                     query, w=16, h=8).data_links(history_link(
                         service="Service", model="Model", api_key="API key"))
