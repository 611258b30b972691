"""Deployments: the models the team serves on its own GPUs, their time up, GPU hours, cost,
and what a million tokens costs on them.

Seed pages 000 (dedicated usage) and 001 (self-deployed models: active deployments,
allocated GPU hours, fine-tunings, and the table of name, type, model, requests, duration
and tokens). GPU utilisation comes from NVIDIA's DCGM exporter where the same Prometheus
scrapes it, its series given a `deployment` label by relabelling (docs/deployments.md).
"""

from __future__ import annotations

from .kit import (
    API_FILTERS,
    API_RANGE,
    BUCKET,
    Column,
    InfinityQuery,
    api_table,
    api_variable,
    common_variables,
    dashboard,
    download_links,
    filter_variable,
    gateway_url_variable,
    granularity_variable,
    history_link,
    ledger_stat,
    promql,
    stat_panel,
    trend_panel,
)

UID = "llm-deployments"
DEPLOYMENT = 'deployment=~"$deployment"'
SERVICE = 'service=~"$deployment"'  # a deployment's traffic is its service's
# Its requests and tokens also follow the model, key and project chosen; GPU time and cost
# are the deployment's whatever the traffic, so they follow only the deployment.
TRAFFIC = SERVICE + ',model=~"$model",api_key=~"$api_key",project=~"$project"'
COLUMNS = [
    Column("deployment", "Name", kind="string"),
    Column("type", "Type", kind="string"),
    Column("model", "Model", kind="string"),
    Column("requests", "Requests", "short"),
    Column("duration_seconds", "Time up", "dtdurations"),  # seconds: sorts as a number
    Column("total_tokens", "Tokens", "short"),
    Column("estimated_tokens", "Of which estimated", "short"),
    Column("gpu_hours", "GPU hours", "short"),
    Column("cost_usd", "Cost", "currencyUSD"),
    Column("usd_per_million_tokens", "Cost per 1M tokens", "currencyUSD"),
    Column("usd_per_million_output_tokens", "Cost per 1M output tokens", "currencyUSD"),
]


def per_deployment(expr: str) -> str:
    """A sum by service of the usage metrics, labelled by deployment instead."""
    return f'label_replace(sum by (service) ({expr}), "deployment", "$1", "service", "(.*)")'


LEDGER = "From the request history (the deployments' runs of uptime and traffic), exact: "
DEPLOYMENTS = ("/api/deployments", (*API_RANGE, ("service", "${deployment:csv}"),
                                    ("format", "json")))


def build():
    gpu_seconds = f"llm_deployment_gpu_seconds_total{{{DEPLOYMENT}}}"
    cost = f"llm_deployment_cost_usd_total{{{DEPLOYMENT}}}"
    totals = [
        ledger_stat("Requests", LEDGER + "requests to the deployments (a deployment's "
                    "service is its name), of the models, API keys and projects chosen.",
                    "locale", ["requests"], decimals=0, source=("/api/usage", (
                        *API_RANGE, ("service", "${deployment:csv}"), *API_FILTERS[2:],
                        ("format", "json")))),
        stat_panel("Active deployments", "Deployments whose last health probe answered "
                   "(llm_deployment_up = 1), now.", "locale",
                   f"count(max by (deployment) (llm_deployment_up{{{DEPLOYMENT}}}) == 1) "
                   "or vector(0)", decimals=0),
        ledger_stat("Allocated GPU hours", LEDGER + "GPU hours allocated while up (time "
                    "up within the range x GPUs), summed over the deployments chosen.",
                    "short", ["gpu_hours"], source=DEPLOYMENTS),
        ledger_stat("GPU cost", LEDGER + "what that GPU time cost at each deployment's "
                    "hourly GPU price.", "currencyUSD", ["cost_usd"], source=DEPLOYMENTS),
        stat_panel("Fine-tuned models served", "Deployments of type fine-tuning (fine-tuned "
                   "models served on the team's GPUs), from llm_deployment_info.", "locale",
                   f'count(max by (deployment) (llm_deployment_info{{{DEPLOYMENT},'
                   'type="fine-tuning"})) or vector(0)', decimals=0),
        stat_panel("Down now", "Deployments whose last health probe failed "
                   "(llm_deployment_up = 0): LLMDeploymentDown fires after 5 minutes.",
                   "locale", f"count(max by (deployment) (llm_deployment_up{{{DEPLOYMENT}}}) "
                   "== 0) or vector(0)", decimals=0),
    ]
    totals = [p.span(4) for p in totals]  # six across a row: whole titles, whole numbers
    fine_tuning = [
        stat_panel("Fine-tuning jobs", "Fine-tuning jobs created through the gateway over "
                   'the range: increase(llm_fine_tuning_jobs_total{status="created"}) of the '
                   "services chosen (the Service variable: jobs run on hosted APIs, not on "
                   "a deployment).", "locale",
                   'sum(increase(llm_fine_tuning_jobs_total{service=~"$service",'
                   'status="created"}[$__range])) or vector(0)', decimals=0),
        stat_panel("Fine-tunings in progress", "Fine-tuning jobs created through the "
                   "gateway not yet seen to succeed, fail or be cancelled, now, from the "
                   "request history (llm_fine_tuning_jobs_in_progress; a job is seen when a "
                   "client polls it through the gateway), on every service.", "locale",
                   "max(llm_fine_tuning_jobs_in_progress) or vector(0)", decimals=0),
        stat_panel("Fine-tunings succeeded", "Fine-tuning jobs created through the gateway "
                   "seen to succeed over the range: increase(llm_fine_tuning_jobs_total"
                   '{status="succeeded"}) of the services chosen (seen when a client polls '
                   "the job through the gateway).", "locale",
                   'sum(increase(llm_fine_tuning_jobs_total{service=~"$service",'
                   'status="succeeded"}[$__range])) or vector(0)', decimals=0),
        stat_panel("Fine-tunings failed or cancelled", "Fine-tuning jobs created through the "
                   "gateway seen to fail or be cancelled over the range.", "locale",
                   'sum(increase(llm_fine_tuning_jobs_total{service=~"$service",'
                   'status=~"failed|cancelled"}[$__range])) or vector(0)', decimals=0),
        stat_panel("Trained tokens", "Tokens trained by fine-tuning jobs created through "
                   "the gateway that succeeded over the range "
                   "(llm_fine_tuning_trained_tokens_total), of the services and models chosen; "
                   "their fee is in the spend as "
                   'token_type "training".', "locale",
                   'sum(increase(llm_fine_tuning_trained_tokens_total{service=~"$service",'
                   'model=~"$model"}[$__range])) or vector(0)', decimals=0),
    ]
    fine_tuning = [p.span(4) for p in fine_tuning]
    query = InfinityQuery("/api/deployments", [
        *API_RANGE, ("service", "${deployment:csv}"), ("format", "json")], COLUMNS)
    table = api_table(
        "Deployments", "Per deployment over the range, from the gateway's history "
        "(/api/deployments): its type and model, requests, time up within the range (runs "
        "of uptime between health probes, exact across restarts), tokens (of which estimated "
        "where its server reports no usage), GPU hours (time up x GPUs), cost at its hourly "
        "GPU price, and that cost per million tokens and per million output tokens. The "
        "links download it as CSV or Excel; a row opens its requests in the request "
        "history.", query, h=8)
    output = per_deployment(f'increase(llm_tokens_total{{{SERVICE},direction="output"}}'
                            "[$__range])")
    over_time = [
        trend_panel("GPU hours", "GPU hours allocated while up, per bucket of the "
                    "granularity chosen: increase(llm_deployment_gpu_seconds_total) / 3600 "
                    "by deployment.", "short",
                    [promql(f"sum by (deployment) (increase({gpu_seconds}{BUCKET})) / 3600",
                            "{{deployment}}", interval="$granularity")], bars=True),
        trend_panel("GPU cost", "What each deployment's GPU time cost per bucket: "
                    "increase(llm_deployment_cost_usd_total).", "currencyUSD",
                    [promql(f"sum by (deployment) (increase({cost}{BUCKET}))",
                            "{{deployment}}", interval="$granularity")], bars=True),
        trend_panel("Up", "1 while the deployment's health probe answers, 0 while it fails "
                    "(llm_deployment_up).", "short",
                    [promql(f"max by (deployment) (llm_deployment_up{{{DEPLOYMENT}}})",
                            "{{deployment}}")]),
        trend_panel("Output tokens per second", "Output tokens the deployments served: "
                    "rate(llm_tokens_total{direction=\"output\"}) of their services.", "short",
                    [promql(per_deployment(f'rate(llm_tokens_total{{{TRAFFIC},'
                                           'direction="output"}[$__rate_interval])'),
                            "{{deployment}}")]),
    ]
    value = [
        stat_panel("Cost per million output tokens", "GPU cost over the range divided by "
                   "the output tokens served in it, in millions, per deployment: what a "
                   "million generated tokens cost on the team's own GPUs. Empty for a "
                   "deployment that served none.", "currencyUSD",
                   f"sum by (deployment) (increase({cost}[$__range])) / on (deployment) "
                   f"({output} / 1e6 > 0)", w=6, h=6),
        stat_panel("At a hosted list price", "The same traffic costed at the list price of "
                   "the hosted model each deployment is compared to (its compare_to: "
                   "llm_deployment_hosted_equivalent_usd_total, every token category at that "
                   "model's price), per million output tokens: beside the panel on its left, "
                   "what serving it yourself saves or costs. Empty without a compare_to.",
                   "currencyUSD",
                   f"sum by (deployment) (increase(llm_deployment_hosted_equivalent_usd_total"
                   f"{{{DEPLOYMENT}}}[$__range])) / on (deployment) ({output} / 1e6 > 0)",
                   w=6, h=6),
        stat_panel("GPU utilisation (DCGM)", "Needs NVIDIA's DCGM exporter scraped by the "
                   "same Prometheus, its series labelled with `deployment` "
                   "(docs/deployments.md); shows nothing without it. The average of "
                   "DCGM_FI_DEV_GPU_UTIL over the range, per deployment.", "percent",
                   f"avg by (deployment) (avg_over_time(DCGM_FI_DEV_GPU_UTIL{{{DEPLOYMENT}}}"
                   "[$__range]))", w=6, h=6, decimals=0),
        stat_panel("Idle GPU hours (DCGM)", "Needs the DCGM exporter, as GPU utilisation "
                   "does. GPU hours allocated but unused over the range: each GPU's idle "
                   "share (1 - utilisation) summed minute by minute while its series exists, "
                   "in hours, per deployment.", "short",
                   f"sum by (deployment) (sum_over_time((1 - DCGM_FI_DEV_GPU_UTIL{{"
                   f"{DEPLOYMENT}}} / 100)[$__range:1m])) / 60", w=6, h=6, decimals=1),
    ]
    variables = common_variables() + [
        # All is every deployment found, not .*: the usage metrics' `service` matcher
        # takes it too, and .* would count the hosted services as deployments.
        filter_variable("deployment", "Deployment", "", "llm_deployment_info", None),
        api_variable(),
        granularity_variable(), gateway_url_variable()]
    return dashboard(
        UID, "LLM deployments",
        "The models the team serves on its own GPUs: which are up, the GPU hours they hold "
        "and their cost, their traffic, and what a million tokens costs on them. GPU time "
        "and cost follow the Deployment variable; traffic also the Model, API key and "
        "Project; fine-tuning jobs (run on hosted APIs) the Service.",
        variables, [("Deployments", totals + [table.links(download_links(query)).data_links(
            history_link(service="Name"))]),
                    ("Fine-tuning (hosted APIs)", fine_tuning),
                    ("Over time", over_time), ("Value for money", value)])
