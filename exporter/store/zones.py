"""Time zones in SQL: SQLite knows none, so the UTC offsets in force over a range are
worked out here, every DST change found to the second, and applied with a CASE; and the
buckets of a granularity in a zone, calendar weeks and months among them."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo


def offset_segments(tz: ZoneInfo, start: float, end: float) -> list[tuple[float, int]]:
    """Return [(from_time, utc_offset_seconds)] covering [start, end), every change exact."""

    def offset(t: float) -> int:
        return int(datetime.fromtimestamp(t, tz).utcoffset().total_seconds())

    segments = [(start, offset(start))]
    hour = math.floor(start / 3600) * 3600 + 3600
    while hour <= end:
        current = offset(hour)
        if current != segments[-1][1]:
            low, high = max(hour - 3600, start), hour  # the change lies in (low, high]
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (middle, high) if offset(middle) == segments[-1][1] \
                    else (low, middle)
            segments.append((high, current))
        hour += 3600
    return segments


def local_time_sql(segments, column: str = "started_at") -> tuple[str, list]:
    """SQL for the Unix time `column` in local 'wall clock' seconds, with its parameters."""
    if len(segments) == 1:
        return f"({column} + ?)", [segments[0][1]]
    sql, args = [f"({column} + CASE"], []
    for (_, off), (nxt, _) in pairwise(segments):
        sql.append(f"WHEN {column} < ? THEN ?")
        args += [nxt, off]
    sql.append("ELSE ? END)")
    args.append(segments[-1][1])
    return " ".join(sql), args


def wall_to_utc(wall: float, tz: ZoneInfo) -> float:
    """Turn local wall-clock seconds back into a Unix time (earlier fold when ambiguous)."""
    naive = datetime.fromtimestamp(wall, UTC).replace(tzinfo=None)
    return naive.replace(tzinfo=tz).timestamp()


def periods(now: float, tz) -> dict[str, tuple[float, float]]:
    """The current calendar day and month in zone `tz`: (start, end) as Unix times."""
    today = datetime.fromtimestamp(now, tz).replace(hour=0, minute=0, second=0, microsecond=0,
                                                    tzinfo=None)
    month = today.replace(day=1)
    next_month = _following(month, "month")
    # Local midnights, each with the offset in force then (a DST change may lie between).
    return {period: (a.replace(tzinfo=tz).timestamp(), b.replace(tzinfo=tz).timestamp())
            for period, (a, b) in (("day", (today, today + timedelta(days=1))),
                                   ("month", (month, next_month)))}




# Seconds of wall clock per bucket; a week starts on Monday (ISO 8601), a month on its 1st:
# of uneven lengths, their buckets are cut at their starts (bucket_sql).
SIZES = {"minute": 60, "5m": 300, "hour": 3600, "day": 86400}
CALENDAR = ("week", "month")


def _wall(t: float, tz: ZoneInfo) -> float:
    return t + datetime.fromtimestamp(t, tz).utcoffset().total_seconds()


def _following(first: datetime, granularity: str) -> datetime:
    """The start of the calendar week or month after the one starting at `first`."""
    return first + timedelta(days=7) if granularity == "week" \
        else (first + timedelta(days=32)).replace(day=1)


def bucket_starts(granularity: str, tz: ZoneInfo, start: float, end: float) -> list[float]:
    """The local wall-clock start of every bucket the range [start, end) touches, as the
    usage query labels them: empty ones too, a wall time a DST change skips left out."""
    if granularity in SIZES:
        size = SIZES[granularity]
        walls = list(range(math.floor(_wall(start, tz) / size) * size,
                           math.ceil(_wall(end, tz)), size))
    else:
        first = datetime.fromtimestamp(_wall(start, tz), UTC).replace(
            hour=0, minute=0, second=0, microsecond=0)
        first = first - timedelta(days=first.weekday()) if granularity == "week" \
            else first.replace(day=1)
        walls = []
        while wall_to_utc(first.timestamp(), tz) < end:
            walls.append(int(first.timestamp()))
            first = _following(first, granularity)
    # A wall time that does not exist (the hour a spring DST change skips) has no bucket.
    return [w for w in walls if _wall(wall_to_utc(w, tz), tz) == w]


def bucket_sql(granularity: str, tz: ZoneInfo, start: float, end: float, column: str,
               floor) -> tuple[str, list]:
    """SQL for the local wall-clock start of the bucket holding the Unix time `column`,
    with its parameters: the wall clock floored by the size (`floor`, the dialect's), or,
    for a calendar week or month, the start of the last one begun by then."""
    if granularity in SIZES:
        local, args = local_time_sql(offset_segments(tz, start, end), column)
        size = SIZES[granularity]
        return f"{floor(f'{local} / {size}')} * {size}", args
    walls = bucket_starts(granularity, tz, start, end)
    if len(walls) == 1:
        return "CAST(? AS BIGINT)", walls
    sql, args = ["CASE"], []
    for wall, following in pairwise(walls):
        sql.append(f"WHEN {column} < ? THEN ?")
        args += [wall_to_utc(following, tz), wall]
    sql.append("ELSE ? END")
    args.append(walls[-1])
    return " ".join(sql), args


def bucket_end(granularity: str, wall: float) -> float:
    """The wall-clock end of the bucket that starts at `wall`."""
    if granularity in SIZES:
        return wall + SIZES[granularity]
    return _following(datetime.fromtimestamp(wall, UTC), granularity).timestamp()
