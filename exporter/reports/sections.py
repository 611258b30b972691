"""A report of each type: page one (the headline figures against the previous period, the
month-end forecast, the fee over the period), then its sections (summary, cost, trend,
detailed)."""

from __future__ import annotations

import dataclasses

from ..store.breakdowns import (
    cache_saved,
    cost_notes,
    fee_categories,
    p95_by_bucket,
    unexplained,
)
from ..store.database import Database
from ..store.query import Filters
from ..store.schema import TOKEN_COLUMNS
from ..store.usage import UsageQuery
from .content import LABELS, Chart, Report, Section, Table, category, totalled, usd
from .data import HEADLINE, NOTHING, OTHER, Basis, fetch, forecast, granularity

TOP = 10
# What a bucket is called: "Fee per week"; its column's header.
HEADERS = {"hour": "Hour", "day": "Day", "week": "Week (from Monday)", "month": "Month"}


def summary(b: Basis) -> list[Section]:
    db, filters = b.db, b.filters
    tops = Section("Top 10")
    for group in ("model", "api_key", "service"):
        for order, key, kind in (("fee", "fee_usd", "usd"), ("tokens", "total_tokens", "int")):
            q = UsageQuery(filters, (group,), order=order, limit=TOP)
            tops.tables.append(Table(
                f"By {order}, per {LABELS[group] if group == 'api_key' else group}",
                [(group, LABELS[group], "text"),
                 (key, "Fee" if order == "fee" else "Tokens", kind),
                 ("requests", "Requests", "int")], fetch(db, q)))
    return [Section("Totals", [b.totals]), tops]


def cost(b: Basis) -> list[Section]:
    db, filters = b.db, b.filters
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
        kinds.notes.append(f"{bare:,} requests were recorded before fees were kept by "
                           "category and are not in this table.")
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


def trend(b: Basis) -> list[Section]:
    """Per bucket and model (the eight biggest by fee, or seven and the rest as other):
    a table of the buckets with requests, and a chart of every figure over every bucket."""
    db, filters, step, models, x = b.db, b.filters, b.step, b.models, b.x
    p95 = p95_by_bucket(db, filters, step, models)

    def chart(title: str, kind: str, unit: str, value, empty: float | None = 0.0) -> Chart:
        return Chart(title, kind, unit, step, x, b.series(value, empty))

    charts = [
        chart(f"Tokens per {step}", "line", "tokens", lambda r: r["total_tokens"]),
        chart(f"Fee per {step}", "bar", "USD", lambda r: r["fee_usd"]),
        chart(f"Requests per {step}", "line", "requests", lambda r: r["requests"]),
        # No rate where nothing was asked: a gap, not 0%.
        chart("Error rate", "line", "% of requests",
              lambda r: 100 * r["failed"] / r["requests"] if r["requests"] else None, None),
        chart("p95 latency", "line", "ms", lambda r: p95.get((r["time"], r["model"])), None)]
    totals = fetch(db, UsageQuery(filters, (), step))
    table = totalled(Table(f"Per {step}", [
        ("time", HEADERS[step], step), ("requests", "Requests", "int"),
        ("total_tokens", "Tokens", "int"), ("fee_usd", "Fee", "usd"),
        ("success_rate", "Success rate", "pct")],
        [r for r in totals if r["requests"] or r["fee_usd"]]))
    fees = b.series(lambda r: r["fee_usd"])
    # The fee of each model (a column each) per bucket with a fee: who cost what, when.
    pivot = totalled(Table(f"Fee per {step}, by model", [
        ("time", HEADERS[step], step), *((name, name, "usd") for name in fees),
        ("fee_usd", "Total", "usd")],
        [{"time": t.isoformat(), **{n: v[i] for n, v in fees.items()},
          "fee_usd": sum(v[i] or 0 for v in fees.values())}
         for i, t in enumerate(x) if any(v[i] for v in fees.values())]))
    section = Section(f"Trend per {step}, by model", [table, pivot], charts)
    if OTHER in fees:
        others = b.ranking[len(models):]
        section.notes.append(f"Other: the {len(others)} models after the {len(models)} "
                             f"largest by fee, together: {', '.join(others)}.")
    return [section]


def detailed(b: Basis) -> list[Section]:
    """Every bucket, model and key; the token categories the period used."""
    step = b.step
    found = fetch(b.db, UsageQuery(b.filters, ("model", "api_key"), step))
    used = [c for c in TOKEN_COLUMNS if any(r[c] for r in found)]
    return [Section(f"Per {step}, model and API key", [totalled(Table("Usage", [
        ("time", HEADERS[step], step), ("model", "Model", "text"),
        ("api_key", "API key", "text"), ("requests", "Requests", "int"),
        ("success_rate", "Success rate", "pct"), *((c, LABELS[c], "int") for c in used),
        ("total_tokens", "Total tokens", "int"), ("fee_usd", "Fee", "usd"),
        ("avg_latency_ms", "Average latency", "ms")], found))])]


SECTIONS = {"summary": summary, "cost": cost, "trend": trend, "detailed": detailed}


def build(db: Database, kind: str, filters: Filters, now: float,
          given: str | None = None) -> Report:
    """The report of `kind` over the filters' range, bucketed by `given` or its default."""
    b = Basis(db, filters, granularity(kind, filters, given))
    headline = dataclasses.replace(b.totals, rows=b.totals.rows[:HEADLINE])
    sections = SECTIONS[kind](b)
    fee, requests = (r["this"] for r in headline.rows[:2])
    if not (fee or requests):
        sections.insert(0, Section(NOTHING, notes=[
            "No request matched this period and these filters: every table below is empty. "
            "Check the period, the time zone and the filters (a model or key's name as the "
            "gateway labels it)."]))
    chart = Chart(f"Fee per {b.step}, by model", "bar", "USD", b.step, b.x,
                  b.series(lambda r: r["fee_usd"]))
    return Report(kind, filters, headline, chart, sections,
                  forecast(fee, filters, now) if fee or requests else None)
