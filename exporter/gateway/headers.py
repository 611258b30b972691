"""The headers the gateway passes on, both ways, and the name of the client's key.

Hop-by-hop headers stay behind (RFC 9110 7.6.1, and those the `Connection` header names);
the gateway's X-Request-ID goes up; the upstream's comes back unchanged, the gateway's in
X-LLM-Request-ID; with a service key, it replaces the client's.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from urllib.parse import parse_qs

from ..config.table import Service
from ..record import RequestRecord
from ..wire.request import Request
from ..wire.upstream import Connection
from .aws import SIGNATURE_HEADERS

# RFC 9110 7.6.1 hop-by-hop headers, plus those the gateway must set itself. Lowercase:
# raw header names are compared with name.lower(), as bytes.
_HOP_BY_HOP = frozenset((
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
    b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"))
_NOT_UP = _HOP_BY_HOP | {b"host", b"content-length", b"x-request-id"}
_NOT_DOWN = _HOP_BY_HOP | {b"content-length"}
# Where upstreams name their own id of a request: OpenAI's x-request-id (which its SDK
# shows as _request_id, what its support asks for), Anthropic's request-id.
_UPSTREAM_IDS = frozenset((b"x-request-id", b"request-id"))
_KEY_LINES = {"anthropic": b"x-api-key: %s\r\n", "gemini": b"x-goog-api-key: %s\r\n"}
_KEY_HEADERS = frozenset((b"authorization", b"x-api-key", b"api-key", b"x-goog-api-key"))
# The gateway reads usage out of response bodies, so it only lets the upstream pick an
# encoding it can decode; the client still gets a body in an encoding it asked for.
DECODABLE = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS, "identity": 0}


def key_digest(header: Callable[[bytes], str | None], raw_path: str = "") -> str | None:
    """The SHA-256 hex digest of the client's key, if it sent one; `header(name)` reads one.
    Gemini's clients may send theirs as the query's `key` (in `raw_path`)."""
    key = None
    auth = header(b"authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer":
            key = token.strip()
        elif scheme == "AWS4-HMAC-SHA256":  # signed: named by its access key id
            key = token.partition("Credential=")[2].partition("/")[0]
    key = key or header(b"x-api-key") or header(b"api-key") or header(b"x-goog-api-key")
    if not key and "key=" in raw_path:
        key = parse_qs(raw_path.partition("?")[2]).get("key", [""])[0]
    if not key:
        return None
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


# InvokeModel's answer reports its usage in headers, whatever the model's maker.
_INVOKE_USAGE = (("inputTokens", b"x-amzn-bedrock-input-token-count"),
                 ("outputTokens", b"x-amzn-bedrock-output-token-count"),
                 ("cacheReadInputTokens", b"x-amzn-bedrock-cache-read-input-token-count"),
                 ("cacheWriteInputTokens", b"x-amzn-bedrock-cache-write-input-token-count"))


def invoke_usage(upstream: Connection) -> dict[str, int] | None:
    """The usage Bedrock's InvokeModel reported in its answer's headers, if it did."""
    found = {name: int(value) for name, header in _INVOKE_USAGE
             if (value := upstream.header(header)).isdigit()}
    return found if "inputTokens" in found else None


def _accept_encoding(value: str) -> str:
    kept = [p for p in value.split(",") if p.split(";", 1)[0].strip().lower() in DECODABLE]
    return ",".join(kept).strip() or "identity"


def not_up(also: frozenset[bytes]) -> frozenset[bytes]:
    """The client's headers that never go upstream: hop-by-hop ones and `also` (made once,
    not per request)."""
    return _NOT_UP | also


def upstream_headers(request: Request, service: Service, rid: str, parsed: bool,
                     api_format: str, signed: bool = False,
                     dropped: frozenset[bytes] = _NOT_UP) -> bytes:
    """The client's header lines as received, less hop-by-hop ones, for the upstream;
    `api_format`, the API the request calls (how a key of the gateway's is sent);
    `signed`, the gateway signs it (the client's signature is left out); `dropped`, what
    not_up() made: the hop-by-hop headers and the gateway's own (attribution's)."""
    drop = dropped
    connection = request.header(b"connection")
    if connection:
        drop = drop | {t.strip().lower().encode("utf-8", "surrogateescape")
                       for t in connection.split(",")}
    if service.api_key:
        drop = drop | _KEY_HEADERS
    if signed:
        drop = drop | SIGNATURE_HEADERS
    lines = []
    for name, value in request.raw_headers:
        lowered = name.lower()
        if lowered in drop:
            continue
        if parsed and lowered == b"accept-encoding":
            value = _accept_encoding(value.decode("latin-1")).encode("latin-1")
        lines.append(b"%s: %s\r\n" % (name, value))
    if service.api_key:
        lines.append(_KEY_LINES.get(api_format, b"Authorization: Bearer %s\r\n")
                     % service.api_key.encode())
    lines.append(b"X-Request-ID: %s\r\n" % rid.encode("utf-8", "surrogateescape"))
    return b"".join(lines)


def client_headers(upstream: Connection, rec: RequestRecord) -> tuple[bytes, int | None]:
    """The upstream's header lines for the client, less hop-by-hop ones; and the length.

    The upstream's own request id passes unchanged (and is kept in the history beside the
    gateway's); the gateway's id comes in X-LLM-Request-ID, and as X-Request-ID too when
    the upstream sent none.
    """
    lines, length = [], None
    drop = _NOT_DOWN
    connection = upstream.header(b"connection")
    if connection:  # RFC 9110 7.6.1: the headers it names are hop-by-hop too
        drop = drop | {t.strip().lower() for t in connection.split(b",")}
    named = False
    for name, value in upstream.headers:
        lowered = name.lower()
        if lowered in drop:
            if lowered == b"content-length":
                length = int(value)
            continue
        lines.append(b"%s: %s\r\n" % (name, value))
        if lowered in _UPSTREAM_IDS:
            named = named or lowered == b"x-request-id"
            if value.decode("latin-1") != rec.request_id and not rec.upstream_request_id:
                rec.upstream_request_id = value.decode("latin-1")
    rid = rec.request_id.encode("utf-8", "surrogateescape")
    lines.append(b"X-LLM-Request-ID: %s\r\n" % rid)
    if not named:
        lines.append(b"X-Request-ID: %s\r\n" % rid)
    return b"".join(lines), length
