"""Label values the gateway does not choose, bounded so Prometheus cannot be flooded."""

from __future__ import annotations

OTHER = "other"
MAX_LABEL_CHARS = 128


class LabelLimiter:
    """Bound a label's values: past `cap` distinct values, new ones become `other`."""

    __slots__ = ("cap", "seen")

    def __init__(self, cap: int, always=()):
        self.cap = cap
        self.seen = set(always)

    def __call__(self, value: str) -> str:
        value = value[:MAX_LABEL_CHARS]
        if value in self.seen:
            return value
        if len(self.seen) >= self.cap:
            return OTHER
        self.seen.add(value)
        return value
