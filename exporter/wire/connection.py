"""One client connection of the gateway's HTTP/1.1 server, parsed by llhttp (httptools).

Every wait has a limit: a head has `head_timeout` to arrive (then 408), a body may pause
at most `body_timeout` (then its handler answers 408), an idle keep-alive lasts
KEEPALIVE_SECONDS, and past `max_connections` a new connection is answered 503.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, cast

import httptools

from .futures import wake
from .request import Request

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024  # request line and headers together
KEEPALIVE_SECONDS = 75.0
# Pipelined requests a connection may queue behind the one being answered before the
# server stops reading it: more would only hold memory for a client that does not wait.
PIPELINED = 8


class Serving(Protocol):
    """What a connection needs of the server that accepted it (server.py's Server)."""

    handler: Callable[[Request], Awaitable[None]]
    connections: set[ClientConnection]
    max_connections: int
    refused: Callable[[], None]
    closing: bool  # stopping: no more keep-alive
    all_closed: asyncio.Future[None] | None  # while stopping: the last one closed
    keepalive: float
    head_timeout: float
    body_timeout: float


class ClientConnection(asyncio.Protocol):
    """One client connection: its requests parsed in turn, each answered by a task."""

    def __init__(self, server: Serving):
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport  # from connection_made, asyncio's first callback
        self.closed = False
        self.drain: asyncio.Future[None] | None = None
        self.reading_paused = False
        self.in_head = True  # reading a request line and headers
        self.head_size = 0  # bytes received since the head began
        self.url: list[bytes] = []
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.parsing: Request | None = None  # the request whose body the parser is in
        self.queue: list[Request] = []  # pipelined requests waiting their turn
        self.task: asyncio.Task[None] | None = None
        self.idle_since: float | None = None  # loop time the last answer ended, when idle
        self.head_since: float | None = None  # loop time a request's head began to come
        self.body_since: float | None = None  # loop time a pending body last sent bytes

    # --- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream server's transport is a Transport (uvloop's is one in all but its class).
        self.transport = cast(asyncio.Transport, transport)
        # Kept: asyncio.get_running_loop() makes a getpid() system call each time (fork
        # detection), 8% of the CPU profiled at 32 concurrent requests.
        self.loop = asyncio.get_running_loop()
        if len(self.server.connections) >= self.server.max_connections:
            self.server.refused()
            self.transport.write(b"HTTP/1.1 503 Service Unavailable\r\n"
                                 b"Content-Type: text/plain\r\n"
                                 b"Content-Length: 45\r\nConnection: close\r\n\r\n"
                                 b"too many connections to the gateway: retry")
            self.transport.close()
            self.closed = True
            return
        self.server.connections.add(self)
        self._idle()

    def data_received(self, data: bytes) -> None:
        if self.in_head:
            self.head_size += len(data)
            if self.head_since is None:
                self.head_since = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(501, b"Not Implemented",
                         b"the gateway does not forward protocol upgrades (WebSocket)")
            return
        except httptools.HttpParserError as e:
            if isinstance(e.__context__, _HeadTooLarge):
                self._too_large()
            else:
                self._refuse(400, b"Bad Request", f"invalid HTTP request: {e}".encode())
            return
        if self.in_head and self.head_size > MAX_HEAD:  # a head that never ends
            self._too_large()

    def _too_large(self) -> None:
        self._refuse(431, b"Request Header Fields Too Large",
                     b"request line and headers over %d bytes" % MAX_HEAD)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return  # refused at connection_made: never counted in
        self.closed = True
        self.server.connections.discard(self)
        if not self.server.connections:
            wake(self.server.all_closed)
        if self.parsing is not None:
            wake(self.parsing._waiter)
        wake(self.drain)
        if self.task is not None and not self.task.done():
            self.task.cancel()  # nobody reads the answer: stop paying for it

    def pause_writing(self) -> None:
        self.drain = self.loop.create_future()

    def resume_writing(self) -> None:
        wake(self.drain)
        self.drain = None

    def pause_reading(self) -> None:
        if not self.reading_paused and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and not self.closed and len(self.queue) < PIPELINED:
            self.reading_paused = False
            self.transport.resume_reading()

    # --- httptools callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = []
        self.raw_headers = []

    def on_url(self, url: bytes) -> None:
        self.url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_head, self.head_size, self.head_since = False, 0, None
        # A head that arrived whole in one read is measured here; data_received catches
        # one that never ends.
        if sum(map(len, self.url)) + sum(len(n) + len(v) + 4 for n, v in self.raw_headers) \
                > MAX_HEAD:
            raise _HeadTooLarge  # feed_data raises HttpParserCallbackError from it
        parser = self.parser
        if parser.should_upgrade():
            return  # feed_data raises HttpParserUpgrade next: refused there
        request = Request(self, parser.get_method().decode("ascii", "replace"),
                          b"".join(self.url), self.raw_headers, parser.get_http_version(),
                          parser.should_keep_alive())
        self.parsing = request
        if request.body_exists:
            self.body_since = self.loop.time()
        if request.body_exists and request.version == "1.1":
            for name, value in request.raw_headers:
                if name.lower() == b"expect" and value.lower() == b"100-continue":
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self.task is None:
            self._begin(request)
        else:
            self.queue.append(request)
            if len(self.queue) >= PIPELINED:
                self.pause_reading()

    def on_body(self, body: bytes) -> None:
        self.body_since = self.loop.time()
        if self.parsing is not None:  # always: llhttp calls this only after on_headers_complete
            self.parsing._feed(body)

    def on_message_complete(self) -> None:
        self.in_head, self.body_since = True, None
        if self.parsing is not None:
            self.parsing._end()

    # --- running requests ------------------------------------------------------------------
    def _begin(self, request: Request) -> None:
        self.idle_since = None
        self.task = self.loop.create_task(self._run(request))

    async def _run(self, request: Request) -> None:
        try:
            await self.server.handler(request)
        except asyncio.CancelledError:
            return  # the client went away (connection_lost) or the server is stopping
        except Exception:
            log.exception("unhandled error answering %s %s", request.method, request.path)
        finally:
            self.task = None
            if not request.finished and not self.closed:
                if request.started:
                    self.transport.abort()  # cut: the client must not take it as complete
                else:
                    request.keep_alive = False
                    request.respond(500, b"Internal Server Error", b"internal error")
        if self.closed:
            return
        if not request.keep_alive:
            self.transport.close()
        elif self.queue:
            self._begin(self.queue.pop(0))
            self.resume_reading()
        else:
            self._idle()

    def _idle(self) -> None:
        # A timestamp, not a timer: a timer set and cancelled per request was 3% of the
        # CPU profiled at 32 concurrent requests. Server.sweep() closes the stale ones.
        if self.server.closing:
            self.transport.close()
        else:
            self.idle_since = self.loop.time()

    def _refuse(self, status: int, reason: bytes, message: bytes) -> None:
        """Answer a request the parser rejected, then close: the stream is out of step."""
        if self.task is None and not self.closed:
            self.transport.write(b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
                                 b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                                 % (status, reason, len(message), message))
            self.transport.close()
        elif not self.closed:
            self.transport.abort()  # mid-request (a garbled chunk): the handler sees it cut






    def expire(self, now: float) -> None:
        """End what has waited too long: an idle keep-alive, a head, a body."""
        server = self.server
        if self.idle_since is not None and now - self.idle_since > server.keepalive:
            self.transport.close()
        elif self.head_since is not None and now - self.head_since > server.head_timeout \
                and self.task is None:
            self._refuse(408, b"Request Timeout",
                         b"the request line and headers took over %d s" % server.head_timeout)
        elif self.body_since is not None and now - self.body_since > server.body_timeout \
                and self.parsing is not None and not self.reading_paused:  # paused: ours
            self.body_since = None
            self.parsing.stalled()  # its handler answers 408, or cuts what it forwards


class _HeadTooLarge(Exception):
    pass
