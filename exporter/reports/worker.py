"""A report drawn in a process of its own (make.render_apart): what to draw arrives pickled
on standard input, the file leaves on standard output, a failure as one line on standard
error and exit status 1."""

from __future__ import annotations

import pickle
import sys

from ..store.database import reason
from .make import render


def main() -> int:
    db, kind, fmt, filters, granularity = pickle.load(sys.stdin.buffer)
    try:
        body = render(db, kind, fmt, filters, granularity)
    except db.Error as e:
        print(f"the history {db} cannot be read: {reason(e)}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
