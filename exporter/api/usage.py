"""The usage API on the admin listener: /api/requests, /api/usage, /api/deployments and
/api/report, read from the history.

Database work and encoding run in worker threads, one chunk at a time, so a large export
never stalls the event loop that also carries the proxy's traffic.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from ..reports.data import TYPES as REPORT_TYPES
from ..reports.data import granularity
from ..reports.make import MEDIA_TYPES, file_name, render_apart
from ..store.database import Database, reason
from ..store.deployments import DEPLOYMENT_COLUMNS, deployment_rows
from ..store.forecast import month_forecast
from ..store.query import BadParameter, Filters, parse_int
from ..store.reads import REQUEST_COLUMNS, request_rows, usage_columns, usage_rows
from ..store.usage import UsageQuery
from ..wire.request import Request, respond_json
from .encode import FORMATS, encode

PAGE, MAX_PAGE = 100, 10_000  # rows per JSON page of /api/requests


class UsageApi:
    """The routes of the usage API over the history database `db`; reports are drawn by
    `await render(db, type, format, filters)`, in a process of their own."""

    def __init__(self, db: Database, render=render_apart):
        self.db, self.render = db, render

    def routes(self) -> dict:
        """The admin listener's routes this API adds."""
        return {"/api/requests": self.requests, "/api/usage": self.usage,
                "/api/deployments": self.deployments, "/api/report": self.report,
                "/api/forecast": self.forecast}

    async def forecast(self, request: Request, params) -> None:
        """The calendar month so far and its month-end forecast (requests, tokens, fee)."""
        await _answering(request, self._forecast(request, params), self.db)

    async def _forecast(self, request: Request, params) -> None:
        for name in ("from", "to"):  # the range is the month's
            if name in params:
                raise BadParameter(name, "the forecast is of the current calendar month in "
                                   "`tz`: give no range")
        now = time.time()
        filters = Filters.parse(params, now)
        row = await asyncio.to_thread(month_forecast, self.db, filters, now)
        respond_json(request, 200, {"data": [row]})

    async def report(self, request: Request, params) -> None:
        """A summary, cost, trend or detailed report as PDF or Excel (type, format)."""
        await _answering(request, self._report(request, params), self.db)

    async def _report(self, request: Request, params) -> None:
        kind = params.get("type", "summary")
        fmt = params.get("format", "pdf")
        if kind not in REPORT_TYPES:
            raise BadParameter("type", f"must be one of {', '.join(REPORT_TYPES)}")
        if fmt not in MEDIA_TYPES:
            raise BadParameter("format", "must be pdf or xlsx")
        filters = Filters.parse(params, time.time(),
                                frozenset(("type", "format", "granularity")))
        step = granularity(kind, filters, params.get("granularity"))  # a 400 before drawing
        try:
            body = await self.render(self.db, kind, fmt, filters, step)
        except RuntimeError as e:  # the report's process failed: it said why
            respond_json(request, 503, {"error": {"message": f"the report failed: {e}"}})
            return
        name = file_name(kind, fmt, filters)
        request.respond(200, b"OK", body, b"Content-Type: %s\r\nContent-Disposition: "
                        b'attachment; filename="%s"\r\n' % (MEDIA_TYPES[fmt].encode(),
                                                             name.encode()))

    async def requests(self, request: Request, params) -> None:
        """One row per request, newest first (JSON paged; CSV, Excel)."""
        await _answering(request, self._requests(request, params), self.db)

    async def usage(self, request: Request, params) -> None:
        """Aggregates by model, key, service, provider and time bucket; rankings."""
        await _answering(request, self._usage(request, params), self.db)

    async def deployments(self, request: Request, params) -> None:
        """The deployments table: runtime, GPU hours, cost and traffic over the range."""
        await _answering(request, self._deployments(request, params), self.db)

    async def _deployments(self, request: Request, params) -> None:
        fmt = parse_format(params)
        filters = Filters.parse(params, time.time(), frozenset(("format",)))
        rows = deployment_rows(self.db, filters)
        await send(request, fmt, rows, DEPLOYMENT_COLUMNS, "deployments")

    async def _requests(self, request: Request, params) -> None:
        fmt = parse_format(params)
        filters = Filters.parse(params, time.time(), frozenset(("format", "limit", "cursor")))
        # JSON is paged; CSV and Excel downloads hold every matching row unless limited.
        limit = parse_int(params, "limit", PAGE, 1, MAX_PAGE) if fmt == "json" \
            else parse_int(params, "limit", 0, 0, 100_000_000) or None
        rows = request_rows(self.db, filters, limit, params.get("cursor"))
        await send(request, fmt, rows, REQUEST_COLUMNS, "requests")

    async def _usage(self, request: Request, params) -> None:
        fmt = parse_format(params)
        q = UsageQuery.parse(params, time.time())
        if fmt == "json":
            q.check_buckets()
        rows = usage_rows(self.db, q)
        await send(request, fmt, rows, usage_columns(q), "usage")


async def _answering(request: Request, work, db: Database) -> None:
    """Run a route; a bad parameter is a 400 naming it, an unreadable history a 503."""
    try:
        await work
    except BadParameter as e:
        if request.started:
            raise
        respond_json(request, 400, {"error": {"parameter": e.name, "message": str(e)}})
    except db.Error as e:
        if request.started:
            raise
        respond_json(request, 503, {"error": {
            "message": f"the request history cannot be read: {reason(e)}"}})


def parse_format(params) -> str:
    fmt = params.get("format", "json")
    if fmt not in FORMATS:
        raise BadParameter("format", f"must be one of {', '.join(FORMATS)}")
    return fmt


async def send(request: Request, fmt: str, rows, columns, name: str) -> None:
    """Stream rows in a format, each chunk encoded in a worker thread."""
    headers = b"Content-Type: %s\r\n" % FORMATS[fmt].encode()
    if fmt != "json":
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        headers += b'Content-Disposition: attachment; filename="llm-%s-%s.%s"\r\n' % (
            name.encode(), stamp.encode(), fmt.encode())
    chunks = encode(fmt, rows, columns, name=name)
    try:
        first = await asyncio.to_thread(next, chunks, None)  # errors still become a 4xx/5xx
        request.start(200, b"OK", headers, None)
        while first is not None:
            drain = request.write(first)
            if drain is not None:
                await drain
            first = await asyncio.to_thread(next, chunks, None)
        request.finish()
    finally:
        await asyncio.to_thread(chunks.close)
