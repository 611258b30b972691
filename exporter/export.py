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

import xlsxwriter

from .history import TOKEN_COLUMNS
from .query import Filters, UsageQuery, encode_cursor, requests_sql

BATCH = 5000
EXCEL_MAX_ROWS = 1_048_576  # per sheet, header included; more rows go on further sheets
REQUEST_COLUMNS = ("time", "request_id", "service", "provider", "model", "api_key",
                   "operation", "stream", "status", "error_type", "error_message",
                   *TOKEN_COLUMNS, "total_tokens", "estimated_input", "estimated_output",
                   "fee_usd", "unpriced", "service_tier", "ttft_ms", "duration_ms",
                   "overhead_ms", "upstream_request_id", "started_at")
FORMATS = {"json": "application/json", "csv": "text/csv; charset=utf-8",
           "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False,
                           timeout=5)
    conn.row_factory = sqlite3.Row
    return conn


def usage_columns(q: UsageQuery) -> tuple[str, ...]:
    return ((("time",) if q.granularity != "none" else ()) + q.group_by
            + ("requests", "successful", "failed", "success_rate", *TOKEN_COLUMNS,
               "total_tokens", "estimated_tokens", "fee_usd", "avg_latency_ms",
               "avg_ttft_ms", "qps"))


class Rows:
    """Rows of a query, a batch at a time; `cursor` is set once a page is complete."""

    def __init__(self, path: str, sql: str, args: list, convert, limit: int | None = None):
        self.conn = connect(path)
        self.cur = self.conn.execute(sql, args)
        self.convert = convert
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
                self.last = raw[-1]
                yield [self.convert(r) for r in raw]
        finally:
            if self.limit and self.seen == self.limit and self.last is not None:
                self.cursor = encode_cursor(self.last["started_at"], self.last["rowid"])
            self.conn.close()


def request_rows(path: str, filters: Filters, limit: int | None, cursor: str | None) -> Rows:
    tz = filters.tz

    def convert(r: sqlite3.Row) -> dict:
        row = {k: r[k] for k in r.keys() if k != "rowid"}
        row["time"] = datetime.fromtimestamp(r["started_at"], tz).isoformat()
        row["total_tokens"] = sum(r[c] for c in TOKEN_COLUMNS)
        return row

    sql, args = requests_sql(filters, limit, cursor)
    return Rows(path, sql, args, convert, limit)


def usage_rows(path: str, q: UsageQuery) -> Rows:
    sql, args = q.sql()
    return Rows(path, sql, args, lambda r: q.finish(dict(r)))


def encode(fmt: str, rows: Rows, columns, tmpdir: str | None = None):
    """Yield the export as byte chunks of at most one batch each."""
    if fmt == "csv":
        yield from _csv(rows, columns)
    elif fmt == "json":
        yield from _json(rows, columns)
    else:
        yield from _xlsx(rows, columns, tmpdir)


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


def _xlsx(rows: Rows, columns, tmpdir):
    """Write a workbook row by row (xlsxwriter's constant memory mode), then stream it."""
    import os
    import tempfile
    fd, path = tempfile.mkstemp(suffix=".xlsx", dir=tmpdir)
    os.close(fd)
    try:
        book = xlsxwriter.Workbook(path, {"constant_memory": True, "strings_to_numbers": False,
                                          "strings_to_urls": False})
        bold = book.add_format({"bold": True})
        sheet, n = None, EXCEL_MAX_ROWS
        for batch in rows.batches():
            for row in batch:
                if n == EXCEL_MAX_ROWS:
                    sheet = book.add_worksheet()
                    sheet.write_row(0, 0, columns, bold)
                    n = 1
                sheet.write_row(n, 0, [row.get(c) for c in columns])
                n += 1
        if sheet is None:
            book.add_worksheet().write_row(0, 0, columns, bold)
        book.close()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                yield chunk
    finally:
        os.unlink(path)
