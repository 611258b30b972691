"""History queries: filters, time-zone buckets and aggregates, as SQL with parameters.

SQLite knows nothing of IANA time zones, so the offsets in force over the queried range
are worked out here (every DST change found to the second) and applied in SQL with a CASE,
on PostgreSQL too, so both engines put a bucket's edges at the same instant:
`tz=Asia/Shanghai&granularity=day` puts day boundaries at Shanghai's midnight.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .schema import TOKEN_COLUMNS
from .zones import local_time_sql, offset_segments, wall_to_utc

# 1m, 1h and 1d as well: the values of the dashboards' granularity variable.
GRANULARITIES = {"none": None, "minute": 60, "5m": 300, "hour": 3600, "day": 86400,
                 "1m": 60, "1h": 3600, "1d": 86400}
GROUP_COLUMNS = ("model", "api_key", "service", "provider")
# Filters: each takes one value or a comma-separated list (what Grafana's ${var:csv} sends),
# but request_id, which takes one.
FILTER_COLUMNS = GROUP_COLUMNS + ("operation", "request_id")
# "No filter", as Grafana sends a multi-value variable's All: its custom all value (.*, *)
# or its internal one.
ALL_VALUES = frozenset(("*", ".*", "$__all"))
# Times as numbers: Unix seconds, or milliseconds (Grafana's ${__from}) from here on: 1e11
# seconds is in the year 5138, 1e11 milliseconds in 1973.
MILLISECONDS_FROM = 1e11
EARLIEST, LATEST = 0.0, 7258118400.0  # 1970-01-01 and 2200-01-01, in Unix seconds
DEFAULT_RANGE = 86400  # the last 24 hours
TOTAL_TOKENS = " + ".join(f"sum({c})" for c in TOKEN_COLUMNS)
# order= name -> (the output column, the aggregate that computes it)
ORDERS = {"tokens": ("total_tokens", TOTAL_TOKENS), "fee": ("fee_usd", "sum(fee_usd)"),
          "requests": ("requests", "sum(1 - share)")}


# What the client got as a success: accounting_error is an answer whose bill failed (as
# the alerts' recording rules judge it).
SUCCESSES = "('none', 'accounting_error')"


class BadParameter(ValueError):
    """A query parameter that cannot be used; answered with 400 naming it."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name


def parse_tz(value: str | None) -> ZoneInfo:
    if not value or value.lower() == "utc":  # Grafana's ${__timezone} says "utc"
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadParameter("tz", f"unknown IANA time zone {value!r} (e.g. Europe/Paris)") \
            from None


def parse_time(name: str, value: str, tz: ZoneInfo) -> float:
    """Read Unix seconds or milliseconds, or ISO 8601; a time without an offset is in `tz`."""
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None:
        seconds = number / 1000 if abs(number) >= MILLISECONDS_FROM else number
    else:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise BadParameter(name, f"{value!r} is neither Unix seconds or milliseconds nor "
                                     "ISO 8601 (e.g. 2026-11-01 or 2026-11-01T08:00:00+01:00)"
                               ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=tz)
        seconds = moment.timestamp()
    if not EARLIEST <= seconds <= LATEST:  # also keeps NaN and infinities out
        raise BadParameter(name, f"{value!r} is not between 1970 and 2200")
    return seconds


def parse_int(params, name: str, default: int, low: int, high: int) -> int:
    value = params.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadParameter(name, f"{value!r} is not a whole number") from None
    if not low <= number <= high:
        raise BadParameter(name, f"must be from {low} to {high}")
    return number


@dataclass(frozen=True)
class Filters:
    """What every history query is narrowed by: a time range and label values."""

    start: float
    end: float
    tz: ZoneInfo
    equal: tuple = ()  # (column, (value, ...)): the column is one of the values
    status: str | None = None

    @classmethod
    def parse(cls, params, now: float) -> Filters:
        tz = parse_tz(params.get("tz"))
        end = parse_time("to", params["to"], tz) if params.get("to") else now
        start = parse_time("from", params["from"], tz) if params.get("from") \
            else end - DEFAULT_RANGE
        if start >= end:
            raise BadParameter("from", "must be before `to`")
        status = params.get("status") or None
        if status in ALL_VALUES:
            status = None
        if status is not None and status not in ("success", "error") and not (
                status.isdigit() and 100 <= int(status) <= 599):
            raise BadParameter("status", "must be success, error or an HTTP status code")
        equal = []
        for column in FILTER_COLUMNS:
            value = params.get(column) or ""
            # A request id is one value: a client's own X-Request-ID may hold a comma.
            values = tuple(dict.fromkeys(
                v for v in (value.split(",") if column != "request_id" else [value]) if v))
            if values and not ALL_VALUES.intersection(values):
                equal.append((column, values))
        return cls(start, end, tz, tuple(equal), status)

    def where(self) -> tuple[str, list]:
        sql, args = ["started_at >= ?", "started_at < ?"], [self.start, self.end]
        for column, values in self.equal:
            sql.append(f"{column} = ?" if len(values) == 1
                       else f"{column} IN ({', '.join('?' * len(values))})")
            args += values
        if self.status == "success":
            sql.append(f"error_type IN {SUCCESSES}")
        elif self.status == "error":
            sql.append(f"error_type NOT IN {SUCCESSES}")
        elif self.status is not None:
            sql.append("status = ?")
            args.append(int(self.status))
        return " AND ".join(sql), args


@dataclass(frozen=True)
class UsageQuery:
    filters: Filters
    group_by: tuple = ()
    granularity: str = "none"
    order: str = "tokens"
    limit: int | None = None

    @classmethod
    def parse(cls, params, now: float) -> UsageQuery:
        filters = Filters.parse(params, now)
        group_by = tuple(g for g in (params.get("group_by") or "").split(",") if g)
        for g in group_by:
            if g not in GROUP_COLUMNS:
                raise BadParameter("group_by", f"{g!r} is not one of {', '.join(GROUP_COLUMNS)}")
        granularity = params.get("granularity", "none")
        if granularity not in GRANULARITIES:
            raise BadParameter("granularity", f"must be one of {', '.join(GRANULARITIES)}")
        order = params.get("order", "tokens")
        if order not in ORDERS:
            raise BadParameter("order", f"must be one of {', '.join(ORDERS)}")
        # 0 is refused as /api/requests refuses it: no limit is no `limit`.
        limit = parse_int(params, "limit", 0, 1, 1_000_000) if "limit" in params else None
        return cls(filters, group_by, granularity, order, limit)

    def sql(self, dialect) -> tuple[str, list]:
        where, args = self.filters.where()
        cols = ", ".join(self.group_by)
        select, group = [], []
        size = GRANULARITIES[self.granularity]
        bucket_args = []
        if size:
            local, bucket_args = local_time_sql(offset_segments(
                self.filters.tz, self.filters.start, self.filters.end))
            select.append(f"{dialect.floor(f'{local} / {size}')} * {size} AS bucket")
            group.append("bucket")
        if cols:
            select.append(cols)
            group.append(cols)
        # A share row (a batch's further model, a job's training) is no request of its own.
        select += ["coalesce(sum(1 - share), 0) AS requests",
                   f"count(*) FILTER (WHERE error_type IN {SUCCESSES} AND share = 0) "
                   "AS successful",
                   *(f"sum({c}) AS {c}" for c in TOKEN_COLUMNS),
                   f"{TOTAL_TOKENS} AS total_tokens",
                   "sum(estimated_input + estimated_output) AS estimated_tokens",
                   "sum(web_search_calls) AS web_search_calls",
                   "sum(audio_seconds) AS audio_seconds",
                   "sum(input_characters) AS input_characters",
                   "sum(fee_usd) AS fee_usd", "avg(duration_ms) AS avg_latency_ms",
                   "avg(ttft_ms) AS avg_ttft_ms"]
        top, top_args = "", []
        if self.limit and cols and size:  # top N groups over the range, then their buckets
            top = (f" AND ({cols}) IN (SELECT {cols} FROM requests WHERE {where} "
                   f"GROUP BY {cols} ORDER BY {ORDERS[self.order][1]} DESC "
                   f"LIMIT {self.limit})")
            top_args = list(args)
        sql = f"SELECT {', '.join(select)} FROM requests WHERE {where}{top}"
        if group:
            sql += f" GROUP BY {', '.join(group)}"
        order = (["bucket"] if size else []) + [f"{ORDERS[self.order][0]} DESC"] \
            + ([cols] if cols else [])
        sql += f" ORDER BY {', '.join(order)}"
        if self.limit and not (cols and size):
            sql += f" LIMIT {self.limit}"
        return sql, bucket_args + args + top_args

    def finish(self, row: dict) -> dict:
        """Add what SQL cannot: bucket times in the zone, failures, success rate, QPS."""
        f = self.filters
        out = {}
        start, end = f.start, f.end
        if "bucket" in row:
            wall = row.pop("bucket")
            size = GRANULARITIES[self.granularity]
            start = max(wall_to_utc(wall, f.tz), f.start)
            end = min(wall_to_utc(wall + size, f.tz), f.end)
            out["time"] = datetime.fromtimestamp(wall_to_utc(wall, f.tz), f.tz).isoformat()
        out.update((c, row.pop(c)) for c in self.group_by)
        requests, successful = row["requests"], row["successful"] or 0
        out.update(requests=requests, successful=successful, failed=requests - successful,
                   success_rate=successful / requests if requests else None)
        out.update(row)
        out["fee_usd"] = round(out["fee_usd"] or 0.0, 10)
        out["qps"] = requests / (end - start) if end > start else None
        return out


def requests_sql(filters: Filters, limit: int | None, cursor: str | None,
                 rowid: str) -> tuple[str, list]:
    """Newest first; the cursor is where the previous page ended (keyset pagination on
    the start time and `rowid`, the engine's row number)."""
    where, args = filters.where()
    if cursor:
        where += f" AND (started_at, {rowid}) < (?, ?)"
        args += list(decode_cursor(cursor))
    sql = (f"SELECT {rowid} AS rowid, * FROM requests WHERE {where} "
           f"ORDER BY started_at DESC, {rowid} DESC")
    if limit:
        sql += f" LIMIT {int(limit)}"
    return sql, args


def encode_cursor(started_at: float, rowid: int) -> str:
    return base64.urlsafe_b64encode(f"{started_at!r}:{rowid}".encode()).decode()


def decode_cursor(value: str) -> tuple[float, int]:
    try:
        started, _, rowid = base64.urlsafe_b64decode(value.encode()).decode().partition(":")
        return float(started), int(rowid)
    except (ValueError, UnicodeDecodeError):
        raise BadParameter("cursor", "not a cursor this API returned") from None
