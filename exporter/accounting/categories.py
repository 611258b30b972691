"""The categories a fee is split into, and where the price of each comes from.

The token categories are disjoint, as in llm_tokens_total; each has the price table's keys
that price it, and a rule that derives its price where the table has none. What is billed
other than tokens (web searches, audio seconds, characters) is in UNITS.
"""

from __future__ import annotations

from decimal import Decimal

MILLION, THOUSAND = Decimal(1_000_000), Decimal(1000)

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
# Every provider bills reasoning (thinking) tokens as output tokens.
PUBLISHED_RULES = {"reasoning": ("output_text", Decimal(1))}
# Otherwise a category without its own price is billed at its direction's base price: an
# assumption (counted in llm_assumed_price_tokens_total). It never under-reports cached
# input (OpenAI's discounts of 50-90% vary by model); it can under-report audio and images,
# which cost more than text: give such models a price in the config.
ASSUMED_RULES = {"cache_read": ("input_text", Decimal(1)),
                 "cache_write_5m": ("input_text", Decimal(1)),
                 "cache_write_1h": ("cache_write_5m", Decimal(1)),
                 "input_audio": ("input_text", Decimal(1)),
                 "input_image": ("input_text", Decimal(1)),
                 "output_audio": ("output_text", Decimal(1)),
                 "output_image": ("output_text", Decimal(1))}

# (usage attribute, direction, token_type, price category): cache writes of both TTLs
# are one token_type, as in llm_tokens_total, but priced apart.
PRICED = (
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
# What is billed other than tokens: (usage attribute, direction, token_type of its fee,
# the table's keys for its price, the quantity that price is for).
UNITS = (("web_search_calls", "tool", "web_search", ("web_searches_kcount",), THOUSAND),
         ("audio_seconds", "input", "audio_seconds", ("input_audio_hours", "audio_hours"),
          Decimal(3600)),
         ("input_characters", "input", "characters", ("input_mchars",), MILLION))
