"""The deployments table of a time range, as cloud platforms show it: runtime, GPU hours,
cost, traffic.

A range's duration is its overlap with each run of uptime the prober wrote (the
deployment_uptime ledger), so it is exact for any range and time zone, across restarts.
"""

from __future__ import annotations

from .database import Database
from .query import Filters
from .reads import INPUT_COLUMNS, OUTPUT_COLUMNS, Rows

DEPLOYMENT_COLUMNS = ("deployment", "type", "model", "requests", "duration",
                      "duration_seconds", "input_tokens", "output_tokens", "total_tokens",
                      "estimated_tokens", "gpu_hours", "cost_usd", "usd_per_million_tokens",
                      "usd_per_million_output_tokens")


def deployments_sql(filters: Filters, dialect) -> tuple[str, list]:
    """One row per deployment up at some time in the range (its `service` filter applies)."""
    services = dict(filters.equal).get("service") or ()
    start, end = filters.start, filters.end
    only = f"AND deployment IN ({', '.join('?' * len(services))})" if services else ""
    overlap = dialect.greatest("0", f"{dialect.least('ended_at', '?')} - "
                                    f"{dialect.greatest('started_at', '?')}")
    # Each overlap reads the range's end, then its start.
    runs_args = [end, start] * 3 + [start, end, *services]
    return (f"""
WITH runs AS (
    SELECT deployment, sum({overlap}) AS duration_seconds,
           sum({overlap} * gpus) / 3600.0 AS gpu_hours,
           sum({overlap} * gpus * gpu_hourly_usd) / 3600.0 AS cost_usd
    FROM deployment_uptime WHERE ended_at > ? AND started_at < ? {only}
    GROUP BY deployment),
latest AS (  -- the model and type of the range's latest run
    SELECT deployment, model, type FROM deployment_uptime AS u
    WHERE started_at = (SELECT max(started_at) FROM deployment_uptime
                        WHERE deployment = u.deployment AND ended_at > ?
                            AND started_at < ?)),
traffic AS (
    SELECT service AS deployment, sum(1 - share) AS requests,
           sum({' + '.join(INPUT_COLUMNS)}) AS input_tokens,
           sum({' + '.join(OUTPUT_COLUMNS)}) AS output_tokens,
           sum(estimated_input + estimated_output) AS estimated_tokens
    FROM requests WHERE started_at >= ? AND started_at < ?
        AND service IN (SELECT deployment FROM runs)
    GROUP BY service)
SELECT runs.deployment, type, model, coalesce(requests, 0) AS requests, duration_seconds,
       coalesce(input_tokens, 0) AS input_tokens, coalesce(output_tokens, 0) AS output_tokens,
       coalesce(estimated_tokens, 0) AS estimated_tokens, gpu_hours, cost_usd
FROM runs JOIN latest USING (deployment) LEFT JOIN traffic USING (deployment)
ORDER BY runs.deployment""", runs_args + [start, end, start, end])


def deployment_rows(db: Database, filters: Filters) -> Rows:
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

    sql, args = deployments_sql(filters, db.dialect)
    return Rows(db, sql, args, convert)
