"""What the gateway keeps of a response body, and estimates from text.

A non-streamed body is kept in bounded memory for parsing at its end; where the upstream
reported no usage, tokens are estimated from the text that passed, at four characters a
token (and counted as estimates).
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterator
from typing import Any

import orjson

from .operations import CHAT, COMPLETION, GENERATE, MESSAGES, PATH_NAMED, RESPONSES
from .reading import Reading
from .usage import web_search_calls

# Estimates when the upstream reports nothing: OpenAI's rule of thumb of four characters
# of English text per token. Counted separately so users see how much is a guess.
CHARS_PER_TOKEN = 4


def estimate_tokens(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)


def _text_chars(value: object) -> int:
    """Count the characters of every string inside a JSON value, however deeply nested
    (a stack, not recursion: a client's prompt may nest deeper than Python's stack)."""
    total, stack = 0, [value]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            total += len(value)
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(v for k, v in value.items() if k not in _NOT_TEXT)
    return total


# Keys whose string values are identifiers or settings, not text the model reads.
_NOT_TEXT = frozenset(("type", "role", "id", "tool_call_id", "tool_use_id", "cache_control",
                       "media_type", "data", "image_url", "url", "file_id", "detail",
                       "model", "mimeType", "fileUri", "taskType"))  # the last four: Gemini's
# Where the prompt is: OpenAI's and Anthropic's keys, then Gemini's (generateContent,
# embedContent, batchEmbedContents).
_PROMPT_KEYS = ("messages", "prompt", "input", "system", "instructions", "tools",
                "contents", "content", "requests", "systemInstruction")


def request_text_chars(body: object) -> int:
    """Count the prompt characters of a request body, for estimating input tokens."""
    if not isinstance(body, dict):
        return 0
    return sum(_text_chars(body.get(k)) for k in _PROMPT_KEYS)


def response_text_chars(operation: str, body: object) -> int:
    """Count the generated characters of a non-streamed response, for estimates."""
    if not isinstance(body, dict):
        return 0
    if operation == MESSAGES:
        return _text_chars([b for b in _list(body.get("content")) if isinstance(b, dict)])
    if operation == RESPONSES:
        return _text_chars(body.get("output"))
    if operation == GENERATE:  # thoughts are thoughtsTokenCount's, not text
        return sum(_text_chars(part.get("text")) for part in gemini_parts(body)
                   if part.get("thought") is not True)
    if operation in (CHAT, COMPLETION):
        total = 0
        for choice in _list(body.get("choices")):
            if isinstance(choice, dict):
                total += _text_chars(choice.get("message")) + _text_chars(choice.get("text"))
        return total
    return 0


def gemini_parts(answer: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The parts of a Gemini answer (or stream chunk): candidates[].content.parts[]."""
    for candidate in _list(answer.get("candidates")):
        content = candidate.get("content") if isinstance(candidate, dict) else None
        for part in _list(content.get("parts")) if isinstance(content, dict) else ():
            if isinstance(part, dict):
                yield part


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


class ResponseBody:
    """Keep a non-streamed JSON body for parsing at the end, in bounded memory.

    Embedding responses can be tens of MB; usage and model sit at the end of OpenAI and
    near the start of Anthropic bodies, so past the limit only a head and a tail are kept.
    A compressed body is decompressed (`decoder`); one that is not what its encoding claims
    is kept no further: it passes to the client unchanged, and its usage is estimated.
    """

    __slots__ = ("operation", "limit", "parts", "size", "head", "tail", "decoder", "spoiled",
                 "reported")
    EDGE = 65536
    rewrites = False  # the client gets the upstream's bytes as they are

    def __init__(self, operation: str = "", limit: int = 8 << 20,
                 decoder: zlib._Decompress | None = None,
                 reported: dict[str, Any] | None = None):
        self.operation = operation
        # Usage the answer's headers reported (Bedrock's InvokeModel), for a body that
        # holds none of its own (a model maker other than Anthropic).
        self.reported = reported
        self.limit, self.size = limit, 0
        self.parts: list[bytes] | None = []  # None once past the limit: head and tail only
        self.head = self.tail = b""
        self.decoder = decoder  # a zlib decompressor for a gzip or deflate body
        self.spoiled = False

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Keep what arrived; return it unchanged for the client (a body's first bytes
        are no token: no TTFT)."""
        if not self.spoiled:
            self._keep(data)
        return data, False

    def _keep(self, data: bytes) -> None:
        if self.decoder is not None:
            try:
                data = self.decoder.decompress(data)
            except zlib.error:  # not the gzip it claims to be: nothing of it is kept
                self.spoiled, self.parts, self.head, self.tail = True, None, b"", b""
                return
        self.size += len(data)
        if self.parts is not None:
            self.parts.append(data)
            if self.size > self.limit:
                whole = b"".join(self.parts)
                self.head, self.tail, self.parts = whole[:self.EDGE], whole[-self.EDGE:], None
        else:
            self.tail = (self.tail + data)[-self.EDGE:]

    def finish(self) -> bytes:
        return b""

    def reading(self) -> Reading:
        model, reported, whole = self.parse()
        if self.operation in PATH_NAMED:
            model = None  # Bedrock's model id, from the path, prices it; not Claude's name
            if not isinstance(reported, dict) or "input_tokens" not in reported:
                reported = self.reported or reported  # its headers', not another maker's
        known = isinstance(reported, dict)
        # Gemini's answer counts its output last: a usage without it (a stream that broke
        # off, as a JSON array) reports the input alone.
        output = known and (self.operation != GENERATE or "candidatesTokenCount" in reported)
        tier = whole.get("service_tier") if whole is not None else None
        error = whole.get("error") if self.operation == GENERATE and whole is not None \
            else None  # an error chunk ending Gemini's array stream, after a 200
        return Reading(model, reported if known else None, known, output,
                       0 if output else response_text_chars(self.operation, whole), whole,
                       tier if isinstance(tier, str) else None,
                       web_search_calls(whole) if self.operation == RESPONSES else 0,
                       error_type=_gemini_error(error) if error is not None else None,
                       error_message=_error_message(whole))

    def parse(self) -> tuple[str | None, Any, dict[str, Any] | None]:
        """Return (model, usage object, whole body or None when truncated)."""
        if self.parts is not None:
            try:
                body = loads(b"".join(self.parts))
            except ValueError:
                return None, None, None
            if isinstance(body, list) and body and all(isinstance(c, dict) for c in body):
                body = _chunks(body)
            if not isinstance(body, dict):
                return None, None, None
            if "response" in body and isinstance(body["response"], dict):
                body = body["response"]  # Responses API background-mode wrappers
            model = body.get("model") or body.get("modelVersion")  # Gemini's is the latter
            usage = body["usageMetadata"] if "usageMetadata" in body else body.get("usage")
            return (model if isinstance(model, str) else None), usage, body
        edges = self.head + b"\0" + self.tail
        return _scan_key(edges, b'"model"') or _scan_key(edges, b'"modelVersion"'), \
            _scan_object(self.tail, b'"usage"') or _scan_object(self.tail, b'"usageMetadata"'), \
            None


def _chunks(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """Gemini's stream without alt=sse, one JSON array of chunks, as one answer: every
    chunk's candidates (their text), and the last model, usage (cumulative) and error."""
    whole: dict[str, Any] = {"candidates": [c for chunk in chunks
                                            for c in _list(chunk.get("candidates"))]}
    for chunk in chunks:
        whole.update((k, chunk[k]) for k in ("modelVersion", "usageMetadata", "error")
                     if k in chunk)
    return whole


def _gemini_error(error: object) -> str:
    """The kind of a Gemini error object: its status (RESOURCE_EXHAUSTED, ...) or code."""
    if isinstance(error, dict):
        return str(error.get("status") or error.get("code") or "error")[:64]
    return "error"


def _error_message(whole: dict[str, Any] | None) -> str:
    """The reason in an error body: OpenAI's and Anthropic's error.message."""
    error = whole.get("error") if whole is not None else None
    message = error.get("message") if isinstance(error, dict) else \
        whole.get("message") if whole is not None else None  # AWS's {"message": ...}
    return message[:500] if isinstance(message, str) else ""


def loads(data: bytes) -> Any:
    """Parse JSON with orjson (4x faster on stream events, profiled: json.loads was a fifth
    of a stream's CPU), falling back to the json module for what orjson refuses and
    Python accepts: integers over 64 bits, NaN, lone surrogates. JSON nested deeper than
    the stack allows is a ValueError too."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            return json.loads(data)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


_decoder = json.JSONDecoder()
_colon = re.compile(rb"\s*:\s*")


def _scan_value(data: bytes, key: bytes) -> Any:
    at = data.rfind(key)
    if at < 0:
        return None
    m = _colon.match(data, at + len(key))
    if not m:
        return None
    try:
        return _decoder.raw_decode(data[m.end():].decode("utf-8", "replace"))[0]
    except ValueError:
        return None


def _scan_key(data: bytes, key: bytes) -> str | None:
    value = _scan_value(data, key)
    return value if isinstance(value, str) else None


def _scan_object(data: bytes, key: bytes) -> dict[str, Any] | None:
    value = _scan_value(data, key)
    return value if isinstance(value, dict) else None
