"""Pure parsers: a provider's response body or SSE transcript -> Usage.

Nothing here does I/O. The proxy feeds the same bytes the client receives, so what is
counted is what was delivered. Token categories are disjoint: any sum is a true total.
"""

from __future__ import annotations

import json
import re

import orjson

from ..record import Usage

# Operations, by the path suffix that identifies them (after any service prefix).
CHAT, COMPLETION, RESPONSES, EMBEDDINGS, MESSAGES, OTHER = (
    "chat", "completion", "responses", "embeddings", "messages", "other")
OPERATIONS = (CHAT, COMPLETION, RESPONSES, EMBEDDINGS, MESSAGES, OTHER)
_SUFFIXES = (
    ("/chat/completions", CHAT),
    ("/completions", COMPLETION),
    ("/responses", RESPONSES),
    ("/embeddings", EMBEDDINGS),
    ("/messages", MESSAGES),
)
# OpenAI-style streams only carry usage when the request asks for it.
INCLUDE_USAGE_OPERATIONS = frozenset((CHAT, COMPLETION))

TOKEN_TYPES = ("text", "cache_read", "cache_write", "audio", "image", "reasoning")

# Estimates when the upstream reports nothing: OpenAI's rule of thumb of four characters
# of English text per token. Counted separately so users see how much is a guess.
CHARS_PER_TOKEN = 4


# Azure OpenAI: /openai/deployments/{deployment}/chat/completions?api-version=2024-10-21.
# Its api-versions accept stream_options from 2024-08-01-preview (GA in 2024-10-21); older
# ones answer 400 to it.
_AZURE = re.compile(r"/openai/deployments/([^/?]+)/")
_API_VERSION = re.compile(r"[?&]api-version=(\d{4}-\d{2}-\d{2})")
AZURE_STREAM_OPTIONS_FROM = "2024-08-01"


def azure_deployment(raw_path: str) -> tuple[str, bool] | None:
    """For an Azure deployment path: its deployment name, and whether its api-version
    accepts stream_options (a path with no api-version, or a newer one, does)."""
    found = _AZURE.search(raw_path)
    if found is None:
        return None
    version = _API_VERSION.search(raw_path)
    return found.group(1), version is None or version.group(1) >= AZURE_STREAM_OPTIONS_FROM


def operation_for(path: str) -> str:
    """Name the operation a request path performs."""
    path = path.rstrip("/")
    if path.endswith("/messages/count_tokens"):
        return OTHER
    for suffix, operation in _SUFFIXES:
        if path.endswith(suffix):
            return operation
    return OTHER


def _int(mapping, key) -> int:
    """Read a token count; absent, null or malformed counts are zero, never an error."""
    if not isinstance(mapping, dict):
        return 0
    value = mapping.get(key)
    return value if isinstance(value, int) and value > 0 else 0


def openai_usage(u: dict) -> Usage:
    """Split Chat Completions, Completions or Embeddings usage.

    prompt_tokens include cached, audio and image tokens; completion_tokens include
    reasoning and audio tokens. DeepSeek-style servers report prompt_cache_hit_tokens
    instead of prompt_tokens_details.cached_tokens.
    """
    pd = u.get("prompt_tokens_details")
    cd = u.get("completion_tokens_details")
    prompt, completion = _int(u, "prompt_tokens"), _int(u, "completion_tokens")
    cached = _int(pd, "cached_tokens") or _int(u, "prompt_cache_hit_tokens")
    in_audio, in_image = _int(pd, "audio_tokens"), _int(pd, "image_tokens")
    reasoning, out_audio, out_image = (
        _int(cd, "reasoning_tokens"), _int(cd, "audio_tokens"), _int(cd, "image_tokens"))
    if not reasoning:
        # Gemini's OpenAI-compatible endpoint leaves its thinking out of completion_tokens
        # and reports no detail; total_tokens holds it, and Google bills it as output.
        hidden = _int(u, "total_tokens") - prompt - completion
        if hidden > 0:
            reasoning, completion = hidden, completion + hidden
    return Usage(
        input_text=max(prompt - cached - in_audio - in_image, 0),
        input_cache_read=cached,
        input_audio=in_audio,
        input_image=in_image,
        output_text=max(completion - reasoning - out_audio - out_image, 0),
        output_reasoning=reasoning,
        output_audio=out_audio,
        output_image=out_image,
    )


def responses_usage(u: dict) -> Usage:
    """Split Responses API usage: input_tokens include cached, output_tokens reasoning."""
    idt, odt = u.get("input_tokens_details"), u.get("output_tokens_details")
    inp, out = _int(u, "input_tokens"), _int(u, "output_tokens")
    cached, in_audio, in_image = (
        _int(idt, "cached_tokens"), _int(idt, "audio_tokens"), _int(idt, "image_tokens"))
    reasoning = _int(odt, "reasoning_tokens")
    return Usage(
        input_text=max(inp - cached - in_audio - in_image, 0),
        input_cache_read=cached,
        input_audio=in_audio,
        input_image=in_image,
        output_text=max(out - reasoning, 0),
        output_reasoning=reasoning,
    )


def anthropic_usage(u: dict) -> Usage:
    """Split Anthropic Messages usage: input_tokens exclude cache reads and writes.

    Cache writes are split into 5-minute and 1-hour writes when cache_creation says so
    (they are priced differently); otherwise all writes are 5-minute, the default TTL.
    Anthropic counts extended thinking inside output_tokens and reports no split, so it
    is output text here, which is also how it is billed.
    """
    writes = _int(u, "cache_creation_input_tokens")
    cc = u.get("cache_creation")
    w1h = _int(cc, "ephemeral_1h_input_tokens")
    w5m = _int(cc, "ephemeral_5m_input_tokens") if isinstance(cc, dict) else writes
    if w5m + w1h != writes and writes:
        w5m = max(writes - w1h, 0)
    return Usage(
        input_text=_int(u, "input_tokens"),
        input_cache_read=_int(u, "cache_read_input_tokens"),
        input_cache_write_5m=w5m,
        input_cache_write_1h=w1h,
        output_text=_int(u, "output_tokens"),
        web_search_calls=_int(u.get("server_tool_use"), "web_search_requests"),
    )


def usage_from(operation: str, u) -> Usage | None:
    """Parse a usage object with the semantics of the operation's API."""
    if not isinstance(u, dict):
        return None
    if operation == MESSAGES:
        return anthropic_usage(u)
    if operation == RESPONSES:
        return responses_usage(u)
    return openai_usage(u)


def web_search_calls(response) -> int:
    """The web searches a Responses API response made: its web_search_call output items."""
    output = response.get("output") if isinstance(response, dict) else None
    if not isinstance(output, list):
        return 0
    return sum(1 for item in output
               if isinstance(item, dict) and item.get("type") == "web_search_call")


def estimate_tokens(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)


def _text_chars(value) -> int:
    """Count the characters of every string inside a JSON value."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_chars(v) for v in value)
    if isinstance(value, dict):
        return sum(_text_chars(v) for k, v in value.items() if k not in _NOT_TEXT)
    return 0


# Keys whose string values are identifiers or settings, not text the model reads.
_NOT_TEXT = frozenset(("type", "role", "id", "tool_call_id", "tool_use_id", "cache_control",
                       "media_type", "data", "image_url", "url", "file_id", "detail"))
_PROMPT_KEYS = ("messages", "prompt", "input", "system", "instructions", "tools")


def request_text_chars(body) -> int:
    """Count the prompt characters of a request body, for estimating input tokens."""
    if not isinstance(body, dict):
        return 0
    return sum(_text_chars(body.get(k)) for k in _PROMPT_KEYS)


def response_text_chars(operation: str, body) -> int:
    """Count the generated characters of a non-streamed response, for estimates."""
    if not isinstance(body, dict):
        return 0
    if operation == MESSAGES:
        return _text_chars([b for b in body.get("content") or () if isinstance(b, dict)])
    if operation == RESPONSES:
        return _text_chars(body.get("output"))
    if operation in (CHAT, COMPLETION):
        total = 0
        for choice in body.get("choices") or ():
            if isinstance(choice, dict):
                total += _text_chars(choice.get("message")) + _text_chars(choice.get("text"))
        return total
    return 0


class ResponseBody:
    """Keep a non-streamed JSON body for parsing at the end, in bounded memory.

    Embedding responses can be tens of MB; usage and model sit at the end of OpenAI and
    near the start of Anthropic bodies, so past the limit only a head and a tail are kept.
    """

    __slots__ = ("limit", "parts", "size", "head", "tail")
    EDGE = 65536

    def __init__(self, limit: int = 8 << 20):
        self.limit, self.parts, self.size = limit, [], 0
        self.head = self.tail = b""

    def feed(self, data: bytes) -> None:
        self.size += len(data)
        if self.parts is not None:
            self.parts.append(data)
            if self.size > self.limit:
                whole = b"".join(self.parts)
                self.head, self.tail, self.parts = whole[:self.EDGE], whole[-self.EDGE:], None
        else:
            self.tail = (self.tail + data)[-self.EDGE:]

    def parse(self) -> tuple[str | None, dict | None, dict | None]:
        """Return (model, usage object, whole body or None when truncated)."""
        if self.parts is not None:
            try:
                body = loads(b"".join(self.parts))
            except ValueError:
                return None, None, None
            if not isinstance(body, dict):
                return None, None, None
            if "response" in body and isinstance(body["response"], dict):
                body = body["response"]  # Responses API background-mode wrappers
            model = body.get("model")
            return (model if isinstance(model, str) else None), body.get("usage"), body
        return _scan_key(self.head + b"\0" + self.tail, b'"model"'), \
            _scan_object(self.tail, b'"usage"'), None


def loads(data: bytes):
    """Parse JSON with orjson (4x faster on stream events, profiled: json.loads was a fifth
    of a stream's CPU), falling back to the json module for what orjson refuses and
    Python accepts: integers over 64 bits, NaN, lone surrogates."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


_decoder = json.JSONDecoder()
_colon = re.compile(rb"\s*:\s*")


def _scan_value(data: bytes, key: bytes):
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


def _scan_key(data: bytes, key: bytes):
    value = _scan_value(data, key)
    return value if isinstance(value, str) else None


def _scan_object(data: bytes, key: bytes):
    value = _scan_value(data, key)
    return value if isinstance(value, dict) else None
