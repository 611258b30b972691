"""Make a report file: what the command line and /api/report both call."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from datetime import datetime

from ..history.export import FORMATS
from ..history.query import Filters

MEDIA_TYPES = {"pdf": "application/pdf", "xlsx": FORMATS["xlsx"]}
REPORT_SECONDS = 600  # a year's detailed PDF takes 34 s on 2 cores


def render(path: str, kind: str, fmt: str, filters: Filters) -> bytes:
    """The report's file content (its libraries are loaded only when one is made)."""
    from .data import build
    report = build(path, kind, filters, time.time())
    if fmt == "pdf":
        from .pdf import pdf
        return pdf(report)
    from .workbook import workbook
    return workbook(report)


async def render_apart(path: str, kind: str, fmt: str, filters: Filters) -> bytes:
    """The same, drawn by `llm-usage-exporter report` in a process of its own: a year's
    report takes half a minute of CPU and 250 MB (measured), which the gateway's process
    must not spend beside the requests it serves."""
    with tempfile.TemporaryDirectory(prefix="llm-usage-report-") as folder:
        output = os.path.join(folder, f"report.{fmt}")
        args = ["--db", path, "--from", repr(filters.start), "--to", repr(filters.end),
                "--tz", filters.tz.key, "--type", kind, "--format", fmt, "--output", output]
        for column, values in filters.equal:  # a request id narrows no report
            if column != "request_id":
                args += [f"--{column.replace('_', '-')}", ",".join(values)]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "exporter", "report", *args,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            _, err = await asyncio.wait_for(proc.communicate(), REPORT_SECONDS)
        except (TimeoutError, asyncio.CancelledError):
            proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0:
            raise RuntimeError(err.decode(errors="replace").strip() or
                               f"report exited with {proc.returncode}")
        with open(output, "rb") as f:
            return f.read()


def file_name(kind: str, fmt: str, filters: Filters) -> str:
    """llm-TYPE-report-FROM-to-TO.FORMAT."""
    return f"llm-{kind}-report-{period_name(filters)}.{fmt}"


def period_name(filters: Filters) -> str:
    """FROM-to-TO, the days in the report's zone (the end excluded)."""
    day = "%Y-%m-%d"
    start = datetime.fromtimestamp(filters.start, filters.tz).strftime(day)
    end = datetime.fromtimestamp(filters.end, filters.tz).strftime(day)
    return f"{start}-to-{end}"
