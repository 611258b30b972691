"""The usage API's aggregates: requests, tokens, fees and latency by model, key, service,
provider and time bucket, in any time zone, and top-N rankings.

Read from the usage rollup (rollup.py) for the range's whole quarter hours and from the
rows for its edges, summed as one: a month costs its rollup rows, not its requests. The
rows alone answer what the rollup cannot: a request id, minute and 5-minute buckets, a
zone whose offsets fall between quarter hours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from .query import (
    GROUP_COLUMNS,
    SUCCESSES,
    TAG_KEY,
    BadParameter,
    Filters,
    parse_int,
)
from .rollup import BUCKET, FROM_ROLLUP, FROM_ROWS
from .schema import TOKEN_COLUMNS
from .zones import SIZES, bucket_end, bucket_sql, bucket_starts, offset_segments, wall_to_utc

# The usage query's own parameters, beside the filters.
PARAMS = frozenset(("group_by", "granularity", "order", "limit", "format"))
ROWS_ONLY = frozenset(("request_id", "end_user"))  # columns the rollup does not keep
# Each granularity's bucket (zones.py); 1m, 1h and 1d as well: the values of the
# dashboards' granularity variable.
GRANULARITIES = {"none": None, "minute": "minute", "5m": "5m", "hour": "hour", "day": "day",
                 "week": "week", "month": "month", "1m": "minute", "1h": "hour", "1d": "day"}
# Buckets of one group a table may ask for: 1m over a week is 10,080 (10,140 with the hour
# a clock change adds); over 30 days 43,200 per model and key, rows no table can show.
MAX_BUCKETS = 7 * 24 * 60 + 60
# Sums of integers as bigint: PostgreSQL's sum of bigint is numeric (a Decimal).
TOTAL_TOKENS = " + ".join(f"CAST(sum({c}) AS BIGINT)" for c in TOKEN_COLUMNS)
# order= name -> (the output column, the aggregate that computes it)
ORDERS = {"tokens": ("total_tokens", TOTAL_TOKENS), "fee": ("fee_usd", "sum(fee_usd)"),
          "requests": ("requests", "sum(requests)")}
SUMMED = ", ".join(
    ["coalesce(CAST(sum(requests) AS BIGINT), 0) AS requests",
     "CAST(sum(successful) AS BIGINT) AS successful",
     *(f"CAST(sum({c}) AS BIGINT) AS {c}" for c in TOKEN_COLUMNS),
     f"{TOTAL_TOKENS} AS total_tokens",
     "CAST(sum(estimated_tokens) AS BIGINT) AS estimated_tokens",
     "CAST(sum(web_search_calls) AS BIGINT) AS web_search_calls",
     "sum(audio_seconds) AS audio_seconds",
     "CAST(sum(input_characters) AS BIGINT) AS input_characters",
     "sum(fee_usd) AS fee_usd", "sum(duration_ms) / sum(rows_n) AS avg_latency_ms",
     "sum(ttft_ms) / NULLIF(sum(ttft_n), 0) AS avg_ttft_ms"])


@dataclass(frozen=True)
class UsageQuery:
    filters: Filters
    group_by: tuple = ()
    granularity: str = "none"
    order: str = "tokens"
    limit: int | None = None

    @classmethod
    def parse(cls, params, now: float) -> UsageQuery:
        filters = Filters.parse(params, now, PARAMS)
        group_by = tuple(g for g in (params.get("group_by") or "").split(",") if g)
        for g in group_by:
            if g not in GROUP_COLUMNS and not (g.startswith("tag:") and TAG_KEY.fullmatch(g[4:])):
                raise BadParameter("group_by", f"{g!r} is not one of "
                                   f"{', '.join(GROUP_COLUMNS)} or tag:KEY")
        granularity = params.get("granularity", "none")
        if granularity not in GRANULARITIES:
            raise BadParameter("granularity", f"must be one of {', '.join(GRANULARITIES)}")
        order = params.get("order", "tokens")
        if order not in ORDERS:
            raise BadParameter("order", f"must be one of {', '.join(ORDERS)}")
        # 0 is refused as /api/requests refuses it: no limit is no `limit`.
        limit = parse_int(params, "limit", 0, 1, 1_000_000) if "limit" in params else None
        return cls(filters, group_by, granularity, order, limit)

    def check_buckets(self) -> None:
        """Refuse more buckets than a table can show (JSON, for dashboards; a download
        streams what it is asked for)."""
        f, bucket = self.filters, GRANULARITIES[self.granularity]
        if bucket is None:
            return
        buckets = math.ceil((f.end - f.start) / SIZES[bucket]) if bucket in SIZES \
            else len(bucket_starts(bucket, f.tz, f.start, f.end))
        if buckets > MAX_BUCKETS:
            raise BadParameter("granularity", f"{self.granularity} over this range is "
                               f"{buckets:,} buckets, past the {MAX_BUCKETS:,} a table can "
                               "show: choose a coarser granularity or a shorter range")

    def rolled(self) -> tuple[float, float] | None:
        """The whole quarter hours of the range the rollup can answer for, if any."""
        f = self.filters
        bucket = GRANULARITIES[self.granularity]
        # A calendar week or month starts at a local midnight, as a day does.
        size = SIZES.get(bucket, 86400) if bucket else None
        if any(column in ROWS_ONLY for column, _ in f.equal) or size and size % BUCKET \
                or f.tags or any(g == "user" or g.startswith("tag:") for g in self.group_by):
            return None  # what the rollup does not keep: a request id, a user, tags
        if size:  # a local hour or day must be whole quarter hours of UTC
            segments = offset_segments(f.tz, f.start, f.end)
            if any(offset % BUCKET for _, offset in segments) or \
                    any(at % BUCKET for at, _ in segments[1:]):
                return None
        first, last = math.ceil(f.start / BUCKET) * BUCKET, math.floor(f.end / BUCKET) * BUCKET
        return (first, last) if first < last else None

    def source(self) -> tuple[str, list]:
        """Every matching row's sums, from the rows and the rollup: one table to aggregate."""
        f = self.filters
        rolled = self.rolled()
        if rolled is None:
            where, args = f.where()
            return f"SELECT {FROM_ROWS}, end_user, tags, {_successful('1 - share')} " \
                   f"FROM requests WHERE {where}", args
        first, last = rolled
        edges = [(a, b) for a, b in ((f.start, first), (last, f.end)) if a < b]
        parts, args = [], []
        if edges:
            where, edge_args = f.where(ranges=edges)
            parts.append(f"SELECT {FROM_ROWS}, {_successful('1 - share')} FROM requests "
                         f"WHERE {where}")
            args += edge_args
        where, rollup_args = f.where("bucket", [rolled])
        parts.append(f"SELECT {FROM_ROLLUP}, {_successful('requests')} FROM usage_rollup "
                     f"WHERE {where}")
        return " UNION ALL ".join(parts), args + rollup_args

    def sql(self, dialect) -> tuple[str, list]:
        source, args = self.source()
        exprs = [_group_sql(g, dialect) for g in self.group_by]
        cols = ", ".join(exprs)  # grouped by; named in the result as _name() says
        names = ", ".join(map(_name, self.group_by))
        select, group = [], []
        f, bucket = self.filters, GRANULARITIES[self.granularity]
        bucket_args = []
        if bucket:
            wall, bucket_args = bucket_sql(bucket, f.tz, f.start, f.end, "t", dialect.floor)
            select.append(f"{wall} AS bucket")
            group.append("bucket")
        if cols:
            select += [e if e == _name(g) else f"{e} AS {_name(g)}"
                       for g, e in zip(self.group_by, exprs, strict=True)]
            group.append(cols)
        top, top_args = "", []
        if self.limit and cols and bucket:  # top N groups over the range, then their buckets
            top = (f" WHERE ({cols}) IN (SELECT {cols} FROM ({source}) AS ranked "
                   f"GROUP BY {cols} ORDER BY {ORDERS[self.order][1]} DESC, {cols} "
                   f"LIMIT {self.limit})")  # ties go by name: the same on both engines
            top_args = list(args)
        sql = f"SELECT {', '.join(select + [SUMMED])} FROM ({source}) AS s{top}"
        if group:
            sql += f" GROUP BY {', '.join(group)}"
        order = (["bucket"] if bucket else []) + [f"{ORDERS[self.order][0]} DESC"] \
            + ([names] if names else [])
        sql += f" ORDER BY {', '.join(order)}"
        if self.limit and not (cols and bucket):
            sql += f" LIMIT {self.limit}"
        return sql, bucket_args + args + top_args

    def finish(self, row: dict) -> dict:
        """Add what SQL cannot: bucket times in the zone, failures, success rate, QPS."""
        f = self.filters
        out = {}
        start, end = f.start, f.end
        if "bucket" in row:
            wall = row.pop("bucket")
            bucket = GRANULARITIES[self.granularity]
            start = max(wall_to_utc(wall, f.tz), f.start)
            end = min(wall_to_utc(bucket_end(bucket, wall), f.tz), f.end)
            out["time"] = datetime.fromtimestamp(wall_to_utc(wall, f.tz), f.tz).isoformat()
        for c in self.group_by:
            value = row.pop(_name(c))
            out[c] = None if value == "" and _coalesced(c) else value
        requests, successful = row["requests"], row["successful"] or 0
        out.update(requests=requests, successful=successful, failed=requests - successful,
                   success_rate=successful / requests if requests else None)
        out.update(row)
        out["fee_usd"] = round(out["fee_usd"] or 0.0, 10)
        out["qps"] = requests / (end - start) if end > start else None
        # Per request: none without requests (a fine-tuning's training fee has none).
        out["tokens_per_request"] = out["total_tokens"] / requests if requests else None
        out["fee_per_request"] = round(out["fee_usd"] / requests, 10) if requests else None
        return out


def _name(group: str) -> str:
    """A group's column in the SQL's result: user is end_user (PostgreSQL keeps the word
    for itself), tag:feature is tag_feature."""
    return "end_user" if group == "user" else group.replace(":", "_")


def _coalesced(group: str) -> bool:
    """Whether a group's missing value is '' in the SQL (_group_sql), None in answers."""
    return group == "user" or group.startswith("tag:")


def _group_sql(group: str, dialect) -> str:
    """What a group_by value groups by: a column, or a tag's value in the JSON. A request
    with no user or no such tag is the group '' (None in the answer): NULL would never be
    IN the top N, and the engines sort it apart."""
    if group.startswith("tag:"):
        return f"coalesce({dialect.tag(group[4:])}, '')"  # TAG_KEY's letters: safe in SQL
    if group == "user":
        return "coalesce(end_user, '')"
    return group


def _successful(requests: str) -> str:
    """The successful requests among `requests` (an answer whose bill failed is one)."""
    return f"CASE WHEN error_type IN {SUCCESSES} THEN {requests} ELSE 0 END AS successful"
