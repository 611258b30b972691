"""Batch results, metered line by line as they pass: OpenAI's output file and Anthropic's
results, one JSON object a line, each holding one request's answer and its usage.

OpenAI: {"custom_id", "response": {"status_code": 200, "body": {chat completion, response
or embeddings, with "model" and "usage"}}, "error"}. Anthropic: {"custom_id", "result":
{"type": "succeeded", "message": {"model", "usage"}}}. Failed, expired and cancelled lines
cost nothing. The bytes pass unchanged; a file can be gigabytes, so nothing but the line
under way is kept.
"""

from __future__ import annotations

import zlib
from dataclasses import fields
from typing import Any, Literal

from ..record import Usage
from .body import loads
from .operations import CHAT, COMPLETION, EMBEDDINGS, MESSAGES, RESPONSES
from .reading import Reading
from .usage import usage_from, web_search_calls

# OpenAI's answer objects, by their "object" field.
_OBJECTS = {"chat.completion": CHAT, "response": RESPONSES, "text_completion": COMPLETION,
            "list": EMBEDDINGS}
_SUMMED = tuple(f.name for f in fields(Usage))


def add(total: Usage, usage: Usage) -> None:
    for name in _SUMMED:
        setattr(total, name, getattr(total, name) + getattr(usage, name))


class BatchMeter:
    """Sum the usage of every answered line, by model and operation."""

    __slots__ = ("decoder", "parts", "totals", "lines", "answered")
    rewrites = False  # the client gets the upstream's bytes as they are

    def __init__(self, decoder: zlib._Decompress | None = None) -> None:
        # A zlib decompressor for a gzip or deflate download; False once it proved not one.
        self.decoder: zlib._Decompress | Literal[False] | None = decoder
        self.parts: list[bytes] = []  # the line under way, in pieces: no quadratic joins
        self.totals: dict[tuple[str, str], Usage] = {}  # (model, operation) -> usage
        self.lines = self.answered = 0

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Meter what arrived; return it unchanged for the client (no content: no TTFT)."""
        if self.decoder is False:
            return data, False  # not the gzip it claimed to be: passed on, unmetered
        try:
            text = self.decoder.decompress(data) if self.decoder is not None else data
        except zlib.error:
            self.decoder, self.parts = False, []  # what was metered passed: it counts
            return data, False
        start = 0
        while (end := text.find(b"\n", start)) >= 0:
            self.parts.append(text[start:end])
            self._line(b"".join(self.parts))
            self.parts.clear()
            start = end + 1
        if start < len(text):
            self.parts.append(text[start:])
        return data, False

    def finish(self) -> bytes:
        if self.parts:  # the last line may end without a newline
            self._line(b"".join(self.parts))
            self.parts.clear()
        return b""

    def reading(self) -> Reading:
        # No error: a failed line is the batch's business, not this download's.
        return Reading(totals=self.totals)

    def _line(self, line: bytes) -> None:
        if not line.strip():
            return
        self.lines += 1
        try:
            obj = loads(line)
        except ValueError:
            return
        if not isinstance(obj, dict):
            return
        found = self._openai(obj) or self._anthropic(obj)
        if found is None:
            return
        model, operation, usage = found
        self.answered += 1
        total = self.totals.setdefault((model, operation), Usage())
        add(total, usage)

    @staticmethod
    def _openai(obj: dict[str, Any]) -> tuple[str, str, Usage] | None:
        response = obj.get("response")
        if not isinstance(response, dict) or response.get("status_code") != 200:
            return None
        body = response.get("body")
        if not isinstance(body, dict):
            return None
        kind = body.get("object")  # any JSON value: a list would not hash
        operation = _OBJECTS.get(kind) if isinstance(kind, str) else None
        if not operation:
            return None
        usage = usage_from(operation, body.get("usage"))
        if usage is None:
            return None
        if operation == RESPONSES:
            usage.web_search_calls = web_search_calls(body)
        model = body.get("model")
        return (model if isinstance(model, str) and model else "unknown"), operation, usage

    @staticmethod
    def _anthropic(obj: dict[str, Any]) -> tuple[str, str, Usage] | None:
        result = obj.get("result")
        if not isinstance(result, dict) or result.get("type") != "succeeded":
            return None
        message = result.get("message")
        if not isinstance(message, dict):
            return None
        usage = usage_from(MESSAGES, message.get("usage"))
        if usage is None:
            return None
        model = message.get("model")
        return (model if isinstance(model, str) and model else "unknown"), MESSAGES, usage
