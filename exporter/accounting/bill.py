"""Turn what the gateway saw of a successful response into usage and fees.

Usage comes from what the upstream reported; a direction it did not report is estimated
from the text that passed (and marked so); the fee comes from the model's price sheet.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ..record import RequestRecord, Usage
from .body import estimate_tokens, request_text_chars
from .events import MEDIA
from .operations import EMBEDDINGS, RESPONSES, SPEECH
from .pricing import Pricing
from .reading import NOTHING, Reading
from .usage import usage_from

# A background response answers "queued" or "in_progress": its usage comes when it is
# fetched completed (gateway/jobs.py), and nothing is to be estimated before.
PENDING = frozenset(("queued", "in_progress"))


def count_usage(rec: RequestRecord, request_body: Any, reading: Reading | None) -> None:
    """Fill rec.usage from what the upstream reported, estimating what it did not.

    `reading` is None for an answer nobody read (not an API the gateway meters)."""
    if reading is None:
        if rec.operation not in MEDIA:
            return
        reading = NOTHING  # no JSON: audio, or a transcript as text
    model, reported, whole = reading.model, reading.reported, reading.whole
    if model:
        rec.model = model
    status = whole.get("status") if whole is not None else None
    if rec.operation == RESPONSES and isinstance(status, str) and status in PENDING:
        return
    tier: Any = reading.service_tier
    if tier is None and isinstance(reported, dict):
        tier = reported.get("service_tier")  # Anthropic reports it inside usage
    if tier is None and isinstance(request_body, dict):
        tier = request_body.get("service_tier")  # what the client asked for
    rec.service_tier = tier if isinstance(tier, str) else None
    usage = usage_from(rec.operation, reported) or Usage()
    if rec.operation == RESPONSES:
        usage.web_search_calls = reading.web_search_calls
    if rec.operation == SPEECH and isinstance(request_body, dict) \
            and isinstance(request_body.get("input"), str):
        usage.input_characters = len(request_body["input"])  # tts-1 bills characters
    if rec.operation in MEDIA and not reading.input_known:
        rec.usage = usage  # no text to estimate images, audio or speech from: unpriced
        return
    if not reading.input_known:
        usage.estimated_input = estimate_tokens(request_text_chars(request_body))
        usage.input_text += usage.estimated_input
    if not reading.output_known and rec.operation != EMBEDDINGS:
        # The text that passed against the output reported so far, but thinking reported
        # apart (Gemini's thoughts, in every chunk): never streamed as text, so never in it.
        guess = estimate_tokens(reading.output_chars)
        shown = usage.output_total - usage.output_reasoning
        if guess > shown:
            usage.estimated_output = guess - shown
            usage.output_text += usage.estimated_output
    rec.usage = usage


def price(rec: RequestRecord, pricing: Pricing, batch: bool = False) -> None:
    """Fill rec.fees and rec.fee from the price sheet of the model the upstream used, as it
    stood when the request arrived; `batch`: at the provider's batch prices."""
    u = rec.usage
    if not (u.input_total or u.output_total or u.web_search_calls or u.audio_seconds
            or u.input_characters):
        if rec.operation in MEDIA:  # an image, a transcript or speech, and no usage
            rec.unpriced = True
        return
    sheet = pricing.sheet(rec.service, rec.provider, rec.model, rec.service_tier,
                          at=datetime.fromtimestamp(rec.started, UTC), batch=batch)
    if sheet is None:
        rec.unpriced = True
        return
    rec.fees = pricing.fees(sheet, u)
    rec.fee = sum((usd for _, _, usd in rec.fees), Decimal(0))
    rec.assumed = pricing.assumed(sheet, u)
    if pricing.unpriced_units(sheet, u):  # a search nobody prices: the bill is short
        rec.unpriced = True


def hosted_fee(pricing: Pricing, rec: RequestRecord, model: str) -> Decimal | None:
    """What a request's usage would have cost at a hosted model's list price (a
    deployment's compare_to), or None if the table has no price for it."""
    sheet = pricing.sheet("", "openai-compatible", model,  # its own table, by its name
                          at=datetime.fromtimestamp(rec.started, UTC))
    if sheet is None:
        return None
    return sum((usd for _, _, usd in pricing.fees(sheet, rec.usage)), Decimal(0))
