"""What the gateway reads of a request's body, and the one thing it may change in it.

The model and whether the answer streams come from the body (or, from Azure, the path;
from a multipart body, its model field; for Gemini's own API, the path alone). An
OpenAI-style stream the client did not ask usage for is asked for it
(stream_options.include_usage), as the upstream then reports usage; the meter removes it
again from what the client receives.
"""

from __future__ import annotations

import json
from typing import Any

from ..accounting.body import loads
from ..accounting.operations import (
    INCLUDE_USAGE_OPERATIONS,
    PATH_NAMED,
    azure_deployment,
    bedrock_call,
    form_field,
    gemini_call,
)
from ..config.table import Service
from ..record import RequestRecord

STREAMING_METHODS = frozenset(("streamGenerateContent", "converse-stream",
                               "invoke-with-response-stream"))
_INCLUDE_USAGE = b',"stream_options":{"include_usage":true}}'


def inspect(operation: str, data: bytes, service: Service, rec: RequestRecord,
            raw_path: str) -> tuple[dict[str, Any] | None, bytes, bool]:
    """Read model and stream from a JSON body; ask for stream usage if the client didn't.
    Return the body read (None if it is no JSON object), the bytes to send upstream, and
    whether they ask for usage the client did not (to leave out of its stream)."""
    azure = azure_deployment(raw_path)
    if azure is not None:
        rec.model = azure[0]  # the deployment, until a body or an answer names the model
    # Gemini's own API and Bedrock's name the model and the method in the path, and
    # report usage unasked.
    named = bedrock_call(raw_path) if operation in PATH_NAMED else \
        gemini_call(raw_path.partition("?")[0]) if ":" in raw_path else None
    if named is not None:
        rec.model = named[0]
        rec.stream = named[1] in STREAMING_METHODS
    try:
        body = loads(data)
    except ValueError:
        if named is None and data[:2] == b"--":  # multipart: image edits, transcriptions
            model = form_field(data, "model")
            if model:
                rec.model = model
        return None, data, False  # forwarded unchanged: the upstream answers the client
    if not isinstance(body, dict):
        return None, data, False
    if named is not None:  # nothing more to read, nothing to ask
        return body, data, False
    model = body.get("model")
    if isinstance(model, str) and model:
        rec.model = model
    rec.stream = body.get("stream") is True
    if not (rec.stream and operation in INCLUDE_USAGE_OPERATIONS
            and service.inject_stream_usage and (azure is None or azure[1])):
        return body, data, False
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return body, data, False
    stripped = data.rstrip()
    if "stream_options" not in body and stripped.endswith(b"}"):
        # Added to the client's own bytes, which are otherwise sent as they came: 1 us
        # where writing the body again took 10, profiled (a stream's first token waits).
        return body, stripped[:-1] + _INCLUDE_USAGE + data[len(stripped):], True
    asked = dict(body)
    asked["stream_options"] = {**(options if isinstance(options, dict) else {}),
                               "include_usage": True}
    try:
        return body, json.dumps(asked, ensure_ascii=False, separators=(",", ":")).encode(), True
    except UnicodeEncodeError:  # a lone surrogate ("\ud800"): kept as the escape it came as
        return body, json.dumps(asked, separators=(",", ":")).encode(), True
    except (RecursionError, ValueError):  # too deep to write again: forwarded as it came
        return body, data, False
