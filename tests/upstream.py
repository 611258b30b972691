"""A local upstream that replays recorded-shape provider responses, and records requests."""

from __future__ import annotations

import asyncio
import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from exporter.wire.upstream import Origin

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def events(name: str) -> list[bytes]:
    """Split an SSE fixture into its events, each with its blank-line terminator."""
    return [e + b"\n\n" for e in fixture(name).split(b"\n\n") if e.strip()]


@dataclass
class Seen:
    method: str
    path_qs: str
    headers: dict
    body: bytes


@dataclass
class Replay:
    """Routes are set per test: path -> async handler(request, body) -> response."""

    routes: dict = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(Seen(request.method, request.path_qs, dict(request.headers), body))
        route = self.routes.get(request.path)
        if route is None:
            return web.json_response({"error": {"message": "no route", "type": "not_found"}},
                                     status=404)
        try:
            return await route(request, body)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


def json_file(name: str, status: int = 200, compress: bool = False, headers=None):
    async def route(request, body):
        data = fixture(name)
        extra = dict(headers or {})
        if compress:
            data = gzip.compress(data)
            extra["Content-Encoding"] = "gzip"
        return web.Response(body=data, status=status, content_type="application/json",
                            headers=extra)
    return route


def wants_usage(body: bytes) -> bool:
    try:
        return json.loads(body).get("stream_options", {}).get("include_usage") is True
    except (ValueError, AttributeError):
        return False


def sse_file(name: str, no_usage: str | None = None, *, gate: asyncio.Event | None = None,
             after: int = 1, reset_after: int | None = None):
    """Stream a transcript one event per write, like a provider does.

    no_usage: the transcript the provider sends when include_usage was not asked for.
    gate: after `after` events, wait for it before sending the rest.
    reset_after: abort the connection after this many events.
    """
    async def route(request, body):
        chosen = name if no_usage is None or wants_usage(body) else no_usage
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "X-Upstream-Test": "yes"})
        await resp.prepare(request)
        for i, event in enumerate(events(chosen)):
            if reset_after is not None and i == reset_after:
                request.transport.abort()
                return resp
            if gate is not None and i == after:
                await gate.wait()
            await resp.write(event)
        await resp.write_eof()
        return resp
    return route


def hang():
    async def route(request, body):
        await asyncio.Event().wait()
    return route


def status(code: int, payload: dict):
    async def route(request, body):
        return web.json_response(payload, status=code)
    return route


class Wire:
    """A TCP server that answers each request with the next scripted bytes.

    A script entry is bytes to write, or a tuple (bytes, "close") to close afterwards, or
    "close" to close without answering. Every request received is kept, whole.
    """

    def __init__(self, *script):
        self.script = list(script)
        self.requests: list[bytes] = []
        self.connections = 0

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.origin = Origin(self.url + "/base")
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.connections += 1
        try:
            while self.script:
                head = await reader.readuntil(b"\r\n\r\n")
                body = b""
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        body = await reader.readexactly(int(line.split(b":")[1]))
                if b"transfer-encoding: chunked" in head.lower():
                    body = await reader.readuntil(b"0\r\n\r\n")
                self.requests.append(head + body)
                step = self.script.pop(0)
                if step == "close":
                    break
                data, close = step if isinstance(step, tuple) else (step, False)
                writer.write(data)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()
