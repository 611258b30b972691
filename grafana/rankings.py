"""Rankings: the top N services, models and API keys by tokens and by fee.

Seed page 004: a ranking by service, model or key beside a bar chart of that resource per
time bucket, with a download of the ranking for the current range and filters.
"""

from __future__ import annotations

from .kit import (
    API_FILTERS,
    API_RANGE,
    BUCKET,
    BY_KEY,
    Column,
    InfinityQuery,
    common_variables,
    custom_variable,
    dashboard,
    download_links,
    gateway_url_variable,
    granularity_variable,
    promql,
    ranking_panel,
    trend_panel,
)

UID = "llm-rankings"
# (label, one, many)
DIMENSIONS = (("service", "service", "Services"), ("model", "model", "Models"),
              ("api_key", "API key", "API keys"))
MEASURES = (("tokens", "llm_tokens_total", "short", "tokens"),
            ("fee", "llm_cost_usd_total", "currencyUSD", "US dollars"))


def download(label: str, order: str) -> InfinityQuery:
    """The usage API's ranking that the panel shows, for its CSV and Excel links."""
    return InfinityQuery("/api/usage", [
        ("group_by", label), ("order", order), ("limit", "$topn"), *API_RANGE,
        *API_FILTERS, ("format", "json")], [Column(label, label, kind="string")])


def pair(label: str, names: str, order: str, metric: str, unit: str,
         words: str) -> list:
    over_range = f"sum by ({label}) (increase({metric}{{{BY_KEY}}}[$__range]))"
    ranking = ranking_panel(
        f"Top $topn {names.lower() if label != 'api_key' else names} by {order}",
        f"The $topn {names if label == 'api_key' else names.lower()} with the most {words} "
        f"over the dashboard's range: topk($topn, {over_range}). The panel's links download "
        "the same ranking from the usage API as CSV or Excel (read from the request "
        "history, which can differ slightly from Prometheus's extrapolated increase).",
        unit, f"topk($topn, {over_range})")
    ranking = ranking.links(download_links(download(label, order)))
    # The same top N as the ranking beside it, over the range up to its end (`@`), so the
    # bars show the same set throughout.
    top = (f"topk($topn, sum by ({label}) (increase({metric}{{{BY_KEY}}}[$__range] "
           "@ ${__to:date:seconds})))")
    bars = trend_panel(
        f"{names} by {order} per bucket",
        f"{words.capitalize()} per bucket of the granularity chosen (wider over a range "
        f"with more buckets than the panel can draw) for each of the top $topn: "
        f"increase({metric}[$__interval]) summed by {label}, stacked.", unit,
        [promql(f"sum by ({label}) (increase({metric}{{{BY_KEY}}}{BUCKET})) "
                f"and on ({label}) {top}", "{{" + label + "}}", interval="$granularity")],
        w=6, bars=True, stacked=True)
    return [ranking, bars]


def build():
    variables = common_variables() + [
        custom_variable("topn", "Top N", [(n, n) for n in ("5", "10", "20", "50")], "10"),
        granularity_variable(), gateway_url_variable()]
    rows = []
    for label, name, names in DIMENSIONS:
        panels = []
        for order, metric, unit, words in MEASURES:
            panels += pair(label, names, order, metric, unit, words)
        rows.append((f"By {name}", panels))
    return dashboard(
        UID, "LLM usage rankings",
        "Which services, models and API keys use the most tokens and cost the most over the "
        "range, and when.", variables, rows)
