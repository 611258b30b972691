"""Usage + model + moment -> fee in USD, by category.

Prices come from the config's `pricing:` overrides, else from the price table (table.py)
of the provider the model really comes from (providers.py), as it stood at the moment of
the request: DeepSeek's off-peak hours and dated price changes apply to the request, not
to when the gateway first saw the model. Fees are computed in Decimal, per million tokens
(per thousand tool calls), for exactly the categories of llm_tokens_total; floats appear
only when a fee is added to a counter.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TypeAlias

from genai_prices.types import ModelInfo, TieredPrices

from ..config.table import Config, PriceOverride
from ..record import Usage
from .categories import (
    ANTHROPIC_RULES,
    ASSUMED_RULES,
    CATEGORIES,
    LABELS,
    MILLION,
    PRICED,
    PUBLISHED_RULES,
    TABLE_KEYS,
    UNITS,
)
from .providers import Mode, pricing_mode, unknown_provider
from .table import Table, signature


@dataclass(frozen=True)
class PriceSheet:
    """USD per million tokens for each category, each a Decimal or context tiers; and the
    price of what is billed other than tokens (UNITS), where the table has one."""

    prices: dict[str, Decimal | TieredPrices]  # category -> its price
    sources: dict[str, str]  # category -> where the price came from, for `prices` and audits
    model: str  # the model as the source names it
    provider: str = ""  # the table provider that priced it ("" for an override)
    assumed: frozenset[str] = frozenset()  # categories priced by ASSUMED_RULES
    units: tuple[tuple[str, Decimal], ...] = ()  # (usage attribute, USD per its UNITS quantity)

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


# What a (service, provider, model) resolves to: an override's sheet (the same at every
# moment), a table's model (whose prices depend on the moment), or nothing.
Found: TypeAlias = PriceSheet | tuple[str, ModelInfo] | None


def _complete(prices: dict[str, Decimal | TieredPrices], sources: dict[str, str],
              anthropic: bool, model: str = "") -> frozenset[str]:
    """Fill every missing category by a rule, noting how; return the assumed ones."""
    rules = {**ASSUMED_RULES, **PUBLISHED_RULES, **(ANTHROPIC_RULES if anthropic else {})}
    # An image model's output is image tokens, a speech model's audio: the table's output
    # price is theirs (gpt-image-1 $40, gpt-4o-mini-tts $12), not an assumption.
    published = {"output_image"} if "image" in model else \
        {"output_audio"} if "tts" in model else set()
    assumed: set[str] = set()
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
        elif category in PUBLISHED_RULES:
            sources[category] = f"the {LABELS[base]} price (reasoning is billed as output)"
        elif category in published:
            sources[category] = f"the {LABELS[base]} price (the model's output is " \
                f"{category.split('_')[1]})"
        else:
            sources[category] = f"assumed: the {LABELS[base]} price (none of its own)"
            assumed.add(category)
    return frozenset(assumed)


class Pricing:
    """Resolve price sheets (kept per model and per state of its dated prices); fees."""

    def __init__(self, overrides: Iterable[PriceOverride] = (),
                 modes: dict[str, Mode] | None = None, table: Table | None = None,
                 now: Callable[[], datetime] | None = None) -> None:
        self.overrides = tuple(overrides)
        self.table = table or Table()
        self.modes = dict(modes or {})  # service -> Mode; else decided from the label
        self.now = now or (lambda: datetime.now(tz=UTC))
        self._found: dict[tuple[str, str, str], Found] = {}
        self._sheets: dict[tuple[tuple[str, str, str], str | None, bool, tuple[bool, ...]],
                           PriceSheet | None] = {}

    def mode(self, service: str, provider: str) -> Mode:
        found = self.modes.get(service)
        if found is None:
            found = self.modes[service] = pricing_mode(provider, None, self.table.ids)
        return found

    def sheet(self, service: str, provider: str, model: str, service_tier: str | None = None,
              at: datetime | None = None, batch: bool = False) -> PriceSheet | None:
        """The prices that apply to a request at `at` (default now), or None."""
        key = (service, provider, model)
        if key not in self._found:  # once looked up, None means nothing was found
            self._found[key] = self._find(service, provider, model)
        found = self._found[key]
        if found is None or isinstance(found, PriceSheet):
            return found  # an override: the same at every moment
        at = at or self.now()
        _, info = found
        state = (key, service_tier, batch, signature(info, at))
        if state not in self._sheets:
            self._sheets[state] = self._from_table(found, at, service_tier, batch)
        return self._sheets[state]

    def _find(self, service: str, provider: str, model: str) -> Found:
        """An override's sheet, or (table provider id, model info), or None."""
        for i, o in enumerate(self.overrides):
            if o.input is None or o.service not in (None, service) or not \
                    fnmatch.fnmatchcase(model, o.model):  # input None: a training price alone
                continue
            prices: dict[str, Decimal | TieredPrices] = {
                c: Decimal(str(v)) for c, v in o.per_category().items() if v is not None}
            sources = {c: f"config pricing[{i}]" for c in prices}
            # Cache rules follow who makes the model, not the label it is served under.
            anthropic = self.table.is_anthropic(model) or \
                self.mode(service, provider).table == "anthropic"
            assumed = _complete(prices, sources, anthropic)
            return PriceSheet(prices, sources, o.model, "", assumed)
        return self.table.find(self.mode(service, provider).table, model)

    def _from_table(self, found: tuple[str, ModelInfo], at: datetime, service_tier: str | None,
                    batch: bool) -> PriceSheet | None:
        provider_id, info = found
        context: dict[str, str] = {}
        if service_tier:
            context["service_tier"] = service_tier
        if batch:
            context["processing"] = "batch"
        table = info.get_prices(at, context or None)
        prices: dict[str, Decimal | TieredPrices] = {}
        sources: dict[str, str] = {}
        name = f"{self.table.name}: {provider_id} {info.id}"
        for category, keys in TABLE_KEYS.items():
            for k in keys:
                value = getattr(table, k, None)
                if value is not None:
                    prices[category], sources[category] = value, f"{name} {k}"
                    break
        units = tuple((attr, price) for attr, *_, keys, _ in UNITS
                      for price in [next((getattr(table, k) for k in keys
                                          if getattr(table, k, None) is not None), None)]
                      if price is not None)
        if "input_text" not in prices:
            if not any(attr != "web_search_calls" for attr, _ in units):
                return None
            # Billed by the second or the character only (whisper-1, tts-1).
            prices["input_text"] = Decimal(0)
            sources["input_text"] = f"{name} bills no tokens"
        if "output_text" not in prices:  # embeddings and other input-only models
            prices["output_text"] = Decimal(0)
            sources["output_text"] = f"{name} has no output price"
        anthropic = provider_id == "anthropic" or self.table.is_anthropic(info.id)
        assumed = _complete(prices, sources, anthropic, info.id)
        return PriceSheet(prices, sources, info.id, provider_id, assumed, units)

    @staticmethod
    def fees(sheet: PriceSheet, usage: Usage) -> list[tuple[str, str, Decimal]]:
        """(direction, token_type, USD) for every category with tokens, and for each
        quantity billed otherwise (UNITS): what has no price is left out (see
        unpriced_units)."""
        input_total = usage.input_total
        out: list[tuple[str, str, Decimal]] = []
        for attr, direction, token_type, category in PRICED:
            count = getattr(usage, attr)
            if count:
                out.append((direction, token_type,
                            count * sheet.per_million(category, input_total) / MILLION))
        prices = dict(sheet.units)
        for attr, direction, token_type, _, per in UNITS:
            quantity = getattr(usage, attr)
            if quantity and attr in prices:
                out.append((direction, token_type, Decimal(str(quantity)) * prices[attr] / per))
        return out

    @staticmethod
    def unpriced_units(sheet: PriceSheet, usage: Usage) -> list[str]:
        """What the request was billed for that the sheet has no price for."""
        prices = dict(sheet.units)
        return [attr for attr, *_ in UNITS if getattr(usage, attr) and attr not in prices]

    @staticmethod
    def assumed(sheet: PriceSheet, usage: Usage) -> list[tuple[str, str, int]]:
        """(direction, token_type, tokens) billed at an assumed price."""
        out: dict[tuple[str, str], int] = {}
        for attr, direction, token_type, category in PRICED:
            count = getattr(usage, attr)
            if count and category in sheet.assumed:
                out[direction, token_type] = out.get((direction, token_type), 0) + count
        return [(d, t, n) for (d, t), n in out.items()]


def pricing_for(config: Config) -> Pricing:
    """The pricing a config asks for (TableError: its pricing_data cannot be used)."""
    table = Table(config.pricing_data)
    modes = {s.name: pricing_mode(s.provider, s.pricing_provider, table.ids)
             for s in config.services}
    return Pricing(config.pricing, modes, table)


def warnings(config: Config, table: Table) -> list[str]:
    """What would leave a config's requests unpriced without being an error."""
    out: list[str] = []
    for i, s in enumerate(config.services):
        if problem := unknown_provider(s.provider, s.pricing_provider, table.ids):
            out.append(f"services[{i}].{'pricing_provider' if s.pricing_provider else 'provider'}"
                       f": {problem}")
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
    for attr, usd in sheet.units:
        per = {"web_search_calls": "1K searches", "audio_seconds": "audio hour",
               "input_characters": "1M characters"}[attr]
        lines.append(f"{'per ' + per:<20} {str(usd):<40} the table's price")
    return lines
