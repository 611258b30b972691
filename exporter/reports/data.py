"""What reports read from the history, with no layout: the granularity, the totals against
the previous period, the month-end forecast, and series over every bucket of the period
(sections.py puts them together).

Every figure is the usage API's for the same query (store/usage.py), so a report and a
dashboard reading /api/usage agree; what the API has no query for (fees by category, p95
latency, what caching saved) comes from store/breakdowns.py, over the same rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from ..store.database import Database
from ..store.forecast import month_pace
from ..store.query import BadParameter, Filters
from ..store.reads import usage_rows
from ..store.schema import TOKEN_COLUMNS
from ..store.usage import UsageQuery
from ..store.zones import bucket_starts, periods, wall_to_utc
from .content import LABELS, TIMES, Table

TYPES = ("summary", "cost", "trend", "detailed")
GRANULARITIES = tuple(TIMES)  # hour, day, week, month
# A chart's axis and a table's buckets: past a thousand, neither can be read (a year of
# days is 365; 1,000 hours are six weeks).
MAX_BUCKETS = 1000
SERIES = 8  # lines or bars a chart can tell apart: the rest are summed as "other"
OTHER = "other"
NOTHING = "Nothing matched"  # the first section of a report of no request
TOTALS = [("fee_usd", "Fee", "usd"), ("requests", "Requests", "int"),
          ("total_tokens", "Total tokens", "int"), ("success_rate", "Success rate", "pct"),
          *((c, LABELS[c] + " tokens", "int") for c in TOKEN_COLUMNS)]
HEADLINE = 4  # of TOTALS, page one's: fee, requests, tokens, success rate


def fetch(db: Database, q: UsageQuery) -> list[dict]:
    return usage_rows(db, q).all()


def granularity(kind: str, filters: Filters, given: str | None = None) -> str:
    """The buckets of a report's charts and tables: `given`, else the finest that keeps a
    long range to a few pages (a year of a trend is twelve months), never finer than a
    day for the detailed report (each of its rows is a bucket, a model and a key)."""
    days = (filters.end - filters.start) / 86400
    chosen = given or ("hour" if days <= 2 and kind != "detailed" else "day" if days <= 62
                       else "week" if days <= 190 else "month")
    if chosen not in GRANULARITIES:
        raise BadParameter("granularity", f"must be one of {', '.join(GRANULARITIES)}")
    if (n := len(bucket_starts(chosen, filters.tz, filters.start, filters.end))) > MAX_BUCKETS:
        raise BadParameter("granularity", f"{chosen} over this period is {n:,} buckets, past "
                           f"the {MAX_BUCKETS:,} a report can show: choose a coarser one")
    return chosen


def matched(db: Database, filters: Filters) -> bool:
    """Whether any request (or fee: a fine-tuning's training) is in the period and
    filters."""
    [total] = fetch(db, UsageQuery(filters)) or [{}]
    return bool(total.get("requests") or total.get("fee_usd"))


def comparison(db: Database, filters: Filters) -> Table:
    """The period's totals against the previous period of equal length, with the change."""
    length = filters.end - filters.start
    before = dataclasses.replace(filters, start=filters.start - length, end=filters.start)
    this, last = _total(db, filters), _total(db, before)
    return Table("Totals, against the previous period of equal length",
                 [("metric", "", "text"), ("this", "This period", "row"),
                  ("previous", "Previous period", "row"), ("change", "Change", "row")],
                 [{"metric": header, "kind": kind, "this": _figure(this, key),
                   "previous": _figure(last, key),
                   # A rate changes by points: 90% to 95% is +5 points, not +5.6%.
                   **({"change": _points(this.get(key), last.get(key)), "change_kind": "pp"}
                      if kind == "pct" else
                      {"change": _change(this.get(key), last.get(key)),
                       "change_kind": "change"})}
                  for key, header, kind in TOTALS
                  # A token category used in neither period is no figure.
                  if kind != "int" or key in ("requests", "total_tokens") or this.get(key)
                  or last.get(key)])


def _total(db: Database, filters: Filters) -> dict:
    found = fetch(db, UsageQuery(filters))
    # A fee with no request (a fine-tuning's training) is a total too.
    return found[0] if found and (found[0]["requests"] or found[0]["fee_usd"]) else {}


def _figure(total: dict, key: str):
    """A total's figure: 0 of a count or fee without requests, none of a rate."""
    return total.get(key) if key == "success_rate" else total.get(key) or 0


def _points(now, before):
    return now - before if now is not None and before is not None else None


def _change(now, before):
    return (now - before) / before if now is not None and before else None


def forecast(fee: float, filters: Filters, now: float) -> float | None:
    """The month-end fee at the pace so far (`fee` so far), when the period is the current
    month so far (or all of it): /api/forecast's, by its rule (store/forecast.py)."""
    start, end = periods(now, filters.tz)["month"]
    if abs(filters.start - start) >= 1 or filters.end < min(now, end) - 1 or now >= end:
        return None
    return fee * month_pace(now, start, end)


@dataclass
class Basis:
    """A report's period, filters and buckets, and what its parts read more than once
    (page one and a section), read once."""
    db: Database
    filters: Filters
    step: str  # the granularity

    @cached_property
    def totals(self) -> Table:
        return comparison(self.db, self.filters)

    @cached_property
    def ranking(self) -> list[str]:
        """Every model of the period, by fee then tokens."""
        return ranked(self.db, self.filters, "model")

    @cached_property
    def models(self) -> list[str]:
        """The models charts draw apart: all of them if they are at most SERIES, else the
        first SERIES - 1, the others summed as "other"."""
        return self.ranking if len(self.ranking) <= SERIES else self.ranking[:SERIES - 1]

    @cached_property
    def by_model(self) -> list[dict]:
        """Per bucket and model, the models after `models` as one "other"."""
        return merged(fetch(self.db, UsageQuery(self.filters, ("model",), self.step)),
                      "model", self.models)

    @cached_property
    def x(self) -> list[datetime]:
        return buckets(self.filters, self.step)

    def series(self, value: Callable[[dict], float | None],
               empty: float | None = 0.0) -> dict:
        """Each model's `value` over every bucket (series())."""
        return series(self.by_model, self.x, "model", self.models, value, empty)


# --- series: every bucket of the period, the top groups and "other" -----------------------

def buckets(filters: Filters, step: str) -> list[datetime]:
    """Every bucket's start in the zone, the empty ones too: an axis covers the period."""
    return [datetime.fromtimestamp(wall_to_utc(w, filters.tz), filters.tz)
            for w in bucket_starts(step, filters.tz, filters.start, filters.end)]


def ranked(db: Database, filters: Filters, group: str) -> list[str]:
    """Every value of `group` in the period, by fee then tokens."""
    found = fetch(db, UsageQuery(filters, (group,), order="fee"))
    return [r[group] for r in sorted(found, key=lambda r: (-r["fee_usd"], -r["total_tokens"]))]


SUMMED = ("requests", "successful", "failed", *TOKEN_COLUMNS, "total_tokens", "fee_usd")


def merged(rows: list[dict], group: str, kept: list[str]) -> list[dict]:
    """Rows per bucket and group, the groups not `kept` summed into one "other" per
    bucket: its counts and fees, its success rate from them (its means are not kept)."""
    out: dict = {}
    for r in rows:
        name = r[group] if r[group] in kept else OTHER
        if (into := out.get((r.get("time"), name))) is None:
            out[r.get("time"), name] = {**r, group: name}
            continue
        for key in SUMMED:
            into[key] = (into[key] or 0) + (r[key] or 0)
    for r in out.values():
        if r[group] == OTHER:
            r.update(success_rate=r["successful"] / r["requests"] if r["requests"] else None,
                     avg_latency_ms=None, avg_ttft_ms=None)
    return list(out.values())


def series(rows: list[dict], x: list[datetime], group: str, names: list[str],
           value: Callable[[dict], float | None], empty: float | None = 0.0) -> dict:
    """Each group's values over the buckets `x`: `empty` where it has no row (0 of a count;
    None of a rate, which nothing measured), "other" last when there is one."""
    index = {t.isoformat(): i for i, t in enumerate(x)}
    present = [*names, *([OTHER] if any(r[group] == OTHER for r in rows) else [])]
    out: dict[str, list[float | None]] = {n: [empty] * len(x) for n in present}
    for r in rows:
        if r[group] in out and r.get("time") in index:
            out[r[group]][index[r["time"]]] = value(r)
    return out
