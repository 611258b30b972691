"""Usage + model -> fee in USD, by token category.

Prices come from the config's `pricing:` overrides, else from the pinned genai-prices
table (it never fetches anything: only its bundled snapshot is read). Fees are computed in
Decimal, per million tokens, for exactly the categories of llm_tokens_total; floats appear
only when a fee is added to a counter.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from importlib.metadata import version

from genai_prices.data_snapshot import find_provider_by_id, get_snapshot
from genai_prices.types import TieredPrices

from ..record import Usage

MILLION = Decimal(1_000_000)
TABLE = f"genai-prices {version('genai-prices')}"

# Our disjoint categories -> the genai-prices keys that price them, most specific first.
TABLE_KEYS = {
    "input_text": ("input_text_mtok", "input_mtok"),
    "cache_read": ("cache_text_read_mtok", "cache_read_mtok"),
    "cache_write_5m": ("cache_text_write_5m_mtok", "cache_write_5m_mtok", "cache_write_mtok"),
    "cache_write_1h": ("cache_text_write_1h_mtok", "cache_write_1h_mtok"),
    "input_audio": ("input_audio_mtok",),
    "input_image": ("input_image_mtok",),
    "output_text": ("output_text_mtok", "output_mtok"),
    "reasoning": ("output_text_reasoning_mtok", "output_reasoning_mtok"),
    "output_audio": ("output_audio_mtok",),
    "output_image": ("output_image_mtok",),
}
CATEGORIES = tuple(TABLE_KEYS)
LABELS = {"input_text": "input text", "cache_read": "cache read",
          "cache_write_5m": "cache write, 5 min", "cache_write_1h": "cache write, 1 hour",
          "input_audio": "input audio", "input_image": "input image",
          "output_text": "output text", "reasoning": "reasoning",
          "output_audio": "output audio", "output_image": "output image"}

# Where a price is missing, the provider's published rule derives it from another price.
# Anthropic: 5-minute cache writes cost 1.25x base input, 1-hour writes 2x, reads 0.1x.
ANTHROPIC_RULES = {"cache_read": ("input_text", Decimal("0.1")),
                   "cache_write_5m": ("input_text", Decimal("1.25")),
                   "cache_write_1h": ("input_text", Decimal("2"))}
# Everyone else: a category without its own price is billed at its direction's base price.
# This never under-reports: OpenAI's discounts on cached input (50-90%) vary by model, so
# a missing cached price is charged in full rather than guessed.
BASE_RULES = {"cache_read": ("input_text", Decimal(1)),
              "cache_write_5m": ("input_text", Decimal(1)),
              "cache_write_1h": ("cache_write_5m", Decimal(1)),
              "input_audio": ("input_text", Decimal(1)),
              "input_image": ("input_text", Decimal(1)),
              "reasoning": ("output_text", Decimal(1)),
              "output_audio": ("output_text", Decimal(1)),
              "output_image": ("output_text", Decimal(1))}

# (usage attribute, direction, token_type, price category): cache writes of both TTLs
# are one token_type, as in llm_tokens_total, but priced apart.
_PRICED = (
    ("input_text", "input", "text", "input_text"),
    ("input_cache_read", "input", "cache_read", "cache_read"),
    ("input_cache_write_5m", "input", "cache_write", "cache_write_5m"),
    ("input_cache_write_1h", "input", "cache_write", "cache_write_1h"),
    ("input_audio", "input", "audio", "input_audio"),
    ("input_image", "input", "image", "input_image"),
    ("output_text", "output", "text", "output_text"),
    ("output_reasoning", "output", "reasoning", "reasoning"),
    ("output_audio", "output", "audio", "output_audio"),
    ("output_image", "output", "image", "output_image"),
)


@dataclass(frozen=True)
class PriceSheet:
    """USD per million tokens for each category, each value a Decimal or context tiers."""

    prices: dict  # category -> Decimal | TieredPrices
    sources: dict  # category -> where the price came from, for `prices` and audits
    model: str  # the model as the source names it

    def per_million(self, category: str, input_total: int) -> Decimal:
        """Price a category, picking the context-length tier the request falls in."""
        price = self.prices[category]
        if isinstance(price, TieredPrices):
            chosen = price.base
            for tier in price.tiers:  # genai-prices: a tier applies above its start
                if input_total > tier.start:
                    chosen = tier.price
            return chosen
        return price


def _complete(prices: dict, sources: dict, anthropic: bool) -> None:
    """Fill every missing category from the provider's rule, noting the derivation."""
    rules = {**BASE_RULES, **ANTHROPIC_RULES} if anthropic else BASE_RULES
    for category in CATEGORIES:
        if category in prices:
            continue
        base, factor = rules[category]
        price = prices[base]
        prices[category] = (price * factor if not isinstance(price, TieredPrices) else
                            TieredPrices(base=price.base * factor, tiers=[
                                type(t)(start=t.start, price=t.price * factor)
                                for t in price.tiers]))
        if anthropic and category in ANTHROPIC_RULES:
            sources[category] = f"{factor} x {LABELS[base]} (Anthropic's published rule)"
        else:
            sources[category] = f"assumed: the {LABELS[base]} price (none of its own)"


class Pricing:
    """Resolve and cache price sheets; compute fees."""

    def __init__(self, overrides=(), now=None):
        self.overrides = tuple(overrides)
        self.now = now or (lambda: datetime.now(tz=UTC))
        self.snapshot = get_snapshot()
        self._sheets: dict[tuple, PriceSheet | None] = {}

    def sheet(self, service: str, provider: str, model: str,
              service_tier: str | None = None) -> PriceSheet | None:
        """Return the prices that apply, or None when nothing prices this model."""
        key = (service, provider, model, service_tier)
        if key not in self._sheets:
            self._sheets[key] = self._resolve(service, provider, model, service_tier)
        return self._sheets[key]

    def _resolve(self, service, provider, model, service_tier):
        anthropic = provider == "anthropic"
        for i, o in enumerate(self.overrides):
            if o.service not in (None, service) or not fnmatch.fnmatchcase(model, o.model):
                continue
            prices = {c: Decimal(str(v)) for c, v in o.per_category().items() if v is not None}
            sources = {c: f"config pricing[{i}]" for c in prices}
            _complete(prices, sources, anthropic)
            return PriceSheet(prices, sources, o.model)
        if find_provider_by_id(self.snapshot.providers, provider) is None:
            return None  # self-hosted or unknown provider: never guess a cloud price
        try:
            _, info = self.snapshot.find_provider_model(model, None, provider, None)
        except LookupError:
            return None
        context = {"service_tier": service_tier} if service_tier else None
        table = info.get_prices(self.now(), context)
        prices, sources = {}, {}
        for category, keys in TABLE_KEYS.items():
            for k in keys:
                value = getattr(table, k, None)
                if value is not None:
                    prices[category], sources[category] = value, f"{TABLE}: {info.id} {k}"
                    break
        if "input_text" not in prices:
            return None
        if "output_text" not in prices:  # embeddings and other input-only models
            prices["output_text"] = Decimal(0)
            sources["output_text"] = f"{TABLE}: {info.id} has no output price"
        _complete(prices, sources, anthropic)
        return PriceSheet(prices, sources, info.id)

    def fees(self, sheet: PriceSheet, usage: Usage) -> list[tuple[str, str, Decimal]]:
        """Return (direction, token_type, USD) for every category with tokens."""
        input_total = usage.input_total
        out = []
        for attr, direction, token_type, category in _PRICED:
            count = getattr(usage, attr)
            if count:
                out.append((direction, token_type,
                            count * sheet.per_million(category, input_total) / MILLION))
        return out


def describe(sheet: PriceSheet) -> list[str]:
    """Render a price sheet as lines a user can check a bill against."""
    lines = [f"{'category':<20} {'USD per 1M tokens':<40} source"]
    for category in CATEGORIES:
        price = sheet.prices[category]
        if isinstance(price, TieredPrices):
            shown = f"{price.base} " + " ".join(
                f"({t.price} above {t.start:,} input tokens)" for t in price.tiers)
        else:
            shown = str(price)
        lines.append(f"{LABELS[category]:<20} {shown:<40} {sheet.sources[category]}")
    return lines

