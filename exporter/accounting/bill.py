"""Turn what the gateway saw of a successful response into usage and fees.

Usage comes from what the upstream reported; a direction it did not report is estimated
from the text that passed (and marked so); the fee comes from the model's price sheet.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from ..record import RequestRecord, Usage
from .body import estimate_tokens, request_text_chars, response_text_chars
from .operations import EMBEDDINGS, RESPONSES, SPEECH
from .pricing import Pricing
from .stream import MEDIA
from .usage import usage_from, web_search_calls

# A background response answers "queued" or "in_progress": its usage comes when it is
# fetched completed (gateway/jobs.py), and nothing is to be estimated before.
PENDING = frozenset(("queued", "in_progress"))


def count_usage(rec: RequestRecord, body_json, meter, collected) -> dict | None:
    """Fill rec.usage from what the upstream reported, estimating what it did not; return
    the response body when it was kept whole."""
    output_chars, whole = 0, None
    if meter is not None:
        model, reported = meter.model, meter.usage
        input_known = reported is not None
        # Anthropic streams report input at message_start, the final output only later.
        output_known = meter.final
        if not output_known:
            output_chars = meter.output_chars
    elif collected is not None:
        model, reported, whole = collected.parse()
        input_known = output_known = isinstance(reported, dict)
        if not output_known:
            output_chars = response_text_chars(rec.operation, whole)
    elif rec.operation in MEDIA:  # an answer that is no JSON: audio, or a transcript as text
        model, reported = None, None
        input_known = output_known = False
    else:
        return None
    if rec.operation == RESPONSES and isinstance(whole, dict) and whole.get("status") in PENDING:
        if model:
            rec.model = model
        return whole
    if model:
        rec.model = model
    tier = meter.service_tier if meter is not None else \
        (whole or {}).get("service_tier") if collected is not None else None
    if tier is None and isinstance(reported, dict):
        tier = reported.get("service_tier")  # Anthropic reports it inside usage
    if tier is None and isinstance(body_json, dict):
        tier = body_json.get("service_tier")  # what the client asked for
    rec.service_tier = tier if isinstance(tier, str) else None
    usage = usage_from(rec.operation, reported) or Usage()
    if rec.operation == RESPONSES:
        usage.web_search_calls = meter.web_search_calls if meter is not None \
            else web_search_calls(whole)
    if rec.operation == SPEECH and isinstance(body_json, dict) \
            and isinstance(body_json.get("input"), str):
        usage.input_characters = len(body_json["input"])  # tts-1 bills characters
    if rec.operation in MEDIA and not input_known:
        rec.usage = usage  # no text to estimate images, audio or speech from: unpriced
        return whole
    if not input_known:
        usage.estimated_input = estimate_tokens(request_text_chars(body_json))
        usage.input_text += usage.estimated_input
    if not output_known and rec.operation != EMBEDDINGS:
        guess = estimate_tokens(output_chars)
        if guess > usage.output_total:
            usage.estimated_output = guess - usage.output_total
            usage.output_text += usage.estimated_output
    rec.usage = usage
    return whole

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


def error_message(collected) -> str:
    """Read the reason from an upstream's error body: OpenAI's and Anthropic's error.message."""
    whole = collected.parse()[2]
    error = whole.get("error") if isinstance(whole, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message[:500] if isinstance(message, str) else ""

