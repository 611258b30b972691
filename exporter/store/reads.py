"""Rows out of the history, a batch at a time, in bounded memory.

A row source opens its connection when its first batch is asked for and gives it back
after its last, reading through a server-side cursor on PostgreSQL: a million-row export
never holds a million rows. The usage API advances it in a worker thread, a chunk per
step, and the command line writes the same chunks to a file.
"""

from __future__ import annotations

from datetime import datetime

from .database import Database
from .query import Filters, encode_cursor, requests_sql
from .schema import TOKEN_COLUMNS
from .usage import UsageQuery

INPUT_COLUMNS = tuple(c for c in TOKEN_COLUMNS if c.startswith("input_"))
OUTPUT_COLUMNS = tuple(c for c in TOKEN_COLUMNS if c.startswith("output_"))
BATCH = 5000
REQUEST_COLUMNS = ("time", "request_id", "service", "provider", "model", "api_key",
                   "project", "user", "tags", "operation", "stream", "status", "error_type",
                   "error_message", *TOKEN_COLUMNS, "input_tokens", "output_tokens",
                   "total_tokens", "estimated_input", "estimated_output",
                   "fee_usd", "unpriced", "service_tier", "ttft_ms", "duration_ms",
                   "overhead_ms", "upstream_request_id", "web_search_calls", "audio_seconds",
                   "input_characters", "started_at")


def usage_columns(q: UsageQuery) -> tuple[str, ...]:
    return ((("time",) if q.granularity != "none" else ()) + q.group_by
            + ("requests", "successful", "failed", "success_rate", *TOKEN_COLUMNS,
               "total_tokens", "estimated_tokens", "web_search_calls", "audio_seconds",
               "input_characters", "fee_usd",
               "avg_latency_ms", "avg_ttft_ms", "qps", "tokens_per_request",
               "fee_per_request"))


class Rows:
    """Rows of a query as dicts, a batch at a time; `cursor` is set once a page of
    `limit` rows is complete."""

    def __init__(self, db: Database, sql: str, args: list, convert, limit: int | None = None):
        self.db, self.sql, self.args, self.convert = db, sql, args, convert
        self.limit = limit
        self.cursor: str | None = None
        self.count = 0  # rows read so far

    def batches(self):
        seen, last = 0, None
        with self.db.connect(reader=True) as conn:
            stream = conn.stream(self.sql, self.args, BATCH)
            names = next(stream)
            for raw in stream:
                seen += len(raw)
                self.count = seen
                batch = [self.convert(dict(zip(names, r, strict=True))) for r in raw]
                last = batch[-1]
                yield batch
        if self.limit and seen == self.limit and last is not None:
            self.cursor = encode_cursor(last["started_at"], last["rowid"])

    def all(self) -> list[dict]:
        return [r for batch in self.batches() for r in batch]


def request_rows(db: Database, filters: Filters, limit: int | None,
                 cursor: str | None) -> Rows:
    tz = filters.tz

    def convert(row: dict) -> dict:
        row["time"] = datetime.fromtimestamp(row["started_at"], tz).isoformat()
        row["user"] = row["end_user"]  # its column's name: PostgreSQL keeps `user` for itself
        row["input_tokens"] = sum(row[c] for c in INPUT_COLUMNS)
        row["output_tokens"] = sum(row[c] for c in OUTPUT_COLUMNS)
        row["total_tokens"] = row["input_tokens"] + row["output_tokens"]
        return row

    sql, args = requests_sql(filters, limit, cursor, db.dialect.rowid)
    return Rows(db, sql, args, convert, limit)


def usage_rows(db: Database, q: UsageQuery) -> Rows:
    sql, args = q.sql(db.dialect)
    return Rows(db, sql, args, q.finish)
