"""The admin listener: /metrics and /healthz, and the routes other parts add (/api/*).

Served by the gateway's own HTTP server, as the proxy is: aiohttp's web stack cost 11 MB
of memory in every gateway process for four routes. /metrics is rendered in a worker
thread (collectors read SQLite), so a scrape never stalls the event loop that also
carries the proxy's traffic.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import time
from urllib.parse import parse_qsl

from .. import __version__
from ..wire.request import Request, respond_json
from .exposition import (
    CONTENT_TYPE,
    OPENMETRICS_TYPE,
    render,
    render_openmetrics,
    wants_openmetrics,
)
from .scrapes import Scrapes

OPEN = frozenset(("/", "/healthz"))  # no token needed: they tell nothing of the traffic


class Admin:
    """Answer the admin routes; `routes` adds paths, `token` guards all but /healthz.

    A route is `async route(request, params)`, params holding the first value of each
    query parameter.
    """

    def __init__(self, registry, *, routes=None, token: str | None = None,
                 scrapes: Scrapes | None = None):
        self.registry, self.scrapes = registry, scrapes or Scrapes()
        self.expected = f"Bearer {token}".encode() if token else None
        self.routes = {"/": self.index, "/metrics": self.metrics, "/healthz": self.healthz,
                       **(routes or {})}

    async def handle(self, request: Request) -> None:
        route = self.routes.get(request.path)
        if route is None:
            return respond_json(request, 404, {"error": {"message": "no such path"}})
        if request.method not in ("GET", "HEAD"):
            return respond_json(request, 405, {"error": {"message": "only GET"}},
                                b"Allow: GET, HEAD\r\n")
        if self.expected and request.path not in OPEN and not hmac.compare_digest(
                (request.header(b"authorization") or "").encode(), self.expected):
            return respond_json(request, 401, {"error": {"message": "a bearer token is "
                                                                    "required"}},
                                b"WWW-Authenticate: Bearer\r\n")
        params: dict[str, str] = {}
        for name, value in parse_qsl(request.raw_path.partition("?")[2],
                                     keep_blank_values=True):
            params.setdefault(name, value)  # the first of repeated parameters, as aiohttp did
        await route(request, params)

    async def index(self, request: Request, params) -> None:
        """This list of the admin listener's endpoints."""
        respond_json(request, 200, {
            "service": "llm-usage-exporter", "version": __version__,
            "endpoints": {path: (route.__doc__ or "").strip().splitlines()[0]
                          for path, route in self.routes.items()}})

    async def metrics(self, request: Request, params) -> None:
        """Prometheus metrics (OpenMetrics with exemplars when asked)."""
        # OpenMetrics only when asked (Prometheus asks): it alone carries the exemplars.
        if wants_openmetrics(request.header(b"accept")):
            renderer, content_type = render_openmetrics, OPENMETRICS_TYPE
        else:
            renderer, content_type = render, CONTENT_TYPE
        started = time.monotonic()
        body = await asyncio.to_thread(renderer, self.registry)  # collectors read SQLite
        self.scrapes.answered(started)  # new series read at 0: their increments may count
        request.respond(200, b"OK", body, b"Content-Type: %s\r\n" % content_type.encode())

    async def healthz(self, request: Request, params) -> None:
        """Liveness: the version and process id."""
        respond_json(request, 200, {"status": "ok", "version": __version__, "pid": os.getpid()})
