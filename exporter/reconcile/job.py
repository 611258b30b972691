"""Fetch each account's reports every day and keep them beside ours in the history.

Providers publish a day's figures late and amend them: each fetch reads every day of the
last `refetch_days`, every day never fetched or whose last fetch failed, and every older
day whose last two fetches did not agree, back to `backfill_days`; only whole UTC days
(the provider's), never today. In a fleet one process runs it (its lease,
store/singleton.py); when it last fetched is read from the history, so a restart or a
lease that moves does not fetch again before its time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import threading
import time

from ..config.reconcile import DEFAULT_BASE_URLS, ReconcileAccount
from ..store.database import Database
from ..store.reconcile import (
    fetch_states,
    fetch_summary,
    mark_failed,
    save_account,
    save_day,
)
from .client import BACKOFF, AdminClient
from .providers import FETCHERS, Fetched

log = logging.getLogger(__name__)
TICK = 60.0  # seconds between looks at what is due
RETRY = (300.0, 900.0, 3600.0)  # seconds before fetching again after a failed fetch


def due_days(states: dict, today: dt.date, account: ReconcileAccount) -> list[str]:
    """The whole days to fetch now, oldest first."""
    out = []
    for back in range(account.backfill_days, 0, -1):
        day = (today - dt.timedelta(days=back)).isoformat()
        state = states.get(day)
        if state is None or state.status != "ok" or back <= account.refetch_days \
                or not state.stable:
            out.append(day)
    return out


def digest(got: Fetched, day: str) -> str:
    """The same for the same figures: a day is settled when two fetches hours apart agree."""
    usage = sorted((k, [f.requests, f.input_uncached, f.cache_read, f.cache_write, f.output])
                   for k, f in got.usage.get(day, {}).items())
    costs = sorted((m, str(v)) for m, v in got.costs.get(day, {}).items())
    return hashlib.sha256(json.dumps([usage, costs]).encode()).hexdigest()


def fetch_account(db: Database, account: ReconcileAccount, env, *, now: float,
                  backoff=BACKOFF, sleep=time.sleep, days: list[str] | None = None,
                  tails: dict[str, str] | None = None,
                  stop: threading.Event | None = None) -> Fetched | None:
    """Fetch the days due (or `days`) and store each whole, or mark it failed; None if
    none is due."""
    if days is None:
        today = dt.datetime.fromtimestamp(now, dt.UTC).date()
        days = due_days(fetch_states(db, account.name), today, account)
    if not days:
        return None
    save_account(db, account.name, account.provider, account.services)
    fetcher_class = FETCHERS[account.provider]
    key = env.get(account.admin_key_env)
    got = Fetched(days)
    if not key:
        got.fail(None, "auth")
        got.problem = f"environment variable {account.admin_key_env} is not set"
    else:
        client = AdminClient(account.base_url or DEFAULT_BASE_URLS[account.provider],
                             fetcher_class.headers(key), backoff=backoff, sleep=sleep)
        got = fetcher_class(account, client, tails).fetch(days[0], days[-1])
    if stop is not None and stop.is_set():
        return None  # the lease was lost meanwhile: its new holder fetches, this writes not
    for day in got.days:
        if day in got.failed:
            mark_failed(db, account.name, day, now, got.failed[day])
        else:
            save_day(db, account.name, day, list(got.usage.get(day, {}).values()),
                     {m: float(v) for m, v in got.costs.get(day, {}).items()}, now,
                     digest(got, day))
    return got


def _when(t: float | None) -> str:
    return "never" if t is None else dt.datetime.fromtimestamp(t, dt.UTC).strftime(
        "%Y-%m-%d %H:%M UTC")


def logged(account: ReconcileAccount, got: Fetched | None) -> None:
    """One line per fetch: what was stored, or what failed (never the key)."""
    if got is None:
        return
    if got.failed:
        causes = ", ".join(sorted(set(got.failed.values())))
        log.error("reconcile: account %s (%s): %d of %d days not fetched (%s): %s",
                  account.name, account.provider, len(got.failed), len(got.days), causes,
                  got.problem)
    else:
        log.info("reconcile: account %s (%s): %d days fetched, %s to %s", account.name,
                 account.provider, len(got.days), got.days[0], got.days[-1])


class Reconciler:
    """The job: every account fetched every `every_hours`, a failed fetch sooner."""

    def __init__(self, accounts: tuple[ReconcileAccount, ...], db: Database, failures, env,
                 *, tails: dict[str, str] | None = None, clock=time.time, backoff=BACKOFF,
                 retry=RETRY, tick: float = TICK):
        """`tails`: our keys' last characters (keys.tails), to map their key ids."""
        self.accounts, self.db, self.failures, self.env = accounts, db, failures, env
        self.tails = tails
        self.clock, self.backoff, self.retry, self.tick_seconds = clock, backoff, retry, tick
        self.next_try: dict[str, float] = {}
        self.failed_in_a_row: dict[str, int] = {}
        for a in accounts:  # at 0, so increase() sees the first failure
            for cause in ("auth", "rate_limited", "server_error", "unreachable", "rejected",
                          "malformed"):
                failures.labels(a.name, cause)

    async def run(self) -> None:
        # Set when this run is cancelled (the fleet's lease lost): a fetch already in its
        # thread then stores nothing, where another replica may be fetching the same days.
        stop = threading.Event()
        try:
            await self._run(stop)
        finally:
            stop.set()

    async def _run(self, stop: threading.Event) -> None:
        while True:
            try:
                await self.tick(stop)
            except self.db.Error as e:
                log.warning("reconcile: the history cannot be used (%s); trying again", e)
            except Exception:  # a bug must not end the job
                log.exception("reconcile: the job failed; trying again in a minute")
            await asyncio.sleep(self.tick_seconds)

    async def tick(self, stop: threading.Event | None = None) -> None:
        now = self.clock()
        if not self.next_try:  # this process's first look: when did the fleet last fetch?
            last = await asyncio.to_thread(
                fetch_summary, self.db, {a.name: a.backfill_days for a in self.accounts},
                dt.datetime.fromtimestamp(now, dt.UTC).date())
            for a in self.accounts:
                good, failed = last.get(a.name, (None, 0))
                self.next_try[a.name] = good + a.every_hours * 3600 \
                    if good is not None and not failed else 0.0
                # Said once per process that runs the job (the fleet's lease holder): when
                # the fleet last fetched, and so when this process will.
                log.info("reconcile: account %s: last fetched %s, next fetch %s", a.name,
                         _when(good), "now" if self.next_try[a.name] <= now
                         else _when(self.next_try[a.name]))
        for a in self.accounts:
            if now < self.next_try[a.name]:
                continue
            got = await asyncio.to_thread(fetch_account, self.db, a, self.env, now=now,
                                          backoff=self.backoff, tails=self.tails, stop=stop)
            logged(a, got)
            if got is not None and got.failed:
                for cause in set(got.failed.values()):
                    self.failures.labels(a.name, cause).inc()
                n = self.failed_in_a_row.get(a.name, 0)
                self.failed_in_a_row[a.name] = n + 1
                self.next_try[a.name] = now + self.retry[min(n, len(self.retry) - 1)]
            else:
                self.failed_in_a_row[a.name] = 0
                self.next_try[a.name] = now + a.every_hours * 3600
