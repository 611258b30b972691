"""The metrics read from the history at scrape time: rows, spend per key, budgets, the
calendar periods the spend is of, and how far the writer is behind."""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from ..telemetry.metrics import (
    BUDGET,
    HISTORY_LAG,
    HISTORY_ROWS,
    PERIOD_END,
    PERIOD_START,
    SPEND,
)
from .database import Database
from .spend import spend_sql
from .zones import periods

log = logging.getLogger(__name__)
# A scrape waits at most this long for the database: with it down, the rest of /metrics is
# still answered well within Prometheus's scrape timeout.
SCRAPE_WAIT = 1.0


class HistoryCollector:
    """llm_history_rows, llm_spend_usd and llm_budget_usd, read from the history at scrape.

    Read from the database rather than kept in memory, so the figures are right after a
    restart and agree across worker processes and every replica of a fleet.
    """

    def __init__(self, registry: CollectorRegistry, db: Database, tz, budgets=(),
                 max_keys: int = 1000, clock=time.time, writer=None):
        self.db, self.tz, self.max_keys, self.clock = db, tz, max_keys, clock
        self.writer = writer  # the History whose lag is exported
        self.reload(budgets)
        registry.register(self)

    def reload(self, budgets) -> None:
        """Take the budgets of the config (again, on SIGHUP)."""
        self.budgets = {b.api_key: b for b in budgets}

    def collect(self):
        spend, budget, rows = (GaugeMetricFamily(f.name, f.documentation, labels=f.labels)
                               for f in (SPEND, BUDGET, HISTORY_ROWS))
        keys = []
        try:
            with self.db.connect(wait=SCRAPE_WAIT) as conn:
                found = conn.one("SELECT value FROM counters WHERE name = 'requests'")
                rows.add_metric([], found[0] if found else 0)
                for api_key, month, day in conn.all(
                        *spend_sql(self.tz, self.clock(), self.max_keys)):
                    # Sums of floats in SQLite: 0.0021238999999999997 is 0.0021239.
                    spend.add_metric([api_key, "day"], round(day or 0.0, 10))
                    spend.add_metric([api_key, "month"], round(month or 0.0, 10))
                    keys.append(api_key)
        except self.db.Error as e:  # no history yet, or unreachable: no spend to show
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
        lag = GaugeMetricFamily(HISTORY_LAG.name, HISTORY_LAG.documentation)
        lag.add_metric([], round(self.writer.lag(), 3) if self.writer is not None else 0.0)
        yield lag

    def _periods(self):
        start, end = (GaugeMetricFamily(f.name, f.documentation, labels=f.labels)
                      for f in (PERIOD_START, PERIOD_END))
        for period, (first, last) in periods(self.clock(), self.tz).items():
            start.add_metric([period], first)
            end.add_metric([period], last)
        yield start
        yield end
