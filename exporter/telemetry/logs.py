"""The gateway's log: one line per event, as text or as one JSON object, with the request id.

A line never holds a prompt, a completion or a key: the gateway logs none, and whatever an
exception's text carries is made safe and masked here (record.py's rules) before it is written.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from ..record import MAX_ID, mask_secrets, safe_text

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_request(log: logging.Logger, level: int, request_id: str, message: str, *args,
                exc_info: bool = False) -> None:
    """Log an event of one request: its id leads the text and is a field of its own."""
    rid = safe_text(request_id, MAX_ID)
    log.log(level, "request %s " + message, rid, *args, exc_info=exc_info,
            extra={"request_id": rid})


def _clean(text: str) -> str:
    return mask_secrets(safe_text(text, 100_000))


class TextFormatter(logging.Formatter):
    """The usual text line, a traceback included, kept on one line (every line break, as
    str.splitlines knows them, written \\n)."""

    def __init__(self):
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return "\\n".join(_clean(super().format(record)).splitlines())


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and
    request_id and exception where there are."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(
                    timespec="milliseconds"),
                "level": record.levelname.lower(), "logger": record.name,
                "message": _clean(record.getMessage())}
        if getattr(record, "request_id", None):
            line["request_id"] = record.request_id
        if record.exc_info:
            line["exception"] = _clean(self.formatException(record.exc_info))
        return json.dumps(line)  # ASCII: U+2028 and the like escaped, never a line break


def setup_logging(level: str, fmt: str = "text", stream=None) -> None:
    """Send every log line to stderr (or `stream`) in format `fmt`, text or json."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
