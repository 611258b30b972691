"""`report`: a summary, cost, trend or detailed report of the history, as PDF or Excel."""

from __future__ import annotations

import os
import sys
import time

from ..reports.make import MEDIA_TYPES, file_name, render
from ..store.query import Filters
from .commands import history_file, history_params, reading


def report_format(given: str | None, output: str | None) -> tuple[str, str | None]:
    """The format: --format, else the output's extension, else PDF; and the contradiction
    between them, if any, as the line to print."""
    extension = os.path.splitext(output or "")[1].lower().lstrip(".")
    if extension not in MEDIA_TYPES:
        return given or "pdf", None
    if given is not None and given != extension:
        return given, (f"--output: {output} ends in .{extension} and --format is {given}: "
                       "make them agree, or leave --format out")
    return extension, None


def make_report(args) -> int:
    """Write the report the flags ask for; a bad flag is one line and exit 2."""
    fmt, contradiction = report_format(args.format, args.output)
    if contradiction:
        print(contradiction, file=sys.stderr)
        return 2
    db, status = history_file(args)
    if db is None:
        return status

    def write() -> int:
        from ..reports.data import granularity, matched
        filters = Filters.parse(history_params(args, ("operation",)), time.time())
        body = render(db, args.type, fmt, filters,
                      granularity(args.type, filters, args.granularity))
        output = args.output or file_name(args.type, fmt, filters)
        with open(output, "wb") as f:
            f.write(body)
        if not matched(db, filters):
            print(f"report: no request matched the period and filters; {output} says so",
                  file=sys.stderr)
        print(output)
        return 0

    return reading(db, write)
