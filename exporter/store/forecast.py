"""The current calendar month so far and its month-end forecast, from the history: what
/api/forecast answers, for requests, tokens and fees alike.

The forecast extends the month so far at its average pace: so far x the month's length /
the part of it elapsed, the month being the calendar month of the zone asked for. During
the month's first day it is the month so far (half an hour in, the pace would multiply it
by 1,500), as the spend forecast of the recording rules (api_key:llm_spend_usd:
month_forecast) has it.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from .database import Database
from .query import Filters
from .reads import usage_rows
from .usage import UsageQuery
from .zones import periods

FORECAST = ("requests", "total_tokens", "fee_usd")  # the figures forecast


def month_pace(now: float, start: float, end: float) -> float:
    """What the month so far is multiplied by for its month-end forecast: the month's
    length over the part elapsed, 1 during its first day."""
    return (end - start) / (now - start) if now - start >= 86400 else 1.0


def month_forecast(db: Database, filters: Filters, now: float) -> dict:
    """The month so far in `filters.tz` (its range replaced by the month's), and each
    figure's month-end forecast."""
    start, end = periods(now, filters.tz)["month"]
    so_far = dataclasses.replace(filters, start=start, end=max(now, start + 1e-3))
    [row] = usage_rows(db, UsageQuery(so_far)).all() or [{}]
    pace = month_pace(now, start, end)
    out = {"month_start": datetime.fromtimestamp(start, filters.tz).isoformat(),
           "month_end": datetime.fromtimestamp(end, filters.tz).isoformat(),
           "elapsed": round((now - start) / (end - start), 6)}
    for name in FORECAST:
        value = row.get(name) or 0
        out[name] = value
        out[f"forecast_{name}"] = round(value * pace, 10 if name == "fee_usd" else 3)
    return out
