"""What a report holds, with no layout: its page one, sections of tables, charts and
notes, and how a reader names and formats each figure (the PDF and the workbook both
draw it)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from .. import __version__
from ..store.query import Filters

# What a reader calls each column and category, not its name in the database.
LABELS = {"input_text": "Input text", "input_cache_read": "Cache read",
          "input_cache_write_5m": "Cache write (5 min)",
          "input_cache_write_1h": "Cache write (1 h)", "input_audio": "Input audio",
          "input_image": "Input image", "output_text": "Output text",
          "output_reasoning": "Reasoning", "output_audio": "Output audio",
          "output_image": "Output image", "model": "Model", "api_key": "API key",
          "service": "Service"}
CATEGORIES = {"text": "text", "cache_read": "cache read", "cache_write": "cache write",
              "cache_write_5m": "cache write (5 min)", "cache_write_1h": "cache write (1 h)",
              "audio": "audio", "image": "image", "reasoning": "reasoning",
              "training": "training", "web_search": "web search"}
# A bucket's start as its column shows it (the header says hour, day, week or month).
TIMES = {"hour": "%Y-%m-%d %H:%M", "day": "%Y-%m-%d", "week": "%Y-%m-%d", "month": "%Y-%m"}


def category(name: str) -> str:
    """input_cache_read as a reader says it: "Input, cache read"."""
    direction, _, kind = name.partition("_")
    return f"{direction.capitalize()}, {CATEGORIES.get(kind, kind.replace('_', ' '))}"


@dataclass
class Table:
    title: str
    # (key, header, kind): text, int, usd, pct, pp, change, ms, a bucket's granularity (hour, day,
    # week, month: its time), or row (the row's own "kind")
    columns: list[tuple[str, str, str]]
    rows: list[dict]

    @staticmethod
    def kind(row: dict, kind: str, key: str = "") -> str:
        """A cell's kind: its column's, or, in a column of kind row, the row's own for that
        column (KEY_kind), else the row's."""
        if kind != "row":
            return kind
        return row.get(f"{key}_kind") or row.get("kind", "text")

    def text(self, row: dict, key: str, kind: str) -> str:
        """A cell as a reader sees it: a total row leaves blank what it does not sum."""
        value = row.get(key)
        if value is None and row.get(self.columns[0][0]) == "Total":
            return ""
        return text(value, self.kind(row, kind, key))

    def keys(self) -> int:
        """How many leading columns name a row (a time, a model, a key): a part of a table
        too wide for the page repeats them."""
        return next((i for i, (_, _, kind) in enumerate(self.columns)
                     if kind not in ("text", *TIMES)), len(self.columns))


@dataclass
class Chart:
    title: str
    kind: str  # line or bar
    unit: str  # what the y axis counts
    granularity: str  # of the x axis: hour, day, week or month
    x: list[datetime]  # every bucket of the period, the empty ones too
    series: dict[str, list[float | None]]  # at most eight; None where nothing is measured


@dataclass
class Section:
    title: str
    tables: list[Table] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    kind: str
    filters: Filters
    headline: Table  # page one: fee, requests, tokens, success rate, against the last period
    fee: Chart  # page one: the fee over the period
    sections: list[Section]
    forecast: float | None = None  # month-end, when the period is the current month
    version: str = __version__

    @property
    def title(self) -> str:
        return f"LLM usage: {self.kind} report"

    def describe(self) -> list[tuple[str, str]]:
        """Page one's facts: period, zone, filters, version."""
        f = self.filters
        start = datetime.fromtimestamp(f.start, f.tz).isoformat(" ", "minutes")
        end = datetime.fromtimestamp(f.end, f.tz).isoformat(" ", "minutes")
        filters = "; ".join(f"{column} = {', '.join(values)}" for column, values in f.equal)
        return [("Period", f"{start} to {end} (end excluded)"), ("Time zone", f.tz.key),
                ("Filters", filters or "none: every request"),
                ("Made by", f"llm-usage-exporter {self.version}")]


def usd(amount: float) -> str:
    """One money format: thousands separated, cents at least, and two significant digits
    of an amount under a cent ($0.00044, not $0.0004 or $0.000444)."""
    if amount == 0:
        return "$0.00"
    places = max(2, 1 - math.floor(math.log10(abs(amount))))
    return f"${amount:,.{places}f}"


def text(value, kind: str) -> str:
    """A value as a reader sees it: - for a figure with nothing to compute it from (a
    success rate without requests), never 0."""
    if value is None:
        return "" if kind == "text" else "-"
    if kind == "int":
        return f"{value:,.0f}"
    if kind == "usd":
        return usd(value)
    if kind == "pct":
        return f"{value:.1%}"
    if kind == "change":  # of a count or an amount, signed
        return f"{value:+.1%}"
    if kind == "pp":  # a change of a rate, in percentage points
        return f"{value * 100:+.1f} pp"
    if kind == "ms":
        return f"{value:,.1f} ms"
    if kind in TIMES and value != "Total":
        return datetime.fromisoformat(value).strftime(TIMES[kind])
    return str(value)


def totalled(table: Table) -> Table:
    """The table with a grand total row: counts and amounts summed, each rate or mean
    left empty (a sum of them means nothing), named in its first column."""
    if not table.rows:
        return table
    first = table.columns[0][0]
    total: dict = {first: "Total"}
    for key, _, kind in table.columns[1:]:
        if kind in ("int", "usd"):
            total[key] = sum(r.get(key) or 0 for r in table.rows)
    requests = sum(r.get("requests") or 0 for r in table.rows)
    if any(key == "success_rate" for key, _, _ in table.columns) and requests:
        total["success_rate"] = sum(r["successful"] for r in table.rows) / requests
    table.rows = [*table.rows, total]
    return table
