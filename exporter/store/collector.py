"""The metrics read from the history at scrape time: rows, spend per key, budgets, the
calendar periods the spend is of, and how far the writer is behind."""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from ..config.budgets import budget_of
from ..telemetry.metrics import (
    BUDGET,
    HISTORY_LAG,
    HISTORY_ROWS,
    PERIOD_END,
    PERIOD_START,
    PROJECT_BUDGET,
    PROJECT_SPEND,
    SPEND,
    TUNING_IN_PROGRESS,
)
from .database import Database
from .spend import spend_sql
from .zones import periods

log = logging.getLogger(__name__)
# A scrape waits at most this long for the database: with it down, the rest of /metrics is
# still answered well within Prometheus's scrape timeout.
SCRAPE_WAIT = 1.0
# Fine-tuning jobs created through the gateway (the states the ledger saw them in, comma
# separated) that have not been seen to end.
IN_PROGRESS_SQL = ("SELECT count(*) FROM jobs WHERE ',' || states || ',' LIKE '%,created,%' "
                   + "".join(f"AND ',' || states || ',' NOT LIKE '%,{end},%' "
                             for end in ("succeeded", "failed", "cancelled")))
# Whose spend is exported, and as what. End users are not: a label per user is unbounded.
KINDS = (("api_key", SPEND, BUDGET), ("project", PROJECT_SPEND, PROJECT_BUDGET))


class HistoryCollector:
    """llm_history_rows, and the spend and budgets of keys and projects, read from the
    history at scrape.

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
        self.budgets = {b.payer: b for b in budgets}

    def collect(self):
        rows = GaugeMetricFamily(HISTORY_ROWS.name, HISTORY_ROWS.documentation)
        tuning = GaugeMetricFamily(TUNING_IN_PROGRESS.name, TUNING_IN_PROGRESS.documentation)
        spent: dict[str, list] = {}
        try:
            with self.db.connect(wait=SCRAPE_WAIT) as conn:
                found = conn.one("SELECT value FROM counters WHERE name = 'requests'")
                rows.add_metric([], found[0] if found else 0)
                tuning.add_metric([], conn.one(IN_PROGRESS_SQL)[0])
                for kind, _, _ in KINDS:
                    spent[kind] = conn.all(*spend_sql(self.tz, self.clock(), self.max_keys,
                                                      kind))
        except self.db.Error as e:  # no history yet, or unreachable: no spend to show
            log.debug("spend: %s", e)
        yield rows
        yield tuning
        for kind, spend_family, budget_family in KINDS:
            yield from self._spend(kind, spent.get(kind, []), spend_family, budget_family)
        yield from self._periods()
        lag = GaugeMetricFamily(HISTORY_LAG.name, HISTORY_LAG.documentation)
        lag.add_metric([], round(self.writer.lag(), 3) if self.writer is not None else 0.0)
        yield lag

    def _spend(self, kind: str, spent: list, spend_family, budget_family) -> list:
        """A kind of payer's spend this day and month, and its budgets."""
        spend, budget = (GaugeMetricFamily(f.name, f.documentation, labels=f.labels)
                         for f in (spend_family, budget_family))
        names = []
        for name, month, day in spent:
            # Sums of floats in SQLite: 0.0021238999999999997 is 0.0021239.
            spend.add_metric([name, "day"], round(day or 0.0, 10))
            spend.add_metric([name, "month"], round(month or 0.0, 10))
            names.append(name)
        listed = [n for k, n in self.budgets if k == kind and n != "*"]
        for name in dict.fromkeys(listed + names):
            b = budget_of(self.budgets, (kind, name))
            for period, limit in (("day", b.daily), ("month", b.monthly)) if b else ():
                if limit is not None:
                    budget.add_metric([name, period], limit)
        return [spend, budget]

    def _periods(self):
        start, end = (GaugeMetricFamily(f.name, f.documentation, labels=f.labels)
                      for f in (PERIOD_START, PERIOD_END))
        for period, (first, last) in periods(self.clock(), self.tz).items():
            start.add_metric([period], first)
            end.add_metric([period], last)
        yield start
        yield end
