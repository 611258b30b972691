"""The deployments table of a time range (seed 001): runtime, GPU hours, cost, traffic.

A range's duration is its overlap with each run of uptime the prober wrote (the
deployment_uptime ledger), so it is exact for any range and time zone, across restarts.
"""

from __future__ import annotations

from .export import INPUT_COLUMNS, OUTPUT_COLUMNS, Rows
from .query import Filters

DEPLOYMENT_COLUMNS = ("deployment", "type", "model", "requests", "duration",
                      "duration_seconds", "input_tokens", "output_tokens", "total_tokens",
                      "estimated_tokens", "gpu_hours", "cost_usd", "usd_per_million_tokens",
                      "usd_per_million_output_tokens")
_OVERLAP = "max(0, min(ended_at, :to) - max(started_at, :from))"


def deployments_sql(filters: Filters) -> tuple[str, dict]:
    """One row per deployment up at some time in the range (its `service` filter applies)."""
    services = dict(filters.equal).get("service")
    only = ""
    args: dict = {"from": filters.start, "to": filters.end}
    if services:
        only = f"AND deployment IN ({', '.join(f':s{i}' for i in range(len(services)))})"
        args.update({f"s{i}": s for i, s in enumerate(services)})
    return (f"""
WITH runs AS (
    SELECT deployment, sum({_OVERLAP}) AS duration_seconds,
           sum({_OVERLAP} * gpus) / 3600.0 AS gpu_hours,
           sum({_OVERLAP} * gpus * gpu_hourly_usd) / 3600.0 AS cost_usd
    FROM deployment_uptime WHERE ended_at > :from AND started_at < :to {only}
    GROUP BY deployment),
latest AS (  -- the model and type of the range's latest run
    SELECT deployment, model, type FROM deployment_uptime AS u
    WHERE started_at = (SELECT max(started_at) FROM deployment_uptime
                        WHERE deployment = u.deployment AND ended_at > :from
                            AND started_at < :to)),
traffic AS (
    SELECT service AS deployment, sum(1 - share) AS requests,
           sum({' + '.join(INPUT_COLUMNS)}) AS input_tokens,
           sum({' + '.join(OUTPUT_COLUMNS)}) AS output_tokens,
           sum(estimated_input + estimated_output) AS estimated_tokens
    FROM requests WHERE started_at >= :from AND started_at < :to
        AND service IN (SELECT deployment FROM runs)
    GROUP BY service)
SELECT runs.deployment, type, model, coalesce(requests, 0) AS requests, duration_seconds,
       coalesce(input_tokens, 0) AS input_tokens, coalesce(output_tokens, 0) AS output_tokens,
       coalesce(estimated_tokens, 0) AS estimated_tokens, gpu_hours, cost_usd
FROM runs JOIN latest USING (deployment) LEFT JOIN traffic USING (deployment)
ORDER BY runs.deployment""", args)


def deployment_rows(path: str, filters: Filters) -> Rows:
    def convert(row: dict) -> dict:
        seconds = row["duration_seconds"] = round(row["duration_seconds"], 3)
        minutes = int(seconds // 60)
        row["duration"] = f"{minutes // 60} h {minutes % 60:02d} min"
        total = row["total_tokens"] = row["input_tokens"] + row["output_tokens"]
        cost = row["cost_usd"] = round(row["cost_usd"], 10)
        row["gpu_hours"] = round(row["gpu_hours"], 10)
        row["usd_per_million_tokens"] = round(cost / total * 1e6, 10) if total else None
        output = row["output_tokens"]
        row["usd_per_million_output_tokens"] = round(cost / output * 1e6, 10) if output \
            else None
        return row

    sql, args = deployments_sql(filters)
    return Rows(path, sql, args, convert)
