"""The gateway's HTTP/1.1 server: one listener, its connections (connection.py), a sweep.

Profiled at 32 concurrent requests once the upstream client was our own, aiohttp's server
side (request and response objects, its payload writer, router, a StreamReader per body)
was about two fifths of the gateway's CPU, several times what a proxy needs: parse the
head, hand the raw header lines on, write the answer's head together with its first bytes.
It serves the admin listener too (telemetry/admin.py), so a gateway process does not load
aiohttp.web.

Behaviour a client relies on: keep-alive and pipelining (answered in order), chunked and
sized request bodies, Expect: 100-continue, HTTP/1.0 clients, 400/408/413/431/501/503 for
what cannot be served, and a client that goes away cancels its request's handler at once.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Awaitable, Callable

from .connection import KEEPALIVE_SECONDS, ClientConnection
from .request import Request

# Seconds a handler cancelled at shutdown has to finish what cannot be cut short (a job's
# claim the gateway's ledger is deciding) and hand its record on.
CANCELLED_GRACE = 10.0


class ListenError(OSError):
    """A port that cannot be listened on: in use, not this machine's, or privileged."""

    def __init__(self, host: str, port: int, error: OSError):
        hints = {errno.EADDRINUSE: ": another process holds it; stop it, or choose another "
                                   "port (--listen, --admin-listen or the config's; with make "
                                   "demo, DEMO_ARGS=\"--listen ...\")",
                 errno.EACCES: ": ports below 1024 need privileges; choose a higher one",
                 errno.EADDRNOTAVAIL: ": that address is not one of this machine's"}
        code = error.errno
        reason = os.strerror(code).lower() + hints.get(code, "") if code else str(error)
        self.message = f"{host}:{port}: {reason}"
        super().__init__(code, self.message)

    def __str__(self) -> str:
        return self.message


class Server:
    """Serve `handler(request)` on a port; stop by finishing what is in flight."""

    def __init__(self, handler: Callable[[Request], Awaitable[None]], *,
                 head_timeout: float = 60.0, body_timeout: float = 120.0,
                 max_connections: int = 4096, refused: Callable[[], None] | None = None):
        self.handler = handler
        self.head_timeout, self.body_timeout = head_timeout, body_timeout
        self.keepalive = KEEPALIVE_SECONDS
        self.max_connections = max_connections
        self.refused = refused or (lambda: None)  # called for each connection refused
        self.connections: set[ClientConnection] = set()
        self.closing = False
        self.servers: list[asyncio.AbstractServer] = []
        self.sweeper: asyncio.TimerHandle | None = None
        self.all_closed: asyncio.Future[None] | None = None  # while stopping: the last one closed

    async def listen(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        """Listen on host:port (0 picks a free port); return the port (ListenError: it
        cannot be had)."""
        try:
            server = await asyncio.get_running_loop().create_server(
                lambda: ClientConnection(self), host or None, port, reuse_address=True,
                reuse_port=reuse_port or None)
        except OSError as e:
            raise ListenError(host, port, e) from None
        self.servers.append(server)
        if self.sweeper is None:
            self.sweep()
        return int(server.sockets[0].getsockname()[1])  # getsockname() is typed Any

    def sweep(self) -> None:
        """End connections that waited too long (connection.py); again soon."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conn in list(self.connections):
            conn.expire(now)
        # A timestamp per connection and one timer per server: a timer set and cancelled per
        # request was 3% of the CPU profiled at 32 concurrent requests.
        every = min(self.keepalive / 10, self.head_timeout / 4, self.body_timeout / 4)
        self.sweeper = loop.call_later(every, self.sweep)

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
            if pending:  # each ends in its record, once its handler has run its course
                await asyncio.wait(pending, timeout=CANCELLED_GRACE)
        if self.connections:  # answers written but not yet taken by slow clients
            self.all_closed = loop.create_future()
            try:
                await asyncio.wait_for(self.all_closed, max(deadline - loop.time(), 0.1))
            except TimeoutError:
                pass
        for conn in list(self.connections):
            conn.transport.abort()
