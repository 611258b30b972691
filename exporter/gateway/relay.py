"""The relay of an upstream's answer to the client, metered on the way, read by read."""

from __future__ import annotations

import asyncio
from time import perf_counter

from ..accounting.reading import Meter
from ..record import RequestRecord
from ..wire.request import Request


class Relay:
    """Meter the upstream's body and pass it to the client, called as each read arrives."""

    __slots__ = ("request", "rec", "t0", "meter", "busy")

    def __init__(self, request: Request, rec: RequestRecord, t0: float, meter: Meter | None):
        self.request, self.rec, self.t0, self.meter = request, rec, t0, meter
        self.busy = 0.0  # seconds spent here: the gateway's own time, not waiting

    def __call__(self, data: bytes, last: bool) -> asyncio.Future[None] | None:
        t = perf_counter()
        content, meter, request = False, self.meter, self.request
        if meter is not None:
            data, content = meter.feed(data)
            if last:
                data += meter.finish()
        if last:  # the last bytes and the end of the answer in one write, not two
            if request.conn.closed:
                raise ConnectionResetError("the client closed the connection")
            request.finish(data)
            drain = None
        else:
            drain = request.write(data)
        t1 = perf_counter()
        if content and self.rec.ttft is None:
            self.rec.ttft = t1 - self.t0
        self.busy += t1 - t
        return drain
