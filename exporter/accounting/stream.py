"""Follow a server-sent event stream: model, usage, first content, generated text.

Pure: fed the bytes the upstream sent, it returns the bytes the client must receive.
Only complete events are returned, so a usage chunk the client did not ask for can be
removed without ever holding back an event the client could already use.
"""

from __future__ import annotations

from .body import loads
from .operations import COMPLETION, IMAGES, MESSAGES, RESPONSES, SPEECH, TRANSCRIPTION
from .sse import BOUNDARY, fields, strip_usage_null, text_only
from .usage import web_search_calls

_DELTA_KEYS = frozenset(("content", "reasoning_content", "reasoning", "refusal"))
MEDIA = frozenset((IMAGES, TRANSCRIPTION, SPEECH))


def _chars(value) -> int:
    return len(value) if isinstance(value, str) else 0


class StreamMeter:
    """Meter one SSE response of a known operation, event by event."""

    __slots__ = ("operation", "strip_usage", "buf", "model", "usage", "final", "chars",
                 "error_type", "error_message", "service_tier", "backlog", "backlog_size",
                 "deferring", "web_search_calls", "malformed")
    BACKLOG_LIMIT = 1 << 20
    rewrites = True  # it may leave out the usage it asked for: no Content-Length

    def __init__(self, operation: str, strip_usage: bool = False):
        self.operation = operation
        self.strip_usage = strip_usage
        self.buf: list[bytes] = []  # an event under way, in the pieces it came in
        self.model: str | None = None
        self.usage: dict | None = None
        self.final = False  # the usage seen includes the final output count
        self.chars = 0  # generated text so far, less the backlog's
        self.backlog: list[bytes] = []  # events read only for their text, not yet parsed
        self.backlog_size = 0
        self.deferring = False
        self.error_type: str | None = None
        self.error_message: str | None = None
        self.service_tier: str | None = None
        self.web_search_calls = 0  # Responses: the completed response's web_search_call items
        self.malformed = 0  # events whose fields had types no API sends: passed on as they are

    def feed(self, chunk: bytes) -> tuple[bytes, bool]:
        """Take upstream bytes; return complete events to forward and whether any bears content."""
        if self.buf:
            # An event under way: look for its end in the new bytes (and the three before
            # them) only, joining the pieces once it came. Joining at every read cost
            # quadratic time: 5 s of CPU for one 48 MB event (a base64 image).
            seam = self.buf[-1][-3:] + chunk[:3]
            if b"\n\n" not in chunk and b"\r\r" not in chunk and b"\n\r\n" not in chunk \
                    and b"\n\n" not in seam and b"\r\r" not in seam and b"\n\r\n" not in seam:
                self.buf.append(chunk)
                return b"", False
            buf = b"".join(self.buf) + chunk
            self.buf = []
        else:
            buf = chunk
        if b"\r" in buf:
            return self._feed_any_newlines(buf)
        # Profiled: a regex split cost a fifth of the gateway's CPU on 50-chunk streams;
        # providers end events with "\n\n", so plain bytes methods do.
        end = buf.rfind(b"\n\n")
        if end < 0:
            self.buf = [buf]
            return b"", False
        complete, rest = buf[:end + 2], buf[end + 2:]
        self.buf = [rest] if rest else []
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
        self.buf = [buf[start:]] if start < len(buf) else []
        return b"".join(out), content

    def finish(self) -> bytes:
        """Return a last event the upstream ended without a blank line, metered like the rest."""
        rest, self.buf = b"".join(self.buf), []
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
        if self.operation == MESSAGES:
            return True, self._anthropic(obj)
        if self.operation == RESPONSES:
            return True, self._responses(obj)
        if self.operation in MEDIA:
            return True, self._media(obj)
        return self._openai(obj)

    def _error(self, err) -> None:
        if isinstance(err, dict):
            self.error_type = str(err.get("type") or err.get("code") or "error")
            self.error_message = str(err.get("message") or "")[:500]
        else:
            self.error_type, self.error_message = "error", str(err)[:500]

    def _openai(self, obj: dict) -> tuple[bool, bool]:
        # The first chunk that names them: Azure's first chunk is a content-filter
        # annotation with "model": "" and no service tier.
        if not self.model:
            model = obj.get("model")
            if isinstance(model, str) and model:
                self.model = model
        if self.service_tier is None and isinstance(obj.get("service_tier"), str):
            self.service_tier = obj["service_tier"]
        if "error" in obj:
            self._error(obj["error"])
        choices = obj.get("choices")
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.usage, self.final = usage, True
            if self.strip_usage and not choices:
                return False, False
        chars, content = 0, False
        for choice in choices or ():
            if not isinstance(choice, dict):
                continue
            if self.operation == COMPLETION or "text" in choice:
                chars += _chars(choice.get("text"))
                continue
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            for key, value in delta.items():
                if key in _DELTA_KEYS and type(value) is str:
                    chars += len(value)
            for call in delta.get("tool_calls") or ():
                content = True
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict):
                    chars += _chars(fn.get("name")) + _chars(fn.get("arguments"))
            if delta.get("audio"):
                content = True
        self.chars += chars
        return True, content or chars > 0

    def _responses(self, obj: dict) -> bool:
        kind = obj.get("type")
        if not isinstance(kind, str):
            return False
        if kind.endswith(".delta"):
            self.chars += _chars(obj.get("delta"))
            return True
        response = obj.get("response")
        if isinstance(response, dict):
            if isinstance(response.get("model"), str):
                self.model = response["model"]
            if isinstance(response.get("service_tier"), str):
                self.service_tier = response["service_tier"]
            if isinstance(response.get("usage"), dict):
                self.usage, self.final = response["usage"], True
                self.web_search_calls = web_search_calls(response)
            if kind == "response.failed":
                self._error(response.get("error") or "response.failed")
        elif kind == "error":
            self._error(obj.get("error") or obj)
        return False

    def _media(self, obj: dict) -> bool:
        """Image, transcription and speech streams: typed events, usage in the last."""
        kind = obj.get("type")
        if not isinstance(kind, str):
            return False
        if isinstance(obj.get("usage"), dict):  # image_generation.completed, *.done
            self.usage, self.final = obj["usage"], True
        if kind == "error":
            self._error(obj.get("error") or obj)
            return False
        if kind == "transcript.text.delta":
            self.chars += _chars(obj.get("delta"))
        return kind.endswith((".delta", ".partial_image"))  # the first content

    def _anthropic(self, obj: dict) -> bool:
        kind = obj.get("type")
        if kind == "content_block_delta":
            delta = obj.get("delta")
            if isinstance(delta, dict):
                self.chars += (_chars(delta.get("text")) + _chars(delta.get("thinking"))
                                      + _chars(delta.get("partial_json")))
            return True
        if kind == "message_start":
            message = obj.get("message")
            if isinstance(message, dict):
                if isinstance(message.get("model"), str):
                    self.model = message["model"]
                if isinstance(message.get("usage"), dict):
                    self.usage = dict(message["usage"])
        elif kind == "message_delta":
            # message_delta carries cumulative counts: they replace, never add to, the start's.
            usage = obj.get("usage")
            if isinstance(usage, dict):
                merged = self.usage if self.usage is not None else {}
                merged.update((k, v) for k, v in usage.items() if v is not None)
                self.usage, self.final = merged, "output_tokens" in usage
        elif kind == "error":
            self._error(obj.get("error"))
        return False
