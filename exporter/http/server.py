"""The proxy listener's HTTP/1.1 server: llhttp (httptools) under one protocol per connection.

Profiled at 32 concurrent requests once the upstream client was our own, aiohttp's server
side (request and response objects, its payload writer, router, a StreamReader per body)
was about two fifths of the gateway's CPU, several times what a proxy needs: parse the
head, hand the raw header lines on, write the answer's head together with its first bytes.
It serves the admin listener too (telemetry/admin.py), so a gateway process does not load
aiohttp.web.

Behaviour a client relies on: keep-alive and pipelining (answered in order), chunked and
sized request bodies, Expect: 100-continue, HTTP/1.0 clients, 400/413/431/501 for what
cannot be served, and a client that goes away cancels its request's handler at once.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os

import httptools

from .futures import wake
from .request import Request

log = logging.getLogger("llm_usage_exporter")

MAX_HEAD = 64 * 1024  # request line and headers together
KEEPALIVE_SECONDS = 75.0


class _Connection(asyncio.Protocol):
    def __init__(self, server: Server):
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.drain: asyncio.Future | None = None
        self.reading_paused = False
        self.in_head = True  # reading a request line and headers
        self.head_size = 0  # bytes received since the head began
        self.url: list[bytes] = []
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.parsing: Request | None = None  # the request whose body the parser is in
        self.queue: list[Request] = []  # pipelined requests waiting their turn
        self.task: asyncio.Task | None = None
        self.idle_since: float | None = None  # loop time the last answer ended, when idle

    # --- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        # Kept: asyncio.get_running_loop() makes a getpid() system call each time (fork
        # detection), 8% of the CPU profiled at 32 concurrent requests.
        self.loop = asyncio.get_running_loop()
        self.server.connections.add(self)
        self._idle()

    def data_received(self, data: bytes) -> None:
        if self.in_head:
            self.head_size += len(data)
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

    def connection_lost(self, exc) -> None:
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
        if self.reading_paused and not self.closed and len(self.queue) < 8:
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
        self.in_head, self.head_size = False, 0
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
        if request.body_exists and request.version == "1.1":
            for name, value in request.raw_headers:
                if name.lower() == b"expect" and value.lower() == b"100-continue":
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self.task is None:
            self._begin(request)
        else:
            self.queue.append(request)
            if len(self.queue) >= 8:
                self.pause_reading()

    def on_body(self, body: bytes) -> None:
        self.parsing._feed(body)

    def on_message_complete(self) -> None:
        self.in_head = True
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


class _HeadTooLarge(Exception):
    pass


class ListenError(OSError):
    """A port that cannot be listened on: in use, not this machine's, or privileged."""

    def __init__(self, host: str, port: int, error: OSError):
        hint = {errno.EADDRINUSE: ": another process holds it; stop it, or choose another "
                                  "port (--listen, --admin-listen or the config's)",
                errno.EACCES: ": ports below 1024 need privileges; choose a higher one",
                errno.EADDRNOTAVAIL: ": that address is not one of this machine's"}
        reason = os.strerror(error.errno).lower() if error.errno else str(error)
        super().__init__(error.errno, f"{host}:{port}: {reason}{hint.get(error.errno, '')}")

    def __str__(self) -> str:
        return self.strerror


class Server:
    """Serve `handler(request)` on a port; stop by finishing what is in flight."""

    def __init__(self, handler):
        self.handler = handler
        self.connections: set[_Connection] = set()
        self.closing = False
        self.servers: list[asyncio.AbstractServer] = []
        self.sweeper: asyncio.TimerHandle | None = None
        self.all_closed: asyncio.Future | None = None  # while stopping: the last one closed

    async def listen(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        """Listen on host:port (0 picks a free port); return the port (ListenError: it
        cannot be had)."""
        try:
            server = await asyncio.get_running_loop().create_server(
                lambda: _Connection(self), host or None, port, reuse_address=True,
                reuse_port=reuse_port or None)
        except OSError as e:
            raise ListenError(host, port, e) from None
        self.servers.append(server)
        if self.sweeper is None:
            self.sweep()
        return server.sockets[0].getsockname()[1]

    def sweep(self) -> None:
        """Close connections idle for the keep-alive time; again in a tenth of that."""
        loop = asyncio.get_running_loop()
        stale = loop.time() - KEEPALIVE_SECONDS
        for conn in list(self.connections):
            if conn.idle_since is not None and conn.idle_since < stale:
                conn.transport.close()
        self.sweeper = loop.call_later(KEEPALIVE_SECONDS / 10, self.sweep)

    async def shutdown(self, timeout: float) -> None:
        """Stop accepting, close idle connections, and wait for running requests."""
        self.closing = True
        if self.sweeper is not None:
            self.sweeper.cancel()
        for server in self.servers:
            server.close()
        running = []
        for conn in list(self.connections):
            if conn.task is None:
                conn.transport.close()
            else:
                running.append(conn.task)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if running:
            done, pending = await asyncio.wait(running, timeout=timeout)
            for task in pending:
                task.cancel()
        if self.connections:  # answers written but not yet taken by slow clients
            self.all_closed = loop.create_future()
            try:
                await asyncio.wait_for(self.all_closed, max(deadline - loop.time(), 0.1))
            except TimeoutError:
                pass
        for conn in list(self.connections):
            conn.transport.abort()
