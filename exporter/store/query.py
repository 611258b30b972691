"""History queries: filters, time-zone buckets and aggregates, as SQL with parameters.

SQLite knows nothing of IANA time zones, so the offsets in force over the queried range
are worked out here (every DST change found to the second) and applied in SQL with a CASE,
on PostgreSQL too, so both engines put a bucket's edges at the same instant:
`tz=Asia/Shanghai&granularity=day` puts day boundaries at Shanghai's midnight.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..record import SUCCESSES as SUCCEEDED

GROUP_COLUMNS = ("model", "api_key", "service", "provider", "project", "user")
# A parameter's column where the two differ: `user` is a word PostgreSQL keeps for itself.
COLUMN_OF = {"user": "end_user"}
# Filters: each takes one value or a comma-separated list (what Grafana's ${var:csv} sends),
# but request_id, which takes one; and tag=KEY:VALUE[,KEY:VALUE] (each must hold).
FILTER_COLUMNS = GROUP_COLUMNS + ("operation", "request_id")
TAG_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}")  # as the config's attribution.tag_labels
# Every parameter a history query reads (the routes add theirs): any other is refused, so
# that a filter misspelt, or one the API lacks, is never silently ignored.
FILTER_PARAMS = frozenset((*FILTER_COLUMNS, "tag", "from", "to", "tz", "status"))
# "No filter", as Grafana sends a multi-value variable's All: its custom all value (.*, *)
# or its internal one.
ALL_VALUES = frozenset(("*", ".*", "$__all"))
# Times as numbers: Unix seconds, or milliseconds (Grafana's ${__from}) from here on: 1e11
# seconds is in the year 5138, 1e11 milliseconds in 1973.
MILLISECONDS_FROM = 1e11
EARLIEST, LATEST = 0.0, 7258118400.0  # 1970-01-01 and 2200-01-01, in Unix seconds
DEFAULT_RANGE = 86400  # the last 24 hours


# What the client got as a success (record.SUCCESSES), as SQL.
SUCCESSES = "(" + ", ".join(f"'{e}'" for e in SUCCEEDED) + ")"


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
    tags: tuple = ()  # (key, value): the request has the tag

    @classmethod
    def parse(cls, params, now: float, known: frozenset[str] = frozenset()) -> Filters:
        """Read a query's filters; a parameter neither a filter nor `known` (the route's
        own) is refused."""
        for name in params:
            if name not in FILTER_PARAMS and name not in known:
                raise BadParameter(name, f"unknown parameter (known: "
                                         f"{', '.join(sorted(FILTER_PARAMS | known))})")
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
                equal.append((COLUMN_OF.get(column, column), values))
        return cls(start, end, tz, tuple(equal), status, parse_tags(params.get("tag")))

    def where(self, column: str = "started_at", ranges=None) -> tuple[str, list]:
        """SQL and its parameters: the Unix time `column` in the range (or in any of
        `ranges`, [from, to) each), every label filter and the status."""
        ranges = ranges or [(self.start, self.end)]
        sql = ["(" + " OR ".join(f"{column} >= ? AND {column} < ?" for _ in ranges) + ")"]
        args = [t for r in ranges for t in r]
        for name, values in self.equal:
            sql.append(f"{name} = ?" if len(values) == 1
                       else f"{name} IN ({', '.join('?' * len(values))})")
            args += values
        if self.status == "success":
            sql.append(f"error_type IN {SUCCESSES}")
        elif self.status == "error":
            sql.append(f"error_type NOT IN {SUCCESSES}")
        elif self.status is not None:
            sql.append("status = ?")
            args.append(int(self.status))
        for key, value in self.tags:  # the tag's text, as rows.tags_text writes it, is there
            sql.append("replace(tags, ?, '') <> tags")
            args.append(f"{json.dumps(key)}:{json.dumps(value)}")
        return " AND ".join(sql), args


def parse_tags(value: str | None) -> tuple[tuple[str, str], ...]:
    """tag=feature:search,env:prod: the tags a request must have, each."""
    if not value or value in ALL_VALUES:
        return ()
    tags = []
    for pair in value.split(","):
        key, colon, tag = pair.partition(":")
        if not colon or not TAG_KEY.fullmatch(key) or not tag:
            raise BadParameter("tag", f"{pair!r} is not KEY:VALUE (e.g. feature:search)")
        tags.append((key, tag))
    return tuple(tags)


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
