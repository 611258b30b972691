"""Server-sent events as bytes: where an event ends, its fields, what it can hold.

Byte methods rather than a parser: on 50-chunk streams a regular-expression split cost a
fifth of the gateway's CPU.
"""

from __future__ import annotations

import re

BOUNDARY = re.compile(rb"\r?\n\r?\n")
# With stream_options.include_usage, OpenAI adds "usage":null to every chunk; removed
# again when the gateway, not the client, asked for it. A quote cannot follow a comma
# inside a JSON string (it would be escaped), so this only ever matches the key itself.
_USAGE_NULL = re.compile(rb',\s*"usage"\s*:\s*null')


def strip_usage_null(event: bytes) -> bytes:
    # OpenAI's own spelling first: a plain replace is a fifth of the regular expression's cost.
    event = event.replace(b',"usage":null', b"")
    return _USAGE_NULL.sub(b"", event) if b'"usage"' in event else event


def fields(event: bytes) -> tuple[bytes | None, bytes]:
    if event.startswith(b"data: ") and b"\n" not in event:
        return None, event[6:]  # OpenAI's one-line events: the common case, parsed directly
    name, data = None, []
    for line in event.splitlines():
        if line.startswith(b"data:"):
            line = line[5:]
            data.append(line[1:] if line[:1] == b" " else line)
        elif line.startswith(b"event:"):
            name = line[6:].strip()
    return name, b"\n".join(data)


def text_only(events: bytes) -> bool:
    """No usage object and no error in these events: only their text can matter.

    As with _USAGE_NULL, a quote inside a JSON string is escaped, so these byte
    patterns can only be keys.
    """
    return b'"error"' not in events and b'"usageMetadata"' not in events and \
        events.count(b'"usage"') == events.count(b'"usage":null')
