"""Usage details: one row per model and API key, and the same per time bucket.

Seed page 001 (router usage: requests, tokens, the input and output breakdown by category,
latency, success rate, errors, fee, QPS, hourly, with an Excel export) and 000 (time zone,
daily or hourly granularity). Read from the usage API, which has what the metrics lack
per key (latency) and buckets days in the viewer's time zone.
"""

from __future__ import annotations

from .kit import (
    API_FILTERS,
    API_RANGE,
    BY_KEY,
    FILTERS,
    OPERATION,
    Column,
    InfinityQuery,
    api_table,
    api_variable,
    common_variables,
    dashboard,
    download_links,
    gateway_url_variable,
    granularity_variable,
    history_link,
    ledger_stat,
    month_by_day_link,
    operation_variable,
    report_links,
    stat_panel,
)

UID = "llm-details"

FIGURES = [
    Column("requests", "Requests"),
    Column("total_tokens", "Total tokens", "short"),
    Column("input_text", "Input text", "short"),
    Column("input_cache_read", "Cache read", "short"),
    Column("input_cache_write_5m", "Cache write (5 min)", "short"),
    Column("input_cache_write_1h", "Cache write (1 h)", "short"),
    Column("input_audio", "Input audio", "short"),
    Column("input_image", "Input image", "short"),
    Column("output_text", "Output text", "short"),
    Column("output_reasoning", "Reasoning", "short"),
    Column("output_audio", "Output audio", "short"),
    Column("output_image", "Output image", "short"),
    Column("avg_latency_ms", "Avg latency", "ms"),
    Column("success_rate", "Success rate", "percentunit"),
    Column("failed", "Errors"),
    Column("fee_usd", "Fee", "currencyUSD"),
    Column("qps", "QPS", "reqps"),
    Column("tokens_per_request", "Tokens per request", "locale"),
    Column("fee_per_request", "Cost per request", "currencyUSD"),
]
KEYS = [Column("model", "Model", kind="string"), Column("api_key", "API key", kind="string")]


def usage(granularity: str | None) -> InfinityQuery:
    bucket = [("granularity", granularity)] if granularity else []
    columns = ([Column("time", "Time", kind="timestamp")] if granularity else []) + KEYS + FIGURES
    return InfinityQuery("/api/usage", [
        ("group_by", "model,api_key"), *bucket, ("order", "fee"), *API_RANGE, *API_FILTERS,
        OPERATION, ("format", "json")], columns)


# The summary's totals: of the operations chosen too.
TOTALS = ("/api/usage", (*API_RANGE, *API_FILTERS, OPERATION, ("format", "json")))


def build():
    variables = common_variables() + [operation_variable(), api_variable(),
                                      granularity_variable(), gateway_url_variable()]
    whole, bucketed = usage(None), usage("$granularity")
    ledger = ("From the request history (the usage API's total for the range and "
              "filters), to the request and the cent: ")
    summary = [
        ledger_stat("Requests", ledger + "requests, every outcome.", "locale", ["requests"],
                    decimals=0, source=TOTALS),
        ledger_stat("Successful", ledger + "requests that succeeded (the client got its "
                    "answer: error_type none or accounting_error).", "locale",
                    ["successful"], decimals=0, source=TOTALS),
        ledger_stat("Failed", ledger + "requests that failed, client errors included.",
                    "locale", ["failed"], decimals=0, source=TOTALS),
        ledger_stat("Total tokens", ledger + "tokens of every category.", "locale",
                    ["total_tokens"], decimals=0, source=TOTALS),
        ledger_stat("Fee", ledger + "US dollars.", "currencyUSD", ["fee_usd"], source=TOTALS),
        stat_panel("Models used", "Models that used tokens over the range: the number of "
                   "model label values whose tokens increased (Prometheus, whose tokens have "
                   "no operation: every filter but the operation).", "locale",
                   f"count(sum by (model) (increase(llm_tokens_total{{{BY_KEY}}}[$__range]))"
                   " > 0)", decimals=0),
        ledger_stat("Average latency", ledger + "mean request duration, arrival to last "
                    "byte; - without requests.", "ms", ["avg_latency_ms"], source=TOTALS),
        ledger_stat("Tokens per request", ledger + "tokens over requests; - without "
                    "requests.", "locale", ["tokens_per_request"], decimals=0, source=TOTALS),
        ledger_stat("Cost per request", ledger + "fees over requests (a fine-tuning's "
                    "training fee, which is no request, included); - without requests.",
                    "currencyUSD", ["fee_per_request"], source=TOTALS),
    ]
    per_pair = api_table(
        "Usage by model and API key",
        "One row per model and API key over the range, from the gateway's request history "
        "(/api/usage?group_by=model,api_key): requests, tokens by category (input: text, "
        "cache read, 5-minute and 1-hour cache writes, audio, image; output: text, "
        "reasoning, audio, image), mean latency, success rate, failed requests, fee and "
        "requests per second. The links download exactly this as CSV or Excel; a row opens "
        "its requests in the request history.", whole, h=10)
    per_bucket = api_table(
        "Usage by model and API key per $granularity",
        "The same per bucket of the granularity chosen, bucketed in the dashboard's time "
        "zone (${__timezone}): a day starts at the viewer's midnight, and a day when clocks "
        "change lasts 23 or 25 hours.", bucketed, h=12)
    return dashboard(
        UID, "LLM usage details",
        "Per model and API key: requests, every token category, latency, success, errors, "
        "fee and QPS, over the range and per time bucket, with CSV and Excel downloads.",
        variables,
        [("Summary", summary),
         ("By model and API key", [
             table.links(download_links(query)).data_links(history_link(
                 (*FILTERS, "operation"), model="Model", api_key="API key"))
             for table, query in ((per_pair, whole), (per_bucket, bucketed))])],
        links=[month_by_day_link(UID), *report_links()])
