"""Rankings: the top N services, models and API keys by tokens and by fee.

Seed page 004: a ranking by service, model or key beside a bar chart of that resource per
time bucket, with a download of the ranking for the current range and filters.
"""

from __future__ import annotations

from .kit import (
    API_FILTERS,
    API_RANGE,
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
DIMENSIONS = (("service", "service"), ("model", "model"), ("api_key", "API key"))
MEASURES = (("tokens", "llm_tokens_total", "short", "tokens"),
            ("fee", "llm_cost_usd_total", "currencyUSD", "US dollars"))


def download(label: str, order: str) -> InfinityQuery:
    """The usage API's ranking that the panel shows, for its CSV and Excel links."""
    return InfinityQuery("/api/usage", [
        ("group_by", label), ("order", order), ("limit", "$topn"), *API_RANGE,
        *API_FILTERS, ("format", "json")], [Column(label, label, kind="string")])


def pair(label: str, name: str, order: str, metric: str, unit: str, words: str) -> list:
    over_range = f"sum by ({label}) (increase({metric}{{{BY_KEY}}}[$__range]))"
    ranking = ranking_panel(
        f"Top $topn {name}s by {order}",
        f"The $topn {name}s with the most {words} over the dashboard's range: "
        f"topk($topn, {over_range}). The panel's links download the same ranking from the "
        "usage API as CSV or Excel.", unit, f"topk($topn, {over_range})")
    ranking = ranking.links(download_links(download(label, order)))
    # Fixed at the range's end (@ end()), so the bars show the same top N throughout.
    top = f"topk($topn, sum by ({label}) (increase({metric}{{{BY_KEY}}}[$__range] @ end())))"
    bars = trend_panel(
        f"{name.capitalize()}s by {order} per $granularity",
        f"{words.capitalize()} per bucket of the granularity chosen for each of the top "
        f"$topn {name}s of the range: increase({metric}[$granularity]) summed by {label}, "
        "stacked.", unit,
        [promql(f"sum by ({label}) (increase({metric}{{{BY_KEY}}}[$granularity])) "
                f"and on ({label}) {top}", "{{%s}}" % label, interval="$granularity")],
        w=6, bars=True, stacked=True)
    return [ranking, bars]


def build():
    variables = common_variables() + [
        custom_variable("topn", "Top N", [(n, n) for n in ("5", "10", "20", "50")], "10"),
        granularity_variable(), gateway_url_variable()]
    rows = []
    for label, name in DIMENSIONS:
        panels = []
        for order, metric, unit, words in MEASURES:
            panels += pair(label, name, order, metric, unit, words)
        rows.append((f"By {name}", panels))
    return dashboard(
        UID, "LLM usage rankings",
        "Which services, models and API keys use the most tokens and cost the most over the "
        "range, and when.", variables, rows)
