"""The usage rollup: requests summed per 15-minute bucket and per value of every label the
usage API filters or groups by, written in the same transaction as the rows.

A month's usage is then a few thousand rollup rows, not a month of requests: at a million
requests a day, a 30-day dashboard read 30 million rows. Every time zone in use is a whole
number of quarter hours from UTC, so a local hour or day is always whole buckets; what
lies before the first whole bucket of a range and after its last is read from the rows
(store/usage.py). Exact either way: the same sums, to the request and the cent.
"""

from __future__ import annotations

import math

from ..record import TOKEN_FIELDS as TOKEN_COLUMNS
from .rows import RequestRow

BUCKET = 900  # seconds: 15 minutes of UTC
KEY = ("bucket", "service", "provider", "model", "api_key", "project", "operation", "status",
       "error_type")
# The key before the project was (migration m013 and 002, which made the rollup so).
FIRST_KEY = tuple(k for k in KEY if k != "project")
# rows_n counts every row (a share row too: the denominator of the average latency);
# requests, the requests of their own; ttft_n, the rows with a time to first token.
SUMS = ("rows_n", "requests", *TOKEN_COLUMNS, "estimated_tokens", "web_search_calls",
        "audio_seconds", "input_characters", "fee_usd", "duration_ms", "ttft_ms", "ttft_n")
UPSERT_SQL = (f"INSERT INTO usage_rollup ({', '.join(KEY + SUMS)}) "
              f"VALUES ({', '.join('?' * len(KEY + SUMS))}) "
              f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET "
              + ", ".join(f"{c} = usage_rollup.{c} + excluded.{c}" for c in SUMS))
# The rows' side of the same sums, one row each (a query of a range's edges).
FROM_ROWS = ", ".join((
    "started_at AS t", *KEY[1:], "1 AS rows_n", "1 - share AS requests", *TOKEN_COLUMNS,
    "estimated_input + estimated_output AS estimated_tokens", "web_search_calls",
    "audio_seconds", "input_characters", "fee_usd", "duration_ms", "ttft_ms",
    "CASE WHEN ttft_ms IS NULL THEN 0 ELSE 1 END AS ttft_n"))
FROM_ROLLUP = ", ".join(("bucket AS t", *KEY[1:], *SUMS))


def bucket_of(started_at: float) -> float:
    return float(math.floor(started_at / BUCKET) * BUCKET)


def rollup(rows: list[RequestRow]) -> list[tuple]:
    """The rows summed by bucket and labels, in the key's order: replicas writing at once
    then lock rollup rows in one order, which cannot deadlock."""
    sums: dict[tuple, list] = {}
    for r in rows:
        key = (bucket_of(r.started_at), r.service, r.provider, r.model, r.api_key,
               r.project, r.operation, r.status, r.error_type)
        s = sums.get(key)
        if s is None:
            s = sums[key] = [0] * len(SUMS)
        s[0] += 1
        s[1] += 1 - r.share
        for i, c in enumerate(TOKEN_COLUMNS, 2):
            s[i] += getattr(r, c)
        i = 2 + len(TOKEN_COLUMNS)
        s[i] += r.estimated_input + r.estimated_output
        s[i + 1] += r.web_search_calls
        s[i + 2] += r.audio_seconds
        s[i + 3] += r.input_characters
        s[i + 4] += r.fee_usd
        s[i + 5] += r.duration_ms
        if r.ttft_ms is not None:
            s[i + 6] += r.ttft_ms
            s[i + 7] += 1
    return [key + tuple(s) for key, s in sorted(sums.items())]


def backfill_sql(floor, key: tuple[str, ...] = KEY) -> str:
    """The rollup of every stored request (a migration's): `floor` is the engine's, `key`
    the rollup's key as that migration made it."""
    sums = ["count(*)", "sum(1 - share)", *(f"coalesce(sum({c}), 0)" for c in TOKEN_COLUMNS),
            "coalesce(sum(estimated_input + estimated_output), 0)",
            "coalesce(sum(web_search_calls), 0)", "coalesce(sum(audio_seconds), 0)",
            "coalesce(sum(input_characters), 0)", "coalesce(sum(fee_usd), 0)",
            "coalesce(sum(duration_ms), 0)", "coalesce(sum(ttft_ms), 0)", "count(ttft_ms)"]
    return (f"INSERT INTO usage_rollup ({', '.join(key + SUMS)}) "
            f"SELECT {floor(f'started_at / {BUCKET}')} * {BUCKET}, {', '.join(key[1:])}, "
            f"{', '.join(sums)} FROM requests "
            f"GROUP BY {', '.join(map(str, range(1, len(key) + 1)))}")
