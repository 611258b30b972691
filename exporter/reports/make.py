"""Make a report file: what the command line, /api/report and the schedule all call."""

from __future__ import annotations

import asyncio
import pickle
import sys
import time
from datetime import datetime

from ..store.database import Database
from ..store.query import Filters

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MEDIA_TYPES = {"pdf": "application/pdf", "xlsx": XLSX_TYPE}
REPORT_SECONDS = 600  # a year's detailed PDF by day takes 24 s on 2 cores


def render(db: Database, kind: str, fmt: str, filters: Filters,
           granularity: str | None = None) -> bytes:
    """The report's file content (its libraries are loaded only when one is made)."""
    from .sections import build
    report = build(db, kind, filters, time.time(), granularity)
    if kind == "cost":  # the providers' own bills beside ours
        from .reconciliation import section
        report.sections += section(db, filters)
    if fmt == "pdf":
        from .pdf import pdf
        return pdf(report)
    from .workbook import workbook
    return workbook(report)


async def render_apart(db: Database, kind: str, fmt: str, filters: Filters,
                       granularity: str | None = None) -> bytes:
    """The same, drawn in a process of its own (reports/worker.py), handed the filters
    themselves: a year's report by day takes 24 s of CPU and 200 MB (measured), which
    the gateway's process must not spend beside the requests it serves."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter.reports.worker", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        body, err = await asyncio.wait_for(
            proc.communicate(pickle.dumps((db, kind, fmt, filters, granularity))),
            REPORT_SECONDS)
    except (TimeoutError, asyncio.CancelledError):
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(err.decode(errors="replace").strip() or
                           f"the report's process exited with {proc.returncode}")
    return body


def file_name(kind: str, fmt: str, filters: Filters) -> str:
    """llm-TYPE-report-FROM-to-TO.FORMAT."""
    return f"llm-{kind}-report-{period_name(filters)}.{fmt}"


def period_name(filters: Filters) -> str:
    """FROM-to-TO, the days in the report's zone (the end excluded)."""
    day = "%Y-%m-%d"
    start = datetime.fromtimestamp(filters.start, filters.tz).strftime(day)
    end = datetime.fromtimestamp(filters.end, filters.tz).strftime(day)
    return f"{start}-to-{end}"
