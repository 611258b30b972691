"""The usage API on the admin listener: /api/requests and /api/usage, as JSON, CSV or Excel.

SQLite work runs in worker threads, one chunk at a time, so a large export never stalls
the event loop that also carries the proxy's traffic.
"""

from __future__ import annotations

import asyncio
import hmac
import sqlite3
import time
from datetime import UTC, datetime

from aiohttp import web

from .export import FORMATS, REQUEST_COLUMNS, encode, request_rows, usage_columns, usage_rows
from .query import BadParameter, Filters, UsageQuery, parse_int

HISTORY_PATH = web.AppKey("history_path", str)
PAGE, MAX_PAGE = 100, 10_000  # rows per JSON page of /api/requests


def parse_format(params) -> str:
    fmt = params.get("format", "json")
    if fmt not in FORMATS:
        raise BadParameter("format", f"must be one of {', '.join(FORMATS)}")
    return fmt


async def requests_handler(request: web.Request) -> web.StreamResponse:
    params = request.query
    fmt = parse_format(params)
    filters = Filters.parse(params, time.time())
    # JSON is paged; CSV and Excel downloads hold every matching row unless limited.
    limit = parse_int(params, "limit", PAGE, 1, MAX_PAGE) if fmt == "json" \
        else parse_int(params, "limit", 0, 0, 100_000_000) or None
    rows = await asyncio.to_thread(request_rows, request.app[HISTORY_PATH], filters, limit,
                                   params.get("cursor"))
    return await send(request, fmt, rows, REQUEST_COLUMNS, "requests")


async def usage_handler(request: web.Request) -> web.StreamResponse:
    params = request.query
    fmt = parse_format(params)
    q = UsageQuery.parse(params, time.time())
    rows = await asyncio.to_thread(usage_rows, request.app[HISTORY_PATH], q)
    return await send(request, fmt, rows, usage_columns(q), "usage")


async def send(request: web.Request, fmt: str, rows, columns, name: str) -> web.StreamResponse:
    headers = {"Content-Type": FORMATS[fmt]}
    if fmt != "json":
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        headers["Content-Disposition"] = f'attachment; filename="llm-{name}-{stamp}.{fmt}"'
    chunks = encode(fmt, rows, columns)
    resp = web.StreamResponse(headers=headers)
    try:
        first = await asyncio.to_thread(next, chunks, None)  # errors still become a 4xx/5xx
        await resp.prepare(request)
        while first is not None:
            await resp.write(first)
            first = await asyncio.to_thread(next, chunks, None)
        await resp.write_eof()
        return resp
    finally:
        await asyncio.to_thread(chunks.close)


@web.middleware
async def api_errors(request: web.Request, handler):
    """Answer bad parameters with 400 naming the parameter, a missing history with 503."""
    try:
        return await handler(request)
    except BadParameter as e:
        return web.json_response({"error": {"parameter": e.name, "message": str(e)}},
                                 status=400)
    except sqlite3.OperationalError as e:
        return web.json_response({"error": {"message": f"the request history cannot be read: "
                                                       f"{e}"}}, status=503)


def bearer_token(token: str):
    """Require `Authorization: Bearer <token>` everywhere but /healthz."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def check(request: web.Request, handler):
        if request.path != "/healthz" and not hmac.compare_digest(
                request.headers.get("Authorization", "").encode(), expected):
            return web.json_response({"error": {"message": "a bearer token is required"}},
                                     status=401, headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return check
