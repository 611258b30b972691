"""A report's content, read from the history: sections of tables and charts, no layout.

Every figure is the usage API's for the same query (store/usage.py), so a report and a
dashboard reading /api/usage agree; what the API has no query for (fees by category, p95
latency, what caching saved) comes from store/breakdowns.py, over the same rows.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import datetime

from .. import __version__
from ..store.breakdowns import (
    cache_saved,
    cost_notes,
    fee_categories,
    p95_by_bucket,
    unexplained,
)
from ..store.database import Database
from ..store.query import Filters
from ..store.reads import usage_rows
from ..store.schema import TOKEN_COLUMNS
from ..store.usage import UsageQuery
from ..store.zones import periods

TYPES = ("summary", "cost", "trend", "detailed")
TOP = 10
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


def category(name: str) -> str:
    """input_cache_read as a reader says it: "Input, cache read"."""
    direction, _, kind = name.partition("_")
    return f"{direction.capitalize()}, {CATEGORIES.get(kind, kind.replace('_', ' '))}"


@dataclass
class Table:
    title: str
    # (key, header, kind): text, int, usd, pct, ms, time, or row (the row's own "kind")
    columns: list[tuple[str, str, str]]
    rows: list[dict]

    @staticmethod
    def kind(row: dict, kind: str, key: str = "") -> str:
        """A cell's kind: its column's, or, in a column of kind row, the row's own for that
        column (KEY_kind), else the row's."""
        if kind != "row":
            return kind
        return row.get(f"{key}_kind") or row.get("kind", "text")


@dataclass
class Chart:
    title: str
    kind: str  # line or bar
    unit: str  # what the y axis counts
    x: list[datetime]
    series: dict[str, list[float]]


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
    sections: list[Section]
    version: str = __version__

    @property
    def title(self) -> str:
        return f"LLM usage: {self.kind} report"

    def describe(self) -> list[tuple[str, str]]:
        """The title page's facts: period, zone, filters, version."""
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
    table.rows = [*table.rows, total]
    return table


def fetch(db: Database, q: UsageQuery) -> list[dict]:
    return usage_rows(db, q).all()


def build(db: Database, kind: str, filters: Filters, now: float) -> Report:
    """The report of `kind` over the filters' range."""
    sections = {"summary": summary, "cost": cost, "trend": trend, "detailed": detailed}[kind](
        db, filters, now)
    if not matched(db, filters):
        sections.insert(0, Section(NOTHING, notes=[
            "No request matched this period and these filters: every table below is empty. "
            "Check the period, the time zone and the filters (a model or key's name as the "
            "gateway labels it)."]))
    return Report(kind, filters, sections)


NOTHING = "Nothing matched"  # the first section of a report of no request


def matched(db: Database, filters: Filters) -> bool:
    """Whether any request (or fee: a fine-tuning's training) is in the period and
    filters."""
    [total] = fetch(db, UsageQuery(filters)) or [{}]
    return bool(total.get("requests") or total.get("fee_usd"))


# --- summary ------------------------------------------------------------------------------

TOTALS = [("requests", "Requests", "int"), ("success_rate", "Success rate", "pct"),
          *((c, LABELS[c] + " tokens", "int") for c in TOKEN_COLUMNS),
          ("total_tokens", "Total tokens", "int"), ("fee_usd", "Fee", "usd")]


def _total(db: Database, filters: Filters) -> dict:
    found = fetch(db, UsageQuery(filters))
    return found[0] if found and found[0]["requests"] else {}


def summary(db: Database, filters: Filters, now: float) -> list[Section]:
    length = filters.end - filters.start
    before = dataclasses.replace(filters, start=filters.start - length, end=filters.start)
    this, last = _total(db, filters), _total(db, before)
    table = Table("Totals, against the previous period of equal length",
                  [("metric", "", "text"), ("this", "This period", "row"),
                   ("previous", "Previous period", "row"), ("change", "Change", "row")],
                  [{"metric": header, "kind": kind, "this": _figure(this, key),
                    "previous": _figure(last, key),
                    # A rate changes by points: 90% to 95% is +5 points, not +5.6%.
                    **({"change": _points(this.get(key), last.get(key)), "change_kind": "pp"}
                       if kind == "pct" else
                       {"change": _change(this.get(key), last.get(key)),
                        "change_kind": "pct"})}
                   for key, header, kind in TOTALS])
    tops = Section("Top 10")
    for group in ("model", "api_key", "service"):
        for order, key, kind in (("fee", "fee_usd", "usd"), ("tokens", "total_tokens", "int")):
            q = UsageQuery(filters, (group,), order=order, limit=TOP)
            tops.tables.append(Table(
                f"By {order}, per {group.replace('_', ' ')}",
                [(group, LABELS[group], "text"),
                 (key, "Fee" if order == "fee" else "Tokens", kind),
                 ("requests", "Requests", "int")], fetch(db, q)))
    totals = Section("Totals", [table])
    month = periods(now, filters.tz)["month"]
    if abs(filters.start - month[0]) < 1 and filters.end >= min(now, month[1]) - 1 \
            and now < month[1] and this:
        forecast = this["fee_usd"] * (month[1] - month[0]) / max(now - month[0], 3600)
        totals.notes.append(f"Month-end forecast at the pace so far: ${forecast:,.2f}.")
    return [totals, tops]


def _figure(total: dict, key: str):
    """A total's figure: 0 of a count or fee without requests, none of a rate."""
    return total.get(key) if key == "success_rate" else total.get(key) or 0


def _points(now, before):
    return now - before if now is not None and before is not None else None


def _change(now, before):
    return (now - before) / before if now is not None and before else None


# --- cost ---------------------------------------------------------------------------------

def cost(db: Database, filters: Filters, now: float) -> list[Section]:
    by = Section("Fees by model, key and service")  # a sheet's name: 31 characters
    for group in ("model", "api_key", "service"):
        by.tables.append(totalled(Table(
            f"Per {LABELS[group]}",
            [(group, LABELS[group], "text"), ("fee_usd", "Fee", "usd"),
             ("total_tokens", "Tokens", "int"), ("requests", "Requests", "int")],
            fetch(db, UsageQuery(filters, (group,), order="fee")))))
    categories = fee_categories(db, filters)
    bare, unpriced, estimated = cost_notes(db, filters)
    saved = cache_saved(db, filters)
    kinds = Section("Fees by token category", [totalled(Table(
        "Per direction and category", [("category", "Category", "text"),
                                       ("fee_usd", "Fee", "usd")],
        [{"category": category(k), "fee_usd": v} for k, v in categories]))])
    if bare:
        kinds.notes.append(f"{bare} requests were recorded before fees were kept by category "
                           "and are not in this table.")
    kinds.notes.append(f"What cache reads saved against the model's input text price: "
                       f"{usd(saved or 0)} (an estimate: the average input text price of each "
                       "model over the period).")
    by_model, tokenless = unexplained(db, filters)
    kinds.notes.append(f"Unpriced requests (a model with no known price: they cost nothing "
                       f"here): {unpriced or 0:,}" + "".join(
                           f"{'; ' if i else ': '}{model} {n:,}"
                           for i, (model, n) in enumerate(by_model)) + ". Estimated tokens "
                       f"(the upstream reported no usage): {estimated or 0:,}.")
    for model, operation, fee in tokenless:
        why = ("the training of fine-tuning jobs, billed by trained token when a job "
               "succeeds" if operation == "fine_tuning" else
               "what is billed by the call or the unit rather than the token")
        kinds.notes.append(f"A fee with no tokens: {model} ({operation}), {usd(fee)}: {why}.")
    return [by, kinds]


# --- trend --------------------------------------------------------------------------------

def trend(db: Database, filters: Filters, now: float) -> list[Section]:
    granularity = "day" if filters.end - filters.start > 2 * 86400 else "hour"
    found = fetch(db, UsageQuery(filters, ("model",), granularity))
    x = sorted({datetime.fromisoformat(r["time"]) for r in found})
    index = {t: i for i, t in enumerate(x)}
    p95 = p95_by_bucket(db, filters, 86400 if granularity == "day" else 3600)
    series = {name: {} for name in ("tokens", "fee", "requests", "errors", "p95")}
    for r in found:
        i, model = index[datetime.fromisoformat(r["time"])], r["model"]
        for name, value in (("tokens", r["total_tokens"]), ("fee", r["fee_usd"]),
                            ("requests", r["requests"]),
                            ("errors", 1 - (r["success_rate"] or 0)),
                            ("p95", p95.get((r["time"], model)))):
            series[name].setdefault(model, [None] * len(x))[i] = value
    per = "day" if granularity == "day" else "hour"
    charts = [Chart(f"Tokens per {per}", "line", "tokens", x, series["tokens"]),
              Chart(f"Fee per {per}", "bar", "USD", x, series["fee"]),
              Chart(f"Requests per {per}", "line", "requests", x, series["requests"]),
              Chart("Error rate", "line", "share of requests", x, series["errors"]),
              Chart("p95 latency", "line", "ms", x, series["p95"])]
    table = totalled(Table(f"Per {per} and model", [
        ("time", per.capitalize(), "time"), ("model", "Model", "text"),
        ("requests", "Requests", "int"), ("total_tokens", "Tokens", "int"),
        ("fee_usd", "Fee", "usd"), ("success_rate", "Success rate", "pct")], found))
    return [Section(f"Trend per {per}, by model", [table], charts)]


# --- detailed -----------------------------------------------------------------------------

def detailed(db: Database, filters: Filters, now: float) -> list[Section]:
    found = fetch(db, UsageQuery(filters, ("model", "api_key"), "day"))
    return [Section("Per day, model and API key", [totalled(Table("Usage", [
        ("time", "Day", "time"), ("model", "Model", "text"), ("api_key", "API key", "text"),
        ("requests", "Requests", "int"), ("success_rate", "Success rate", "pct"),
        *((c, LABELS[c], "int") for c in TOKEN_COLUMNS),
        ("total_tokens", "Total tokens", "int"), ("fee_usd", "Fee", "usd"),
        ("avg_latency_ms", "Average latency", "ms")], found))])]
