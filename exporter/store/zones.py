"""Time zones in SQL: SQLite knows none, so the UTC offsets in force over a range are
worked out here, every DST change found to the second, and applied with a CASE."""

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
    next_month = (month + timedelta(days=32)).replace(day=1)
    # Local midnights, each with the offset in force then (a DST change may lie between).
    return {period: (a.replace(tzinfo=tz).timestamp(), b.replace(tzinfo=tz).timestamp())
            for period, (a, b) in (("day", (today, today + timedelta(days=1))),
                                   ("month", (month, next_month)))}

