"""The bill of a finished request: what its answer reported, made into records.

Pure: given the record, the request's JSON body, what the meter read and the prices, it
fills in the outcome, the usage and the fee, touching nothing else (no socket, no ledger),
so every rule is testable on its own. Which job a request reads, and whether its bill is
still to be paid, is the gateway's to decide first (gateway/finish.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..record import ErrorType, RequestRecord, Usage
from .bill import count_usage, price
from .pricing import Pricing
from .reading import Reading


def settle(rec: RequestRecord, ok: bool, request_body: Any, reading: Reading | None,
           pricing: Pricing) -> RequestRecord:
    """Fill in a request's outcome, usage and fee; `ok`: the upstream answered 2xx;
    `reading` None: nothing of the answer was read (not an API the gateway meters)."""
    if reading is not None and reading.error_type and rec.error_type == ErrorType.NONE:
        # A stream that began well and then carried an error event: a failure, though
        # its usage so far is billed.
        rec.error_type = ErrorType.UPSTREAM_ERROR
        rec.error_message = f"{reading.error_type}: {reading.error_message}"[:500]
    if not ok:
        if reading is not None and not rec.error_message:
            rec.error_message = reading.error_message
        return rec
    count_usage(rec, request_body, reading)
    price(rec, pricing)
    return rec


def settle_batch(rec: RequestRecord, totals: dict[tuple[str, str], Usage],
                 pricing: Pricing) -> list[RequestRecord]:
    """The bill of a batch's results, read once: each model's usage at its batch price.
    The first model's is the request's record; each further one is a record of its own,
    marked `share` (counted for its tokens and fee, not as a request)."""
    records = []
    for i, ((model, _), usage) in enumerate(sorted(totals.items())):
        r = rec if i == 0 else dataclasses.replace(
            rec, request_id=f"{rec.request_id}#{i + 1}", share=True, fees=[], assumed=[])
        r.model, r.usage = model, usage
        price(r, pricing, batch=True)
        records.append(r)
    return records or [rec]
