"""Request history: the latest requests, one row each, from the gateway's history.

Seed page 001's History (request id, model, provider, tokens in and out, TTFT, gateway
latency, time, status, error message). An exemplar on a latency panel opens this dashboard
with `request_id` set to the request behind it.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash

from .kit import (
    API_FILTERS,
    API_RANGE,
    OPERATION,
    Column,
    InfinityQuery,
    api_table,
    api_variable,
    common_variables,
    custom_variable,
    dashboard,
    download_links,
    gateway_url_variable,
    operation_variable,
)

UID = "llm-requests"
COLUMNS = [
    Column("request_id", "Request ID", kind="string"),
    Column("time", "Time", kind="timestamp"),
    Column("service", "Service", kind="string"),
    Column("provider", "Provider", kind="string"),
    Column("model", "Model", kind="string"),
    Column("api_key", "API key", kind="string"),
    Column("operation", "Operation", kind="string"),
    Column("input_tokens", "Tokens in", "short"),
    Column("output_tokens", "Tokens out", "short"),
    Column("total_tokens", "Tokens", "short"),
    Column("fee_usd", "Fee", "currencyUSD"),
    Column("ttft_ms", "TTFT", "ms"),
    Column("duration_ms", "Duration", "ms"),
    Column("overhead_ms", "Gateway overhead", "ms"),
    Column("status", "Status"),
    Column("error_type", "Error type", kind="string"),
    Column("error_message", "Error message", kind="string"),
]


def build():
    variables = common_variables() + [
        operation_variable(), api_variable(),
        dash.TextBoxVariable("request_id").label("Request ID").default_value(""),
        custom_variable("status", "Status", [("all", "*"), ("success", "success"),
                                             ("error", "error")], "*"),
        custom_variable("limit", "Rows", [(n, n) for n in ("100", "1000", "10000")], "100"),
        gateway_url_variable(),
    ]
    query = InfinityQuery("/api/requests", [
        *API_RANGE, *API_FILTERS, OPERATION, ("request_id", "${request_id}"),
        ("status", "$status"),
        ("limit", "$limit"), ("format", "json")], COLUMNS)
    latest = api_table(
        "Latest requests",
        "The newest requests first, at most the Rows chosen, from the gateway's request "
        "history (/api/requests), filtered by the variables and the time range; Request ID "
        "narrows it to one request (as a latency exemplar's link does). Tokens in and out "
        "are every category of each direction; TTFT is for streams only. Error messages are "
        "the gateway's or the upstream's own reason, never prompt or completion text. The "
        "links download exactly these rows as CSV or Excel.", query, h=20)
    return dashboard(
        UID, "LLM request history",
        "Every request the gateway handled, newest first: which key used which model, the "
        "tokens, time to first token, duration, the gateway's overhead and the outcome.",
        variables, [("Requests", [latest.links(download_links(query))])])
