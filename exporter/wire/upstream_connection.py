"""One keep-alive HTTP/1.1 connection to an upstream; during an exchange, also its answer.

The answer is parsed with llhttp (httptools) as bytes arrive. Whatever the network
delivered in one read is handed over as one piece, so a burst of ready stream events costs
one write to the client, and with pipe() it is handed over from the read callback itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable
from typing import Protocol, cast

import httptools

from .futures import wake

_HIGH_WATER = 256 * 1024  # stop reading the upstream while this much waits for the client

Key = tuple[str, int, bool]  # an origin's host, port and TLS: what a pooled connection serves
Body = bytes | AsyncIterable[bytes] | None  # a request's body: whole, streamed, or none
# Takes each piece of the answer's body; a future while the client is slower than the upstream.
# sink(data, last): the body as it arrives; `last`, it ends with these bytes.
Sink = Callable[[bytes, bool], asyncio.Future[None] | None]


class Keeper(Protocol):
    """Where a connection goes back after a clean exchange (upstream.py's Pool)."""

    def keep(self, conn: Connection) -> None: ...

    def forget(self, conn: Connection) -> None: ...


class UpstreamError(Exception):
    """The upstream closed, reset or garbled the exchange."""


class ClientStalled(Exception):
    """The client read nothing for the time allowed while the upstream was held back for it."""


class ConnectError(UpstreamError):
    """No connection could be made to the upstream."""


class Connection(asyncio.Protocol):
    """One keep-alive connection; during an exchange it is also the response."""

    def __init__(self, pool: Keeper, key: Key):
        self.pool, self.key = pool, key
        self.transport: asyncio.Transport  # from connection_made, asyncio's first callback
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0  # loop time it went back to the pool
        self._waiter: asyncio.Future[None] | None = None
        self._sink: Sink | None = None  # while piping: called with the body as it arrives
        self._timeout = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._drain: asyncio.Future[None] | None = None
        self._client_timeout: float | None = None
        self._holding = False  # reading paused for a slow client: its time, not the upstream's
        self._reset(head=False)

    def _reset(self, head: bool) -> None:
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head = head  # a response to HEAD has no body, whatever its Content-Length says
        self.started = False  # any byte of this response arrived
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.error: Exception | None = None
        self._body: list[bytes] = []
        self._buffered = 0
        self._reading_paused = False
        self._holding = False

    # --- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream connection's transport is a Transport (uvloop's is one in all but its class).
        self.transport = cast(asyncio.Transport, transport)
        self._loop = asyncio.get_running_loop()  # once: each call makes a getpid() syscall

    def data_received(self, data: bytes) -> None:
        self.started = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self.error = UpstreamError(f"invalid HTTP from the upstream: {e}")
            self.keep_alive = False
            self.transport.abort()
        sink = self._sink
        if sink is None:
            wake(self._waiter)
            return
        if self._body:
            self._deliver(sink)
        if self.complete or self.error is not None:
            wake(self._waiter)
        elif not self._holding:
            self._deadline = self._loop.time() + self._timeout  # silence counts from now

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        self.pool.forget(self)
        if self.headers_done and not self.complete and exc is None and self._close_delimited():
            self.complete = True  # no Content-Length, not chunked: the body ends at close
        elif not self.complete and self.error is None:
            self.error = UpstreamError(f"the upstream closed the connection: {exc!r}" if exc
                                       else "the upstream closed the connection")
        wake(self._waiter)
        wake(self._drain)

    def pause_writing(self) -> None:
        self._drain = self._loop.create_future()

    def resume_writing(self) -> None:
        wake(self._drain)
        self._drain = None

    # --- httptools callbacks ---------------------------------------------------------------
    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # 100 Continue and other interim answers: wait for the real one
            self.headers, self.reason = [], b""
            return
        self.status = status
        self.headers_done = True
        if self.head:
            self.complete = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._reading_paused and self._sink is None:
            self._reading_paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.headers_done:
            self.complete = True
            # Asked after this callback, llhttp answers for the next message, not this one.
            self.keep_alive = self.parser.should_keep_alive()

    # --- the exchange ----------------------------------------------------------------------
    def _close_delimited(self) -> bool:
        if self.status in (204, 304):
            return False
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == b"content-length" or (lowered == b"transfer-encoding"
                                                and b"chunked" in value.lower()):
                return False
        return True

    @property
    def body_arrived(self) -> bool:
        """Body bytes came with the head (a stream's first events, often)."""
        return bool(self._body)

    def header(self, name: bytes, default: bytes = b"") -> bytes:
        """The first value of a response header; `name` in lowercase."""
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return default

    async def _wait(self, timeout: float | None) -> None:
        # One timer per connection, moved on lazily: a timer set and cancelled per wait,
        # once for each event of a stream, cost 2 us a time (profiled on 50-chunk streams).
        loop = self._loop
        waiter = self._waiter = loop.create_future()
        if timeout:
            if not self._holding:  # while held back for the client, its deadline stands
                self._deadline = loop.time() + timeout
            if self._timer is None or self._timer.when() > self._deadline:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = loop.call_at(self._deadline, self._check_deadline)
        try:
            await waiter
        finally:
            self._waiter = None

    def _check_deadline(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # nobody waits now: the next wait sets a timer again
        loop = self._loop
        if loop.time() >= self._deadline:
            waiter.set_exception(ClientStalled() if self._holding else TimeoutError())
        else:
            self._timer = loop.call_at(self._deadline, self._check_deadline)

    async def send(self, head: bytes, body: Body, chunked: bool) -> None:
        """Write the request: `body` is bytes, None, or an async iterator of bytes."""
        if body is None or isinstance(body, bytes):
            self.transport.write(head + body if body else head)
            return
        self.transport.write(head)
        async for piece in body:
            if self.closed:
                raise self.error or UpstreamError("the upstream closed the connection")
            if piece:
                self.transport.write(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
            if self._drain is not None:
                await self._drain
        if chunked:
            self.transport.write(b"0\r\n\r\n")

    async def response(self, timeout: float | None) -> None:
        """Wait for the status line and headers, at most `timeout` seconds of silence."""
        while not self.headers_done:
            if self.error is not None:
                raise self.error
            await self._wait(timeout)

    async def pipe(self, sink: Sink, timeout: float, client_timeout: float | None = None) -> None:
        """Hand the body to `sink(data, last)` as it arrives, until its end.

        The sink runs inside data_received: no task wakes per read (profiled on 50-chunk
        streams, waking the handler for each read cost more than metering the events).
        It returns None, or a future while the client is slow: reading the upstream
        pauses until it is done. An exception from the sink ends the exchange: raised here.
        While paused, the upstream's silence is not counted against `timeout`; the client
        gets `client_timeout` seconds to take what it was sent (else ClientStalled).
        """
        self._sink, self._timeout, self._client_timeout = sink, timeout, client_timeout
        try:
            if self._body:
                self._deliver(sink)
            while self.error is None and not self.complete:
                await self._wait(timeout)
            # Bytes that are no HTTP after a complete answer spoil the connection, not the
            # answer, which the client has whole: the connection is closed, not kept.
            if self.error is not None and not (self.complete
                                               and isinstance(self.error, UpstreamError)):
                raise self.error
        finally:
            self._sink = None

    def _deliver(self, sink: Sink) -> None:
        data = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._body.clear()
        self._buffered = 0
        try:
            drain = sink(data, self.complete)
        except Exception as e:  # the client went away, or the gateway failed: stop here
            self.error, self._sink = e, None
            return
        if drain is not None:
            if not self._reading_paused:
                self._reading_paused = True
                self.transport.pause_reading()
                self._hold()
            drain.add_done_callback(self._drained)
        elif self._reading_paused:
            self._drained(None)

    def _hold(self) -> None:
        """Count the client's time from now, not the upstream's."""
        self._holding = True
        loop = self._loop
        self._deadline = loop.time() + (self._client_timeout or 1e9)
        if self._timer is not None and self._timer.when() > self._deadline:
            self._timer.cancel()
            self._timer = None
        if self._timer is None and self._waiter is not None:
            self._timer = loop.call_at(self._deadline, self._check_deadline)

    def _drained(self, _: object) -> None:
        if self._holding:  # the upstream's silence counts again, from now
            self._holding = False
            self._deadline = self._loop.time() + self._timeout
        if self._reading_paused and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()

    def release(self) -> None:
        """Keep the connection for the next request if this exchange ended cleanly."""
        if self.complete and self.keep_alive and not self.closed and not self._body:
            self.pool.keep(self)
        else:
            self.closed = True
            self.transport.abort()
