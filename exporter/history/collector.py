"""The metrics read from the history at scrape time: rows, spend per key, budgets, and the
calendar periods the spend is of."""

from __future__ import annotations

import logging
import sqlite3
import time

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from ..telemetry.metrics import BUDGET, HISTORY_ROWS, PERIOD_END, PERIOD_START, SPEND
from .query import spend_sql
from .zones import periods

log = logging.getLogger("llm_usage_exporter")


class HistoryCollector:
    """llm_history_rows, llm_spend_usd and llm_budget_usd, read from the history at scrape.

    Read from the database rather than kept in memory, so the figures are right after a
    restart and agree across worker processes.
    """

    def __init__(self, registry: CollectorRegistry, path: str, tz, budgets=(),
                 max_keys: int = 1000, clock=time.time):
        self.path, self.tz, self.max_keys, self.clock = path, tz, max_keys, clock
        self.budgets = {b.api_key: b for b in budgets}
        registry.register(self)

    def collect(self):
        spend, budget, rows = (GaugeMetricFamily(f.name, f.documentation, labels=f.labels)
                               for f in (SPEND, BUDGET, HISTORY_ROWS))
        keys = []
        try:
            with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=1) as conn:
                rows.add_metric([], conn.execute("SELECT count(*) FROM requests").fetchone()[0])
                for api_key, month, day in conn.execute(
                        *spend_sql(self.tz, self.clock(), self.max_keys)):
                    # Sums of floats in SQLite: 0.0021238999999999997 is 0.0021239.
                    spend.add_metric([api_key, "day"], round(day or 0.0, 10))
                    spend.add_metric([api_key, "month"], round(month or 0.0, 10))
                    keys.append(api_key)
        except sqlite3.Error as e:  # no history yet: no spend to show
            log.debug("spend: %s", e)
        for api_key in dict.fromkeys([k for k in self.budgets if k != "*"] + keys):
            b = self.budgets.get(api_key) or self.budgets.get("*")
            if b is None:
                continue
            for period, limit in (("day", b.daily), ("month", b.monthly)):
                if limit is not None:
                    budget.add_metric([api_key, period], limit)
        yield rows
        yield spend
        yield budget
        yield from self._periods()

    def _periods(self):
        start, end = (GaugeMetricFamily(f.name, f.documentation, labels=f.labels)
                      for f in (PERIOD_START, PERIOD_END))
        for period, (first, last) in periods(self.clock(), self.tz).items():
            start.add_metric([period], first)
            end.add_metric([period], last)
        yield start
        yield end
