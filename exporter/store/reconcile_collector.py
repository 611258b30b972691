"""The reconciliation's metrics, read from the history at scrape time: each account's fee
drift and the provider's cost per model (the last UTC day fetched from the provider, and
its month), when its figures were last fetched, and how many days failed.

A month of our side is read from the usage rollup, so the figures are kept for a few
minutes between scrapes: they change once a day, when the job fetches.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from ..telemetry.background import (
    RECONCILE_ALERT_SHARE,
    RECONCILE_DRIFT,
    RECONCILE_FAILED_DAYS,
    RECONCILE_LAST_SUCCESS,
    RECONCILE_PROVIDER_FEE,
)
from .database import Database
from .reconcile import fetch_summary, fetched_days, ours, theirs

log = logging.getLogger(__name__)
KEEP = 300.0  # seconds the figures are kept between scrapes
SCRAPE_WAIT = 1.0  # as the spend's: a database that is down costs a scrape a second
MAX_MODELS = 50  # per account: past them, by the provider's cost, `other`


def periods(now: float) -> dict[str, tuple[str, str]]:
    """The last whole UTC day, and its month up to it: (first day, last day)."""
    last = dt.datetime.fromtimestamp(now, dt.UTC).date() - dt.timedelta(days=1)
    return {"day": (last.isoformat(), last.isoformat()),
            "month": (last.replace(day=1).isoformat(), last.isoformat())}


class ReconcileCollector:
    """llm_reconcile_* gauges of every configured account."""

    def __init__(self, registry: CollectorRegistry, db: Database, accounts, clock=time.time):
        self.db, self.accounts, self.clock = db, accounts, clock
        self.kept: tuple[float, list] | None = None
        registry.register(self)

    def collect(self):
        now = self.clock()
        if self.kept is None or now - self.kept[0] >= KEEP:
            try:
                self.kept = (now, self.read(now))
            except self.db.Error as e:  # no history yet, or unreachable: the last figures
                log.debug("reconcile: %s", e)  # stay, and are read again in KEEP seconds
                self.kept = (now, self.kept[1] if self.kept else self.empty())
        yield from self.kept[1] if self.kept else self.empty()

    def empty(self) -> list:
        share = GaugeMetricFamily(RECONCILE_ALERT_SHARE.name,
                                  RECONCILE_ALERT_SHARE.documentation,
                                  labels=RECONCILE_ALERT_SHARE.labels)
        for a in self.accounts:
            share.add_metric([a.name], a.drift_alert_share)
        return [*(GaugeMetricFamily(f.name, f.documentation, labels=f.labels) for f in (
            RECONCILE_DRIFT, RECONCILE_PROVIDER_FEE, RECONCILE_LAST_SUCCESS,
            RECONCILE_FAILED_DAYS)), share]

    def read(self, now: float) -> list:
        drift, fee, last, failed, share = self.empty()
        spans = periods(now)
        month_first, yesterday = spans["month"]
        summary = fetch_summary(self.db, {a.name: a.backfill_days for a in self.accounts},
                                dt.date.fromisoformat(yesterday) + dt.timedelta(days=1),
                                SCRAPE_WAIT)
        for a in self.accounts:
            good, failing = summary.get(a.name, (None, 0))
            if good is not None:
                last.add_metric([a.name], good)
            failed.add_metric([a.name], failing)
            # Only days fetched from the provider compare: the day is the last of them,
            # the month its days up to yesterday (yesterday itself not before the job
            # fetched it, after midnight UTC).
            fetched = fetched_days(self.db, a.name, month_first, yesterday, SCRAPE_WAIT)
            if not fetched:
                continue
            our_rows = [f for f in ours(self.db, a.services, month_first, yesterday, SCRAPE_WAIT)
                        if f.day in fetched]
            _, their_fees = theirs(self.db, a.name, month_first, yesterday, SCRAPE_WAIT)
            for period, (first_day, last_day) in (("day", (max(fetched), max(fetched))),
                                                   ("month", (month_first, yesterday))):
                mine: dict[str, float] = {}
                billed: dict[str, float] = {}
                for f in our_rows:
                    if first_day <= f.day <= last_day:
                        mine[f.model] = mine.get(f.model, 0.0) + (f.fee_usd or 0.0)
                for (day, model), usd in their_fees.items():
                    if first_day <= day <= last_day:
                        billed[model] = billed.get(model, 0.0) + usd
                kept = sorted(set(mine) | set(billed),
                              key=lambda m: -billed.get(m, mine.get(m, 0.0)))
                top = set(kept[:MAX_MODELS])
                grouped: dict[str, list[float]] = {}
                for model in kept:
                    label = model if model in top else "other"
                    sums = grouped.setdefault(label, [0.0, 0.0])
                    sums[0] += mine.get(model, 0.0)
                    sums[1] += billed.get(model, 0.0)
                for label, (ours_usd, theirs_usd) in grouped.items():
                    labels = [a.name, a.provider, label, period]
                    # Sums of floats: 0.0021238999999999997 is 0.0021239.
                    drift.add_metric(labels, round(ours_usd - theirs_usd, 10))
                    fee.add_metric(labels, round(theirs_usd, 10))
        return [drift, fee, last, failed, share]
