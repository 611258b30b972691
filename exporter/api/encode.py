"""Rows as JSON, CSV or Excel, a chunk of bytes per batch of rows."""

from __future__ import annotations

import csv
import io
import json

from ..reports.make import XLSX_TYPE
from ..store.reads import Rows
from .xlsx import xlsx

FORMATS = {"json": "application/json", "csv": "text/csv; charset=utf-8", "xlsx": XLSX_TYPE}


def encode(fmt: str, rows: Rows, columns, tmpdir: str | None = None, name: str = "usage"):
    """Yield the export as byte chunks of at most one batch each; `name` (usage, requests,
    deployments) names a workbook's sheets."""
    if fmt == "csv":
        yield from _csv(rows, columns)
    elif fmt == "json":
        yield from _json(rows, columns)
    else:
        yield from xlsx(rows, columns, tmpdir, name.capitalize())


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
    # Nothing is yielded before the query has run: a history that cannot be read is still
    # answered 503, not a 200 cut short.
    head = b'{"data": ['
    for batch in rows.batches():
        text = ",\n".join(json.dumps({c: row.get(c) for c in columns}) for row in batch)
        yield head + text.encode()
        head = b",\n"
    yield (b'{"data": [' if head != b",\n" else b"") + b"], " \
        + json.dumps({"next_cursor": rows.cursor})[1:].encode()
