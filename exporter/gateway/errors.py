"""What a failed request is called, and what the client is told, in its API's format."""

from __future__ import annotations

import json
import logging

from ..record import ErrorType as E
from ..telemetry.logs import log_request
from ..wire.request import BodyTimeout
from ..wire.upstream import ClientStalled

log = logging.getLogger(__name__)


class GatewayError(Exception):
    """A request the gateway ends itself: answered with `status` in the client's API
    format while nothing of an answer was sent, else its connection cut (exchange.py's
    Exchange does either, in one place)."""

    def __init__(self, status: int, error_type: E, message: str, headers: bytes = b""):
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message
        self.headers = headers  # extra header lines of the answer (a refusal's)


def failure(e: Exception, request_id: str) -> GatewayError:
    """What an exception no step of a request expected means for its client (one the
    gateway did not foresee is logged, with its traceback)."""
    if isinstance(e, BodyTimeout):  # the client's slowness, not the upstream's
        return GatewayError(408, E.CLIENT_TIMEOUT,
                            "the client paused sending the request's body for too long")
    if isinstance(e, ClientStalled):
        return GatewayError(408, E.CLIENT_TIMEOUT,
                            "the client took nothing of the answer for too long")
    log_request(log, logging.ERROR, request_id, "failed inside the gateway", exc_info=True)
    return GatewayError(502, E.GATEWAY_ERROR, f"the gateway failed: {type(e).__name__}")


def error_type_for(status: int) -> E:
    """Name the outcome of an HTTP status with one bounded value."""
    if status < 400:
        return E.NONE
    return _ERROR_TYPES.get(status) or (E.UPSTREAM_ERROR if status >= 500 else E.CLIENT_ERROR)


_ERROR_TYPES = {400: E.BAD_REQUEST, 422: E.BAD_REQUEST, 401: E.AUTH, 403: E.AUTH,
                404: E.NOT_FOUND, 408: E.CLIENT_TIMEOUT, 413: E.TOO_LARGE,
                429: E.RATE_LIMITED, 499: E.CLIENT_DISCONNECT}


_GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                  404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED", 413: "INVALID_ARGUMENT",
                  429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 502: "UNAVAILABLE",
                  503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


_AWS_ERRORS = {400: "ValidationException", 401: "AccessDeniedException",
               403: "AccessDeniedException", 404: "ResourceNotFoundException",
               408: "ModelTimeoutException", 413: "ValidationException",
               429: "ThrottlingException", 502: "ServiceUnavailableException",
               503: "ServiceUnavailableException", 504: "ModelTimeoutException"}


def error_body(api_format: str, status: int, code: str, message: str) -> bytes:
    """Render a gateway error in the body format of the API the client speaks."""
    if api_format == "anthropic":
        kind = {401: "authentication_error", 403: "permission_error", 413: "request_too_large",
                429: "rate_limit_error", 504: "timeout_error"}.get(status, "api_error")
        return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
    if api_format == "bedrock":  # AWS's JSON errors: botocore reads the code from __type
        return json.dumps({"__type": _AWS_ERRORS.get(status, "InternalServerException"),
                           "message": message}).encode()
    if api_format == "gemini":  # google.rpc.Status, as Google's APIs answer errors
        return json.dumps({"error": {"code": status, "message": message,
                                     "status": _GOOGLE_STATUS.get(status, "INTERNAL")}}).encode()
    kind = "invalid_request_error" if status < 500 else "server_error"
    return json.dumps({"error": {"message": message, "type": kind, "param": None,
                                 "code": code}}).encode()
