"""Make a report file: what the command line and /api/report both call."""

from __future__ import annotations

import time
from datetime import datetime

from ..history.export import FORMATS
from ..history.query import Filters

MEDIA_TYPES = {"pdf": "application/pdf", "xlsx": FORMATS["xlsx"]}


def render(path: str, kind: str, fmt: str, filters: Filters) -> bytes:
    """The report's file content (its libraries are loaded only when one is made)."""
    from .data import build
    report = build(path, kind, filters, time.time())
    if fmt == "pdf":
        from .pdf import pdf
        return pdf(report)
    from .workbook import workbook
    return workbook(report)


def file_name(kind: str, fmt: str, filters: Filters) -> str:
    """llm-TYPE-report-FROM-to-TO.FORMAT."""
    return f"llm-{kind}-report-{period_name(filters)}.{fmt}"


def period_name(filters: Filters) -> str:
    """FROM-to-TO, the days in the report's zone (the end excluded)."""
    day = "%Y-%m-%d"
    start = datetime.fromtimestamp(filters.start, filters.tz).strftime(day)
    end = datetime.fromtimestamp(filters.end, filters.tz).strftime(day)
    return f"{start}-to-{end}"
