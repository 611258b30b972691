"""What a response said of itself, and the one interface of everything that reads one.

A response is read as it passes by one meter: a stream's events (stream.py), a whole JSON
body (body.py) or a batch's results (batch.py). The relay feeds each the same way, and at
the end each gives a Reading, which settle.py turns into usage and fees.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from ..record import Usage


class Reading(NamedTuple):
    """What the upstream's answer reported, once it ended."""

    model: str | None = None  # the model that ran, as the answer names it
    reported: dict[str, Any] | None = None  # the usage object, in the provider's words
    input_known: bool = False  # the input tokens were reported (else estimated)
    output_known: bool = False  # the final output tokens were reported (else estimated)
    output_chars: int = 0  # generated text, for an estimate when output is not known
    whole: dict[str, Any] | None = None  # a JSON body kept whole (not a stream's)
    service_tier: str | None = None
    web_search_calls: int = 0  # Responses: its web_search_call items
    error_type: str | None = None  # an error the upstream reported inside a 2xx answer
    error_message: str = ""  # its message, or an error answer's error.message
    totals: dict[tuple[str, str], Usage] | None = None  # a batch's: (model, operation) -> usage


NOTHING = Reading()  # an answer nothing could be read from: audio, say


class Meter(Protocol):
    """Reads one response as it passes to the client."""

    # Whether the client may get other bytes than the upstream sent (a stream's usage left
    # out that the gateway asked for): then no Content-Length can be passed on.
    rewrites: bool

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Take upstream bytes; return those the client gets now, and whether they carry
        the answer's first content (its time to first token)."""
        ...

    def finish(self) -> bytes:
        """The last bytes for the client, once the upstream's body ended."""
        ...

    def reading(self) -> Reading:
        """What the answer reported, once it ended."""
        ...
