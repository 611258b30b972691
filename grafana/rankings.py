"""Rankings: the top N services, models, API keys and projects by tokens and by fee, and
the top end users and tag values from the ledger.

Seed page 004: a ranking by service, model or key beside a bar chart of that resource per
time bucket, with a download of the ranking for the current range and filters. Seed 003:
usage by project. End users and tags are no labels (unbounded): their rankings are the
usage API's, read from the request history.
"""

from __future__ import annotations

from .kit import (
    API_FILTERS,
    API_RANGE,
    BUCKET,
    BY_KEY,
    Column,
    InfinityQuery,
    api_table,
    api_variable,
    common_variables,
    custom_variable,
    dashboard,
    dm,
    download_links,
    gateway_url_variable,
    granularity_variable,
    history_link,
    ledger_bars,
    month_by_day_link,
    promql,
    tag_variable,
    trend_panel,
)

UID = "llm-rankings"
# (label, one, many)
DIMENSIONS = (("service", "service", "Services"), ("model", "model", "Models"),
              ("api_key", "API key", "API keys"), ("project", "project", "Projects"))
MEASURES = (("requests", "llm_requests_total", "locale", "requests"),
            ("tokens", "llm_tokens_total", "short", "tokens"),
            ("fee", "llm_cost_usd_total", "currencyUSD", "US dollars"))


def ranking(label: str, order: str, unit: str) -> InfinityQuery:
    """The usage API's ranking: the top $topn values of `label` by `order`."""
    value = {"requests": Column("requests", "Requests", unit),
             "tokens": Column("total_tokens", "Tokens", unit),
             "fee": Column("fee_usd", "Fee", unit)}[order]
    return InfinityQuery("/api/usage", [
        ("group_by", label), ("order", order), ("limit", "$topn"), *API_RANGE,
        *API_FILTERS, ("format", "json")], [Column(label, label, kind="string"), value])


def pair(label: str, names: str, order: str, metric: str, unit: str,
         words: str) -> list:
    query = ranking(label, order, unit)
    bars_of = ledger_bars(
        f"Top $topn {names.lower() if label != 'api_key' else names} by {order}",
        f"The $topn {names if label == 'api_key' else names.lower()} with the most {words} "
        "over the dashboard's range, from the request history (the usage API), to the "
        "request and the cent. The panel's links download the same ranking as CSV or "
        "Excel; a bar opens its requests in the request history.", unit, query)
    ranked = bars_of.links(download_links(query)).data_links(history_link(**{label: label}))
    # The top N by Prometheus's count over the range up to its end (`@`), so the bars show
    # the same set throughout.
    top = (f"topk($topn, sum by ({label}) (increase({metric}{{{BY_KEY}}}[$__range] "
           "@ ${__to:date:seconds})))")
    bars = trend_panel(
        f"{names} by {order} per bucket",
        f"{words.capitalize()} per bucket of the granularity chosen (wider over a range "
        f"with more buckets than the panel can draw) for each of the top $topn: "
        f"increase({metric}[$__interval]) summed by {label}, stacked (Prometheus: a trend, "
        "not a total).", unit,
        [promql(f"sum by ({label}) (increase({metric}{{{BY_KEY}}}{BUCKET})) "
                f"and on ({label}) {top}", "{{" + label + "}}", interval="$granularity")],
        w=6, bars=True, stacked=True, many=True)
    return [ranked, bars]


# The ledger's figures of a ranking by end user or tag value.
FIGURES = [Column("requests", "Requests"), Column("total_tokens", "Total tokens", "short"),
           Column("failed", "Errors"), Column("fee_usd", "Fee", "currencyUSD")]


def ledger_ranking(title: str, description: str, group: str, column: Column) -> object:
    """The top $topn of the usage API grouped by `group`, by fee, with its downloads."""
    query = InfinityQuery("/api/usage", [
        ("group_by", group), ("order", "fee"), ("limit", "$topn"), *API_RANGE, *API_FILTERS,
        ("format", "json")], [column, *FIGURES])
    return api_table(title, description + " From the request history (the usage API), to "
                     "the request and the cent, for the dashboard's range and filters; the "
                     "links download it as CSV or Excel.", query, w=12, h=9) \
        .links(download_links(query))


def tag_ranking() -> object:
    """The top $topn values of the tag the Tag variable names. Infinity fills no variable
    into a column's selector, so the columns are taken as the API names them (the tag's is
    tag:KEY), the figures kept by name and given their headers."""
    query = InfinityQuery("/api/usage", [
        ("group_by", "tag:${tag_key}"), ("order", "fee"), ("limit", "$topn"), *API_RANGE,
        *API_FILTERS, ("format", "json")], [])
    panel = api_table(
        "Top $topn values of tag ${tag_key} by fee", "Fees by the value of one tag "
        "(X-LLM-Tags: feature=search): the tag key is the Tag variable; requests without "
        "the tag are the empty row. From the request history (the usage API), to the "
        "request and the cent, for the dashboard's range and filters; the links download "
        "it as CSV or Excel.", query, w=12, h=9)
    panel = panel.with_transformation(dm.DataTransformerConfig(
        id_val="filterFieldsByName", options={"include": {"pattern": "^(tag:.*|" + "|".join(
            c.field for c in FIGURES) + ")$"}})).with_transformation(
        dm.DataTransformerConfig(id_val="organize", options={
            "renameByName": {c.field: c.header for c in FIGURES}}))
    for c in FIGURES:
        if c.unit != "none":
            panel = panel.override_by_name(c.header, [dm.DynamicConfigValue(
                id_val="unit", value=c.unit)])
    return panel.links(download_links(query))


def attribution() -> list:
    return [
        ledger_ranking("Top $topn end users by fee", "The end users who cost the most: "
                       "X-LLM-User, else the body's user, safety_identifier or "
                       "metadata.user_id. Requests that name none are the empty row.",
                       "user", Column("user", "End user", kind="string")),
        tag_ranking(),
    ]


def build():
    variables = common_variables() + [
        custom_variable("topn", "Top N", [(n, n) for n in ("5", "10", "20", "50")], "10"),
        granularity_variable(), api_variable(), tag_variable(), gateway_url_variable()]
    rows = []
    for label, name, names in DIMENSIONS:
        panels = []
        for order, metric, unit, words in MEASURES:
            panels += pair(label, names, order, metric, unit, words)
        rows.append((f"By {name}", panels))
    rows.append(("By end user and tag (from the ledger)", attribution()))
    return dashboard(
        UID, "LLM usage rankings",
        "Which services, models, API keys, projects, end users and tag values use the most "
        "tokens and cost the most over the range, and when.", variables, rows,
        links=[month_by_day_link(UID)])
