"""The admin listener: /metrics, /healthz and the usage API (/api/requests, /api/usage).

Served by the gateway's own HTTP server, as the proxy is: aiohttp's web stack cost 11 MB
of memory in every gateway process for four routes. SQLite work and /metrics rendering
run in worker threads, one chunk at a time, so a large export or scrape never stalls the
event loop that also carries the proxy's traffic.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import sqlite3
import time
from datetime import UTC, datetime
from http import HTTPStatus
from urllib.parse import parse_qsl

from . import __version__
from .export import FORMATS, REQUEST_COLUMNS, encode, request_rows, usage_columns, usage_rows
from .exposition import CONTENT_TYPE, render
from .query import BadParameter, Filters, UsageQuery, parse_int
from .request import Request

PAGE, MAX_PAGE = 100, 10_000  # rows per JSON page of /api/requests


class Admin:
    """Answer the admin routes; `history_path` adds /api/*, `token` guards all but /healthz."""

    def __init__(self, registry, *, history_path: str | None = None,
                 token: str | None = None):
        self.registry, self.history_path = registry, history_path
        self.expected = f"Bearer {token}".encode() if token else None
        self.routes = {"/metrics": self.metrics, "/healthz": self.healthz}
        if history_path is not None:
            self.routes.update({"/api/requests": self.requests, "/api/usage": self.usage})

    async def handle(self, request: Request) -> None:
        route = self.routes.get(request.path)
        if route is None:
            return respond_json(request, 404, {"error": {"message": "no such path"}})
        if request.method not in ("GET", "HEAD"):
            return respond_json(request, 405, {"error": {"message": "only GET"}},
                                b"Allow: GET, HEAD\r\n")
        if self.expected and request.path != "/healthz" and not hmac.compare_digest(
                (request.header(b"authorization") or "").encode(), self.expected):
            return respond_json(request, 401, {"error": {"message": "a bearer token is "
                                                                    "required"}},
                                b"WWW-Authenticate: Bearer\r\n")
        params: dict[str, str] = {}
        for name, value in parse_qsl(request.raw_path.partition("?")[2],
                                     keep_blank_values=True):
            params.setdefault(name, value)  # the first of repeated parameters, as aiohttp did
        try:
            await route(request, params)
        except BadParameter as e:
            if request.started:
                raise
            respond_json(request, 400, {"error": {"parameter": e.name, "message": str(e)}})
        except sqlite3.OperationalError as e:
            if request.started:
                raise
            respond_json(request, 503, {"error": {
                "message": f"the request history cannot be read: {e}"}})

    async def metrics(self, request: Request, params) -> None:
        body = await asyncio.to_thread(render, self.registry)  # collectors read SQLite
        request.respond(200, b"OK", body, b"Content-Type: %s\r\n" % CONTENT_TYPE.encode())

    async def healthz(self, request: Request, params) -> None:
        respond_json(request, 200, {"status": "ok", "version": __version__, "pid": os.getpid()})

    async def requests(self, request: Request, params) -> None:
        fmt = parse_format(params)
        filters = Filters.parse(params, time.time())
        # JSON is paged; CSV and Excel downloads hold every matching row unless limited.
        limit = parse_int(params, "limit", PAGE, 1, MAX_PAGE) if fmt == "json" \
            else parse_int(params, "limit", 0, 0, 100_000_000) or None
        rows = await asyncio.to_thread(request_rows, self.history_path, filters, limit,
                                       params.get("cursor"))
        await send(request, fmt, rows, REQUEST_COLUMNS, "requests")

    async def usage(self, request: Request, params) -> None:
        fmt = parse_format(params)
        q = UsageQuery.parse(params, time.time())
        rows = await asyncio.to_thread(usage_rows, self.history_path, q)
        await send(request, fmt, rows, usage_columns(q), "usage")


def parse_format(params) -> str:
    fmt = params.get("format", "json")
    if fmt not in FORMATS:
        raise BadParameter("format", f"must be one of {', '.join(FORMATS)}")
    return fmt


def respond_json(request: Request, status: int, data, headers: bytes = b"") -> None:
    request.respond(status, HTTPStatus(status).phrase.encode(), json.dumps(data).encode(),
                    b"Content-Type: application/json; charset=utf-8\r\n" + headers)


async def send(request: Request, fmt: str, rows, columns, name: str) -> None:
    """Stream rows in a format, each chunk encoded in a worker thread."""
    headers = b"Content-Type: %s\r\n" % FORMATS[fmt].encode()
    if fmt != "json":
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        headers += b'Content-Disposition: attachment; filename="llm-%s-%s.%s"\r\n' % (
            name.encode(), stamp.encode(), fmt.encode())
    chunks = encode(fmt, rows, columns)
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
