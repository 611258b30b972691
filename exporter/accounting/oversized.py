"""An event too large to hold (a base64 image in one event, tens of MB): relayed as it
comes, metered from its head and its tail.

Held whole, one 24 MB event raised the gateway's memory by 104 MB: its pieces, their join,
its data and the parsed object, each a copy. Past `LIMIT`, an event goes to the client as
its bytes come; its first and last `EDGE` bytes are kept, which hold what metering needs
(its type and model lead, its usage closes it), and its size stands for its text.
"""

from __future__ import annotations

import re
from typing import Any, TypedDict

from .body import _scan_key, _scan_object

LIMIT = 1 << 20  # an event longer than this is relayed unheld
EDGE = 65536  # of such an event, the head and the tail kept
HOLD = 4096  # its last bytes wait for its end, where a "usage":null may be to take out
BOUNDARY = re.compile(rb"\r?\n\r?\n")
_FIRST_TYPE = re.compile(rb'"type"\s*:\s*"([^"\\]{1,64})"')
WEB_SEARCH = b'"type":"web_search_call"'


class Summary(TypedDict):
    """What metering reads of an oversized event, named as an event names them."""

    type: str | None
    model: str | None
    usage: dict[str, Any] | None


class Oversized:
    """One event under way, too large to hold."""

    __slots__ = ("head", "tail", "held", "size", "web_search_calls", "seam")

    def __init__(self) -> None:
        self.head = b""
        self.tail = b""
        self.held = b""  # the last bytes passed in, not yet passed on
        self.size = 0
        self.web_search_calls = 0  # a Responses event's output items, counted as they pass
        self.seam = b""  # the last bytes seen, for a pattern split between two reads

    def take(self, chunk: bytes) -> tuple[bytes, bytes | None]:
        """Take bytes of the event; return what may go to the client now, and what came
        after the event's end (None while it goes on)."""
        data = self.held + chunk
        end = BOUNDARY.search(data)
        if end is None:
            self._keep(chunk)
            cut = max(len(data) - HOLD, 0)
            self.held = data[cut:]
            return data[:cut], None
        inside = end.end() - len(self.held)  # of the chunk, the bytes of this event
        self._keep(chunk[:max(inside, 0)])
        self.held = b""
        return data[:end.end()], data[end.end():]

    def _keep(self, data: bytes) -> None:
        self.size += len(data)
        if len(self.head) < EDGE:
            self.head += data[:EDGE - len(self.head)]
        self.tail = (self.tail + data)[-EDGE:]
        self.web_search_calls += (self.seam + data).count(WEB_SEARCH)
        self.seam = data[-(len(WEB_SEARCH) - 1):]

    def summary(self) -> Summary:
        """What metering reads of the event: its type, model and usage, as an event
        would carry them."""
        found = _FIRST_TYPE.search(self.head)
        return {"type": found.group(1).decode() if found else None,
                # Gemini's (an image inline in a chunk): modelVersion and usageMetadata,
                # after the candidates.
                "model": _scan_key(self.head, b'"model"')
                or _scan_key(self.tail, b'"modelVersion"'),
                "usage": _scan_object(self.tail, b'"usage"')
                or _scan_object(self.tail, b'"usageMetadata"')}
