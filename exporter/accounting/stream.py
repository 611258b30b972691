"""Follow a server-sent event stream: model, usage, first content, generated text.

Pure: fed the bytes the upstream sent, it returns the bytes the client must receive.
Only complete events are returned, so a usage chunk the client did not ask for can be
removed without ever holding back an event the client could already use.
"""

from __future__ import annotations

from . import oversized
from .body import loads
from .events import MEDIA, EventReader
from .reading import Reading
from .sse import BOUNDARY, fields, strip_usage_null, text_only

__all__ = ["MEDIA", "StreamMeter"]


class StreamMeter(EventReader):
    """Meter one SSE response of a known operation, event by event."""

    __slots__ = ("strip_usage", "buf", "buffered", "passing", "backlog", "backlog_size",
                 "deferring")
    BACKLOG_LIMIT = 1 << 20
    rewrites = True  # it may leave out the usage it asked for: no Content-Length

    def __init__(self, operation: str, strip_usage: bool = False):
        super().__init__(operation)
        self.strip_usage = strip_usage
        self.buf: list[bytes] = []  # an event under way, in the pieces it came in
        self.buffered = 0  # their bytes
        self.passing: oversized.Oversized | None = None  # an event too large to hold
        self.backlog: list[bytes] = []  # events read only for their text, not yet parsed
        self.backlog_size = 0  # (their text is not in `chars` until they are)
        self.deferring = False

    def feed(self, chunk: bytes) -> tuple[bytes, bool]:
        """Take upstream bytes; return complete events to forward and whether any bears content."""
        passing = self.passing
        if passing is not None:
            return self._pass(passing, chunk)
        if self.buf:
            # An event under way: look for its end in the new bytes (and the three before
            # them) only, joining the pieces once it came. Joining at every read cost
            # quadratic time: 5 s of CPU for one 48 MB event (a base64 image).
            seam = self.buf[-1][-3:] + chunk[:3]
            if b"\n\n" not in chunk and b"\r\r" not in chunk and b"\n\r\n" not in chunk \
                    and b"\n\n" not in seam and b"\r\r" not in seam and b"\n\r\n" not in seam:
                return self._hold(chunk)
            buf = b"".join(self.buf) + chunk
            self.buf, self.buffered = [], 0
        else:
            buf = chunk
        if b"\r" in buf:
            return self._feed_any_newlines(buf)
        # Profiled: a regex split cost a fifth of the gateway's CPU on 50-chunk streams;
        # providers end events with "\n\n", so plain bytes methods do.
        end = buf.rfind(b"\n\n")
        if end < 0:
            return self._hold(buf)
        complete, rest = buf[:end + 2], buf[end + 2:]
        self.buf, self.buffered = ([rest], len(rest)) if rest else ([], 0)
        if self.deferring and text_only(complete):  # a read of text only: kept whole
            self._defer(complete)
            content = False
        elif buf.find(b"\n\n") == end:  # one event, the usual read: no split
            keep, content = self._event(complete[:-2])
            if not keep:
                return b"", content
        else:
            events = complete.split(b"\n\n")[:-1]
            kept, content = [], False
            for event in events:
                keep, has_content = self._event(event)
                content = content or has_content
                if keep:
                    kept.append(event)
            if len(kept) < len(events):
                complete = b"".join(e + b"\n\n" for e in kept)
        return (strip_usage_null(complete) if self.strip_usage else complete), content

    def _feed_any_newlines(self, buf: bytes) -> tuple[bytes, bool]:
        """Split events ended by any of the blank lines the SSE spec allows."""
        start, out, content = 0, [], False
        for m in BOUNDARY.finditer(buf):
            keep, has_content = self._event(buf[start:m.start()])
            raw = buf[start:m.end()]
            start = m.end()
            content = content or has_content
            if keep:
                out.append(strip_usage_null(raw) if self.strip_usage else raw)
        if start < len(buf):
            held, content_held = self._hold(buf[start:])
            return b"".join(out) + held, content or content_held
        return b"".join(out), content

    def _hold(self, piece: bytes) -> tuple[bytes, bool]:
        """Keep a piece of an event under way; past oversized.LIMIT, pass the event on as
        it comes instead (its first bytes count as content)."""
        self.buf.append(piece)
        self.buffered += len(piece)
        if self.buffered <= oversized.LIMIT:
            return b"", False
        pending, self.buf, self.buffered = b"".join(self.buf), [], 0
        passing = self.passing = oversized.Oversized()
        return self._pass(passing, pending)[0], True

    def _pass(self, passing: oversized.Oversized, chunk: bytes) -> tuple[bytes, bool]:
        """Relay bytes of an oversized event (`passing`, the one under way); meter it at its
        end, then go on as usual."""
        out, rest = passing.take(chunk)
        if rest is None:
            return out, False
        self.passing = None
        self._oversized(passing)
        if self.strip_usage:
            out = strip_usage_null(out)
        if not rest:
            return out, False
        more, content = self.feed(rest)
        return out + more, content

    def finish(self) -> bytes:
        """Return a last event the upstream ended without a blank line, metered like the rest."""
        if self.passing is not None:  # an oversized one: what it still holds
            event, self.passing = self.passing, None
            rest = event.held
            self._oversized(event)
            return strip_usage_null(rest) if self.strip_usage else rest
        rest, self.buf, self.buffered = b"".join(self.buf), [], 0
        if not rest.strip():
            return rest
        keep, _ = self._event(rest)
        if keep is False:
            return b""
        return strip_usage_null(rest) if self.strip_usage else rest

    @property
    def output_chars(self) -> int:
        """Characters of generated text, for an estimate when no usage is reported."""
        self._parse_backlog()
        return self.chars

    def reading(self) -> Reading:
        # Anthropic streams report input at message_start, the final output only later.
        return Reading(self.model, self.usage, input_known=self.usage is not None,
                       output_known=self.final,
                       output_chars=0 if self.final else self.output_chars,
                       service_tier=self.service_tier, web_search_calls=self.web_search_calls,
                       error_type=self.error_type, error_message=self.error_message or "")

    def _defer(self, events: bytes) -> None:
        # Once the first content passed, events with no usage and no error matter only for
        # their text, which counts only if usage never comes: they are parsed then, or
        # never. Profiled: parsing every event was a third of a 50-chunk stream's CPU.
        self.backlog.append(events)
        self.backlog_size += len(events)
        if self.backlog_size > self.BACKLOG_LIMIT:
            self._parse_backlog()

    def _parse_backlog(self) -> None:
        backlog, self.backlog, self.backlog_size = self.backlog, [], 0
        for events in backlog:  # one event, or several each ended by a blank line
            for event in events.split(b"\n\n"):
                if event:
                    self._parse(event)

    def _event(self, event: bytes) -> tuple[bool, bool]:
        if self.deferring and text_only(event):
            self._defer(event)
            return True, False
        keep, content = self._parse(event)
        if content:
            self.deferring = True
        return keep, content

    def _parse(self, event: bytes) -> tuple[bool, bool]:
        try:
            return self._read(event)
        except Exception:  # a field of an unexpected type: pass the event on, uncounted
            self.malformed += 1
            return True, False

    def _read(self, event: bytes) -> tuple[bool, bool]:
        name, data = fields(event)
        if not data or data == b"[DONE]":
            return True, False
        try:
            obj = loads(data)
        except ValueError:
            return True, False
        if not isinstance(obj, dict):
            return True, False
        return self._dispatch(obj)
