"""AWS event streams (application/vnd.amazon.eventstream): Bedrock's ConverseStream and
InvokeModelWithResponseStream, metered frame by frame as they pass, their bytes untouched.

A frame: its total length and its headers' length (4 bytes each, big-endian), the CRC-32
of those 8 bytes, the headers (name length, name, value type, value), the payload, and the
CRC-32 of all that came before. ConverseStream's payloads are JSON events named by the
`:event-type` header (contentBlockDelta, metadata with the usage, ...); InvokeModel's are
`chunk` events whose `bytes` hold, in base64, the model maker's own event (Anthropic's
message_start, content_block_delta, ... for Claude), the last with Bedrock's
`amazon-bedrock-invocationMetrics`. An exception frame (`:message-type` exception) is an
error inside a 200 stream. A frame whose CRC does not match is not read; a prelude that
does not, and the rest of the stream is relayed unread (its usage then estimated).
"""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any

from .body import loads
from .events import EventReader
from .operations import CONVERSE, MESSAGES
from .reading import Reading

_PRELUDE = struct.Struct(">III")
MAX_FRAME = 16 << 20  # a frame longer than AWS allows is no frame: the stream goes unread
_STRING = 7  # the header value type of a string: 2 bytes of length, then the bytes
# Each value type's size when fixed (bool true, bool false, byte, short, int, long,
# -, -, timestamp, uuid); 6 (bytes) and 7 (string) carry their length.
_FIXED = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}


def headers_of(data: bytes) -> dict[str, Any]:
    """A frame's headers, the string ones decoded (the others are no use to metering)."""
    found: dict[str, Any] = {}
    at = 0
    while at < len(data):
        size = data[at]
        name = data[at + 1:at + 1 + size].decode("utf-8", "replace")
        at += 1 + size
        kind = data[at]
        at += 1
        if kind in (6, _STRING):
            length = int.from_bytes(data[at:at + 2], "big")
            value = data[at + 2:at + 2 + length]
            found[name] = value.decode("utf-8", "replace") if kind == _STRING else value
            at += 2 + length
        elif kind in _FIXED:
            at += _FIXED[kind]
        else:
            raise ValueError(f"unknown header value type {kind}")
    return found


def metrics_usage(metrics: dict[str, Any]) -> dict[str, Any]:
    """InvokeModel's invocation metrics, named as Converse names its usage."""
    return {"inputTokens": metrics.get("inputTokenCount"),
            "outputTokens": metrics.get("outputTokenCount"),
            "cacheReadInputTokens": metrics.get("cacheReadInputTokenCount"),
            "cacheWriteInputTokens": metrics.get("cacheWriteInputTokenCount")}


class EventStreamMeter:
    """Meter one AWS event stream; the client gets its bytes as they come."""

    rewrites = False

    def __init__(self, operation: str):
        self.operation = operation
        self.buf = bytearray()  # the frame under way
        self.unread = False  # framing lost: the rest passes unread
        self.usage: dict[str, Any] | None = None  # Converse's, or the invocation metrics
        self.final = False
        self.chars = 0
        self.error_type: str | None = None
        self.error_message = ""
        self.maker = EventReader(MESSAGES)  # an InvokeModel stream of Claude's events
        self.malformed = 0

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        if self.unread:
            return data, False
        buf = self.buf
        buf += data
        content = False
        while len(buf) >= _PRELUDE.size:
            total, length, crc = _PRELUDE.unpack_from(buf)
            if zlib.crc32(buf[:8]) != crc or not 16 <= total <= MAX_FRAME \
                    or length > total - 16:
                self.unread, self.malformed = True, self.malformed + 1
                buf.clear()
                break
            if len(buf) < total:
                break
            frame = bytes(buf[:total])
            del buf[:total]
            if zlib.crc32(frame[:-4]) != int.from_bytes(frame[-4:], "big"):
                self.malformed += 1
                continue
            try:
                content = self._frame(headers_of(frame[12:12 + length]),
                                      frame[12 + length:-4]) or content
            except Exception:  # a field of a type no API sends: passed on, uncounted
                self.malformed += 1
        return data, content

    def _frame(self, headers: dict[str, Any], payload: bytes) -> bool:
        if headers.get(":message-type") == "exception":
            self.error_type = str(headers.get(":exception-type") or "exception")
            found = loads(payload) if payload else {}
            self.error_message = str(found.get("message") if isinstance(found, dict)
                                     else "")[:500]
            return False
        kind, event = headers.get(":event-type"), loads(payload) if payload else {}
        if not isinstance(event, dict):
            return False
        if self.operation == CONVERSE:
            return self._converse(kind, event)
        if kind != "chunk" or not isinstance(event.get("bytes"), str):
            return False
        inner = loads(base64.b64decode(event["bytes"]))
        if not isinstance(inner, dict):
            return False
        metrics = inner.get("amazon-bedrock-invocationMetrics")
        if isinstance(metrics, dict):
            self.usage, self.final = metrics_usage(metrics), True
        if isinstance(inner.get("type"), str):  # Claude's events, Anthropic's semantics
            if inner["type"] == "error":
                self.maker._error(inner.get("error"))
                return False
            return self.maker._anthropic(inner)
        return True  # another maker's chunk: its first one is the first token

    def _converse(self, kind: object, event: dict[str, Any]) -> bool:
        if kind == "metadata" and isinstance(event.get("usage"), dict):
            self.usage, self.final = event["usage"], True
        if kind != "contentBlockDelta":
            return False
        delta = event.get("delta")
        if isinstance(delta, dict):
            for value in delta.values():  # text, reasoningContent.text, toolUse.input
                if isinstance(value, str):
                    self.chars += len(value)
                elif isinstance(value, dict):
                    self.chars += sum(len(v) for v in value.values() if isinstance(v, str))
        return True

    def finish(self) -> bytes:
        return b""

    def reading(self) -> Reading:
        maker = self.maker  # Claude's own usage, where it came, for its cache writes' TTL
        usage, final = (maker.usage, maker.final) \
            if maker.usage is not None and (maker.final or not self.final) \
            else (self.usage, self.final)
        chars = self.chars + maker.chars
        error_type = self.error_type or maker.error_type
        return Reading(None, usage, input_known=usage is not None, output_known=final,
                       output_chars=0 if final else chars, error_type=error_type,
                       error_message=self.error_message or maker.error_message or "")
