"""The per-request record every part shares: the bottom of the house, importing nothing of ours.

The gateway fills one RequestRecord per request, accounting adds its Usage and fees, and
each sink (metrics, history) reads it when the request has ended.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from decimal import Decimal


class ErrorType(enum.StrEnum):
    """The `error_type` label and history column: every value, defined here only (the
    Errors table of docs/metrics.md, the recording rules and the dashboards are tested
    against it)."""

    NONE = "none"  # a success
    BAD_REQUEST = "bad_request"  # the upstream answered 400 or 422
    AUTH = "auth"  # 401 or 403
    NOT_FOUND = "not_found"  # 404
    RATE_LIMITED = "rate_limited"  # 429
    CLIENT_ERROR = "client_error"  # another 4xx
    UPSTREAM_ERROR = "upstream_error"  # 5xx, an error event, a reset before the answer
    TOO_LARGE = "too_large"  # over limits.max_request_body_bytes: never sent
    CONNECT_ERROR = "connect_error"  # the upstream cannot be reached
    TIMEOUT = "timeout"  # the upstream went silent
    STREAM_INTERRUPTED = "stream_interrupted"  # the upstream broke off its answer
    CLIENT_DISCONNECT = "client_disconnect"  # the client went away
    CLIENT_TIMEOUT = "client_timeout"  # the client too slow to send, or to take
    ACCOUNTING_ERROR = "accounting_error"  # answered, but its bill could not be worked out
    GATEWAY_ERROR = "gateway_error"  # a bug in the gateway
    KEY_UNKNOWN = "key_unknown"  # managed keys: not one of them
    KEY_FORBIDDEN = "key_forbidden"  # a service or model the key may not use
    BUDGET_EXCEEDED = "budget_exceeded"  # an enforced budget is spent


# What the client got as a success: an answer whose bill failed is one (LLMRecordErrors
# counts those). In this order in every query that names them.
SUCCESSES = (ErrorType.NONE, ErrorType.ACCOUNTING_ERROR)
# Failures that are the upstream's or the gateway's fault: what the error ratio counts.
# A client's own 4xx or slowness counts neither way.
FAILURES = (ErrorType.UPSTREAM_ERROR, ErrorType.TIMEOUT, ErrorType.CONNECT_ERROR,
            ErrorType.STREAM_INTERRUPTED, ErrorType.GATEWAY_ERROR)
# Of those, the upstream that cannot be reached or does not answer.
UNREACHABLE = (ErrorType.CONNECT_ERROR, ErrorType.TIMEOUT)

# Usage's token fields, which are also the history's token columns.
TOKEN_FIELDS = ("input_text", "input_cache_read", "input_cache_write_5m",
                "input_cache_write_1h", "input_audio", "input_image", "output_text",
                "output_reasoning", "output_audio", "output_image")


@dataclass(slots=True)
class Usage:
    """Tokens of one request in disjoint categories, as the provider bills them."""

    input_text: int = 0
    input_cache_read: int = 0
    input_cache_write_5m: int = 0
    input_cache_write_1h: int = 0
    input_audio: int = 0
    input_image: int = 0
    output_text: int = 0
    output_reasoning: int = 0
    output_audio: int = 0
    output_image: int = 0
    # Of the above, how many were estimated from text rather than reported.
    estimated_input: int = 0
    estimated_output: int = 0
    # What providers bill other than tokens: server-side tool calls, audio by the second
    # (whisper-1), text by the character (tts-1).
    web_search_calls: int = 0
    audio_seconds: float = 0.0
    input_characters: int = 0

    @property
    def input_total(self) -> int:
        return (self.input_text + self.input_cache_read + self.input_cache_write_5m
                + self.input_cache_write_1h + self.input_audio + self.input_image)

    @property
    def output_total(self) -> int:
        return self.output_text + self.output_reasoning + self.output_audio + self.output_image

    def categories(self):
        """Yield (direction, token_type, count) for every non-zero category."""
        for direction, token_type, count in (
            ("input", "text", self.input_text),
            ("input", "cache_read", self.input_cache_read),
            ("input", "cache_write", self.input_cache_write_5m + self.input_cache_write_1h),
            ("input", "audio", self.input_audio),
            ("input", "image", self.input_image),
            ("output", "text", self.output_text),
            ("output", "reasoning", self.output_reasoning),
            ("output", "audio", self.output_audio),
            ("output", "image", self.output_image),
        ):
            if count:
                yield direction, token_type, count



# Text a client or an upstream chose ends up in labels and history rows; bounded so:
MAX_ID = 128  # request ids, the upstream's too
MAX_NAME = 128  # model, service tier: Prometheus label values
MAX_MESSAGE = 500  # error messages
# Secrets an upstream may echo in an error message: OpenAI and Anthropic keys, bearer
# tokens, Google API keys.
_SURROGATE = re.compile("[\ud800-\udfff]")
_SECRET = re.compile(r"(sk-(?:ant-|proj-|svcacct-)?|Bearer\s+|AIza)[A-Za-z0-9_\-.]{5,}"
                     r"[A-Za-z0-9_\-]")  # a sentence's full stop after it is no part of it


def safe_text(value, limit: int) -> str:
    """Any value as text any sink can write: valid UTF-8 (a lone surrogate, or a byte that
    was no UTF-8, becomes U+FFFD), no NUL (which no PostgreSQL text holds: U+FFFD too), at
    most `limit` characters."""
    if not isinstance(value, str):
        value = "" if value is None else str(value)
    if not value.isascii():
        try:  # bytes a header carried (decoded with surrogateescape): UTF-8 where they are
            value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeEncodeError:  # a lone surrogate from JSON ("\ud800")
            value = _SURROGATE.sub("\ufffd", value)
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    return value[:limit]


def mask_secrets(text: str) -> str:
    """Hide key-shaped strings (sk-..., sk-ant-..., Bearer ...) in a message."""
    return _SECRET.sub(lambda m: m.group(1) + "***", text) if text else text


@dataclass(slots=True)
class RequestRecord:
    """What the gateway learned about one request; every sink (metrics, history) reads it."""

    request_id: str
    started: float  # Unix time of arrival
    service: str
    provider: str
    api_key: str
    operation: str
    stream: bool = False
    model: str = "unknown"
    code: int = 0
    error_type: str = ErrorType.NONE
    error_message: str = ""
    usage: Usage = field(default_factory=Usage)
    ttft: float | None = None  # seconds, streams only
    duration: float = 0.0
    overhead: float = 0.0
    upstream_request_id: str = ""
    service_tier: str | None = None  # as the upstream reports it: default, priority, flex...
    fees: list = field(default_factory=list)  # (direction, token_type, Decimal USD)
    fee: Decimal = Decimal(0)
    unpriced: bool = False  # tokens (or tool calls) were used with no price known for them
    assumed: list = field(default_factory=list)  # (direction, token_type, tokens) at a guess
    # A further model of the same request (a batch's results in several): counted for its
    # tokens and fees only, not as a request of its own.
    share: bool = False
    # Attribution (gateway/attribution.py): the project (a label, bounded), the end user and
    # the tags (history columns only: unbounded).
    project: str = "none"
    end_user: str | None = None
    tags: dict[str, str] | None = None

    def make_safe(self) -> None:
        """Bound and clean every field a client or an upstream chose, once, before any sink
        sees the record: no sink can then be handed something it cannot write."""
        self.request_id = safe_text(self.request_id, MAX_ID) or "-"
        self.model = safe_text(self.model, MAX_NAME) or "unknown"
        self.api_key = safe_text(self.api_key, MAX_NAME)
        self.error_message = mask_secrets(safe_text(self.error_message, MAX_MESSAGE))
        self.upstream_request_id = safe_text(self.upstream_request_id, MAX_ID)
        if self.service_tier is not None:
            self.service_tier = safe_text(self.service_tier, MAX_NAME)
        self.project = safe_text(self.project, MAX_NAME) or "none"
        if self.end_user is not None:
            self.end_user = safe_text(self.end_user, MAX_NAME) or None
