"""Scheduled reports: each made once per period, at its time in its zone, and delivered.

On each tick, a report whose latest run time has passed and whose period the history does
not record as delivered is made and sent to every destination; a destination that fails is
tried again after a backoff (1, 5, 15, then every 60 minutes), the others are not sent it
twice. The history's `reports_sent` table remembers each delivered period, so a restart
does not send it again; in a fleet, one process at a time runs the schedule (its lease,
store/singleton.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from ..config.reports import WEEKDAYS, ScheduledReport
from ..store.database import Database
from ..store.ledger import delivered, record_delivery
from ..store.query import Filters

log = logging.getLogger(__name__)
BACKOFF = (60, 300, 900, 3600)  # seconds before each further attempt; then every hour


@dataclass(frozen=True)
class Period:
    start: float  # Unix times: the period covered, [start, end)
    end: float
    due: float  # when the report of it is made


def latest(r: ScheduledReport, now: float, tz: ZoneInfo) -> Period:
    """The period of the report's latest run at or before `now`."""
    hour, minute = (int(x) for x in r.at.split(":"))
    local = datetime.fromtimestamp(now, tz).replace(tzinfo=None)
    run = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if r.schedule == "daily":
        run -= timedelta(days=run > local)
        start, end = run.date() - timedelta(days=1), run.date()
    elif r.schedule == "weekly":
        run -= timedelta(days=(run.weekday() - WEEKDAYS.index(r.weekday)) % 7)
        run -= timedelta(days=7 * (run > local))
        monday = run.date() - timedelta(days=run.weekday())
        start, end = monday - timedelta(days=7), monday
    else:
        run = run.replace(day=r.day)
        if run > local:  # this month's run is still to come: last month's
            run = (run.replace(day=1) - timedelta(days=1)).replace(day=r.day)
        end = run.date().replace(day=1)
        start = (end - timedelta(days=1)).replace(day=1)

    def at(day) -> float:  # local midnight, with the offset in force that day
        return datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
    return Period(at(start), at(end), run.replace(tzinfo=tz).timestamp())


@dataclass
class _Attempts:
    period: Period
    sent: set = field(default_factory=set)  # destinations delivered to
    failures: int = 0
    next_try: float = 0.0


class Scheduler:
    """Make and deliver each scheduled report of the config, once per period."""

    def __init__(self, reports, db: Database, render, deliver, counter, zone: str,
                 clock=time.time):
        """`await render(db, type, format, filters)` makes a report's file (make.py's
        render_apart: in a process of its own); `deliver` sends it (deliver.py)."""
        self.reports = reports
        self.db, self.render, self.deliver = db, render, deliver
        self.counter, self.clock = counter, clock
        self.zones = {r.name: ZoneInfo(r.timezone or zone) for r in reports}
        self.pending: dict[str, _Attempts] = {}
        for r in reports:  # at 0, so increase() sees the first failure
            for outcome in ("delivered", "failed"):
                counter.labels(r.name, outcome)

    async def run(self) -> None:
        """Tick every minute, until cancelled."""
        while True:
            try:
                await self.tick()
            except self.db.Error as e:  # the history not readable: next minute
                log.warning("reports: the history cannot be read (%s); trying again in a "
                            "minute", e)
            except Exception:  # a bug must not end the schedule
                log.exception("reports: the schedule failed; trying again in a minute")
            await asyncio.sleep(60)

    async def tick(self) -> None:
        """Make and deliver every report that is due and not yet delivered."""
        now = self.clock()
        for r in self.reports:
            period = latest(r, now, self.zones[r.name])
            attempts = self.pending.get(r.name)
            if attempts is None or attempts.period != period:
                if await asyncio.to_thread(delivered, self.db, r.name, period.start):
                    continue
                attempts = self.pending[r.name] = _Attempts(period)
            if now >= attempts.next_try:
                await self._attempt(r, attempts, now)

    async def _attempt(self, r: ScheduledReport, attempts: _Attempts, now: float) -> None:
        period = attempts.period
        filters = Filters(period.start, period.end, self.zones[r.name], tuple(
            (column, tuple(v for v in value.split(",") if v)) for column, value in (
                ("service", r.service), ("provider", r.provider), ("model", r.model),
                ("api_key", r.api_key)) if value))
        try:
            body = await self.render(self.db, r.type, r.format, filters)
            failed = await asyncio.to_thread(self.deliver, r, body, filters, attempts.sent)
        except Exception as e:  # the history unreadable, say: tried again like a delivery
            failed = [f"the report could not be made: {e}"]
        if not failed:
            await asyncio.to_thread(record_delivery, self.db, r.name, period.start, now)
            self.pending.pop(r.name, None)
            self.counter.labels(r.name, "delivered").inc()
            log.info("report %s of %s delivered", r.name,
                     datetime.fromtimestamp(period.start, self.zones[r.name]).date())
            return
        self.counter.labels(r.name, "failed").inc()
        wait = BACKOFF[min(attempts.failures, len(BACKOFF) - 1)]
        attempts.failures += 1
        attempts.next_try = now + wait
        for problem in failed:
            log.error("report %s: %s; trying again in %d min", r.name, problem, wait // 60)
