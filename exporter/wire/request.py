"""One request on a client connection: its head, its body as it arrives, and its answer.

The proxy handler reads the raw header lines as received and writes the answer's head
together with its first bytes: one socket write instead of two (writes were 14% of the CPU
profiled at 32 concurrent small requests). Framing is chosen here: Content-Length when the
length is known, chunked otherwise, or a body ending at close for an HTTP/1.0 client.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from email.utils import formatdate
from http import HTTPStatus
from typing import Protocol
from urllib.parse import unquote

from .futures import wake

_BODY_HIGH_WATER = 1 << 20  # stop reading the client while this much body waits unread
_NO_BODY_STATUS = frozenset((204, 304))


class _Stopping(Protocol):
    closing: bool  # the server is stopping: no more keep-alive


class Conduit(Protocol):
    """What a request needs of the connection it came on (connection.py's
    ClientConnection): flow control and state."""

    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    closed: bool
    drain: asyncio.Future[None] | None  # while the client reads slower than we write

    @property  # read-only, so a connection's fuller server (connection.py's Serving) fits
    def server(self) -> _Stopping: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class BodyTimeout(Exception):
    """The client paused longer than the server's body_timeout while sending the body."""


class BodyTooLarge(Exception):
    """The request body is over the limit given to Request.read()."""


class Request:
    """One request on a client connection, and the means to answer it."""

    def __init__(self, conn: Conduit, method: str, target: bytes,
                 raw_headers: list[tuple[bytes, bytes]], version: str, keep_alive: bool):
        self.conn = conn
        self.transport = conn.transport
        self.method = method
        if target[:1] != b"/" and b"://" in target:  # absolute form: keep path and query
            target = b"/" + target.split(b"://", 1)[1].partition(b"/")[2]
        self.raw_path = target.decode("utf-8", "surrogateescape")
        self.path = unquote(self.raw_path.partition("?")[0], errors="surrogateescape")
        self.raw_headers = raw_headers
        self._index: dict[bytes, bytes] | None = None
        self.version = version
        self.keep_alive = keep_alive
        self.content_length: int | None = None
        chunked = False
        for name, value in raw_headers:
            lowered = name.lower()
            if lowered == b"content-length":
                self.content_length = int(value)
            elif lowered == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        self.body_exists = chunked or bool(self.content_length)
        self.body_complete = not self.body_exists
        self.timed_out = False  # the client stalled mid-body
        self._body: list[bytes] = []
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self.head: bytes | None = None  # the response head, until it is written
        self.started = False  # the response began
        self.finished = False  # the response ended
        self._chunked = False
        self._no_body = method == "HEAD"

    def header(self, name: bytes) -> str | None:
        """The first value of a request header; `name` in lowercase."""
        if self._index is None:  # the proxy asks for five or six: one pass, not six
            self._index = {}
            for n, v in self.raw_headers:
                self._index.setdefault(n.lower(), v)
        value = self._index.get(name)
        return None if value is None else value.decode("utf-8", "surrogateescape")

    # --- the request body ------------------------------------------------------------------
    def _feed(self, data: bytes) -> None:
        self._body.append(data)
        self._buffered += len(data)
        if self._buffered > _BODY_HIGH_WATER:
            self.conn.pause_reading()
        wake(self._waiter)

    def _end(self) -> None:
        self.body_complete = True
        wake(self._waiter)

    def stalled(self) -> None:
        """The client stopped sending the body (connection.py's sweep): end the wait."""
        self.timed_out = True
        wake(self._waiter)

    async def _next(self) -> bytes:
        while not self._body:
            if self.body_complete:
                return b""
            if self.conn.closed:
                raise ConnectionResetError("the client closed the connection")
            if self.timed_out:
                raise BodyTimeout
            self._waiter = self.conn.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._body.clear()
        self._buffered = 0
        self.conn.resume_reading()
        return data

    async def read(self, limit: int) -> bytes:
        """The whole body; BodyTooLarge once it exceeds `limit` bytes."""
        parts, size = [], 0
        while data := await self._next():
            size += len(data)
            if size > limit:
                raise BodyTooLarge
            parts.append(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def iter_body(self) -> AsyncIterator[bytes]:
        """The body as it arrives."""
        while data := await self._next():
            yield data

    # --- the response ----------------------------------------------------------------------
    def start(self, status: int, reason: bytes, headers: bytes, length: int | None) -> None:
        """Prepare the head; it goes out with the first body bytes, or at flush()/finish().

        `headers` are complete header lines without framing; `length`, if known, becomes
        Content-Length, otherwise the body is chunked (closed-delimited for HTTP/1.0).
        """
        self.head = self._frame(status, reason, headers, length)

    def _frame(self, status: int, reason: bytes, headers: bytes, length: int | None) -> bytes:
        """Choose the framing of the answer and return its head."""
        self.started = True
        no_body = self._no_body or status in _NO_BODY_STATUS or status < 200
        self._no_body = no_body
        if length is not None:
            framing = b"Content-Length: %d\r\n" % length
        elif no_body:
            framing = b""
        elif self.version == "1.1":
            framing, self._chunked = b"Transfer-Encoding: chunked\r\n", True
        else:
            framing, self.keep_alive = b"", False
        if not self.body_complete:
            self.keep_alive = False  # the unread rest of the body would be read as a request
        if self.conn.server.closing:
            self.keep_alive = False
        if not self.keep_alive:
            framing += b"Connection: close\r\n"
        elif self.version == "1.0":
            framing += b"Connection: keep-alive\r\n"
        return b"HTTP/1.1 %d %s\r\n%s%s\r\n" % (status, reason, headers, framing)

    def flush(self) -> None:
        """Send the head now: a stream's client learns the status before the first event."""
        if self.head is not None:
            self.transport.write(self.head)
            self.head = None

    def write(self, data: bytes) -> asyncio.Future[None] | None:
        """Send body bytes; while the client reads slower than this, return a future to
        wait for before writing more."""
        if self._no_body or not data:
            return None
        if self._chunked:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        if self.head is not None:
            data, self.head = self.head + data, None
        if self.conn.closed:
            raise ConnectionResetError("the client closed the connection")
        self.transport.write(data)
        return self.conn.drain

    def finish(self, data: bytes = b"") -> None:
        """Write the last bytes and end the response."""
        if data and not self._no_body:
            if self._chunked:
                data = b"%x\r\n%b\r\n0\r\n\r\n" % (len(data), data)
        elif self._chunked:
            data = b"0\r\n\r\n"
        else:
            data = b""
        if self.head is not None:
            data, self.head = self.head + data, None
        if data and not self.conn.closed:
            self.transport.write(data)
        self.finished = True

    def respond(self, status: int, reason: bytes, body: bytes, headers: bytes = b"") -> None:
        """Answer in one write: the gateway's own responses (errors)."""
        head = self._frame(status, reason,
                           headers + b"Date: %s\r\n" % formatdate(usegmt=True).encode(), len(body))
        if self._no_body:
            body = b""
        if not self.conn.closed:
            self.transport.write(head + body)
        self.head = None  # one start() prepared and never sent: this answer replaced it
        self.finished = True


def respond_json(request: Request, status: int, data: object, headers: bytes = b"") -> None:
    """Answer with a JSON body in one write."""
    request.respond(status, HTTPStatus(status).phrase.encode(), json.dumps(data).encode(),
                    b"Content-Type: application/json; charset=utf-8\r\n" + headers)
