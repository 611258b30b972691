"""What a failed request is called, and what the client is told, in its API's format."""

from __future__ import annotations

import json


def error_type_for(status: int) -> str:
    """Name the outcome of an HTTP status with one bounded value."""
    if status < 400:
        return "none"
    return _ERROR_TYPES.get(status) or ("upstream_error" if status >= 500 else "client_error")


_ERROR_TYPES = {400: "bad_request", 422: "bad_request", 401: "auth", 403: "auth",
                404: "not_found", 408: "client_timeout", 413: "too_large", 429: "rate_limited",
                499: "client_disconnect"}


def error_body(api_format: str, status: int, code: str, message: str) -> bytes:
    """Render a gateway error in the body format of the API the client speaks."""
    if api_format == "anthropic":
        kind = {401: "authentication_error", 403: "permission_error", 413: "request_too_large",
                429: "rate_limit_error", 504: "timeout_error"}.get(status, "api_error")
        return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
    kind = "invalid_request_error" if status < 500 else "server_error"
    return json.dumps({"error": {"message": message, "type": kind, "param": None,
                                 "code": code}}).encode()
