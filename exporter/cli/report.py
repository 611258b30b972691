"""`report`: a summary, cost, trend or detailed report of the history, as PDF or Excel."""

from __future__ import annotations

import time

from ..reports.make import file_name, render
from ..store.query import Filters
from .commands import history_file, history_params, reading


def make_report(args) -> int:
    """Write the report the flags ask for; a bad flag is one line and exit 2."""
    db, status = history_file(args)
    if db is None:
        return status

    def write() -> int:
        filters = Filters.parse(history_params(args, ("operation",)), time.time())
        body = render(db, args.type, args.format, filters)
        output = args.output or file_name(args.type, args.format, filters)
        with open(output, "wb") as f:
            f.write(body)
        print(output)
        return 0

    return reading(db, write)
