"""Rows out of the history, as JSON, CSV or Excel, in bounded memory.

Row sources read on their own read-only connection, a batch at a time; encoders turn
batches into byte chunks. The HTTP API advances them in a worker thread, one chunk per
step, and the command line writes the same chunks to a file: a million-row export never
holds a million rows.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import datetime

from .query import Filters, UsageQuery, encode_cursor, requests_sql
from .store import TOKEN_COLUMNS
from .xlsx import xlsx

INPUT_COLUMNS = tuple(c for c in TOKEN_COLUMNS if c.startswith("input_"))
OUTPUT_COLUMNS = tuple(c for c in TOKEN_COLUMNS if c.startswith("output_"))
BATCH = 5000
EXCEL_MAX_ROWS = 1_048_576  # per sheet, header included; more rows go on further sheets
REQUEST_COLUMNS = ("time", "request_id", "service", "provider", "model", "api_key",
                   "operation", "stream", "status", "error_type", "error_message",
                   *TOKEN_COLUMNS, "input_tokens", "output_tokens", "total_tokens",
                   "estimated_input", "estimated_output",
                   "fee_usd", "unpriced", "service_tier", "ttft_ms", "duration_ms",
                   "overhead_ms", "upstream_request_id", "web_search_calls", "audio_seconds",
                   "input_characters", "started_at")
FORMATS = {"json": "application/json", "csv": "text/csv; charset=utf-8",
           "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def connect(path: str) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False,
                           timeout=5)


def usage_columns(q: UsageQuery) -> tuple[str, ...]:
    return ((("time",) if q.granularity != "none" else ()) + q.group_by
            + ("requests", "successful", "failed", "success_rate", *TOKEN_COLUMNS,
               "total_tokens", "estimated_tokens", "web_search_calls", "audio_seconds",
               "input_characters", "fee_usd",
               "avg_latency_ms", "avg_ttft_ms", "qps"))


class Rows:
    """Rows of a query, a batch at a time; `cursor` is set once a page is complete."""

    def __init__(self, path: str, sql: str, args: list, convert, limit: int | None = None):
        self.conn = connect(path)
        self.cur = self.conn.execute(sql, args)
        names = [d[0] for d in self.cur.description]
        self.convert = lambda raw: convert(dict(zip(names, raw)))  # names read once
        self.limit = limit
        self.seen = 0
        self.cursor: str | None = None
        self.last = None

    def batches(self):
        try:
            while True:
                raw = self.cur.fetchmany(BATCH)
                if not raw:
                    return
                self.seen += len(raw)
                batch = [self.convert(r) for r in raw]
                self.last = batch[-1]
                yield batch
        finally:
            if self.limit and self.seen == self.limit and self.last is not None:
                self.cursor = encode_cursor(self.last["started_at"], self.last["rowid"])
            self.conn.close()


def request_rows(path: str, filters: Filters, limit: int | None, cursor: str | None) -> Rows:
    tz = filters.tz

    def convert(row: dict) -> dict:
        row["time"] = datetime.fromtimestamp(row["started_at"], tz).isoformat()
        row["input_tokens"] = sum(row[c] for c in INPUT_COLUMNS)
        row["output_tokens"] = sum(row[c] for c in OUTPUT_COLUMNS)
        row["total_tokens"] = row["input_tokens"] + row["output_tokens"]
        return row

    sql, args = requests_sql(filters, limit, cursor)
    return Rows(path, sql, args, convert, limit)


def usage_rows(path: str, q: UsageQuery) -> Rows:
    sql, args = q.sql()
    return Rows(path, sql, args, q.finish)


def encode(fmt: str, rows: Rows, columns, tmpdir: str | None = None):
    """Yield the export as byte chunks of at most one batch each."""
    if fmt == "csv":
        yield from _csv(rows, columns)
    elif fmt == "json":
        yield from _json(rows, columns)
    else:
        yield from xlsx(rows, columns, tmpdir)


def _csv(rows: Rows, columns):
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for batch in rows.batches():
        writer.writerows([[row.get(c) for c in columns] for row in batch])
        yield buf.getvalue().encode()
        buf.seek(0)
        buf.truncate()
    if buf.tell():
        yield buf.getvalue().encode()


def _json(rows: Rows, columns):
    yield b'{"data": ['
    first = True
    for batch in rows.batches():
        text = ",\n".join(json.dumps({c: row.get(c) for c in columns}) for row in batch)
        yield (b"" if first else b",\n") + text.encode()
        first = False
    yield b"], " + json.dumps({"next_cursor": rows.cursor})[1:].encode()
