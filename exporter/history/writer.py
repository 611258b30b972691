"""The history's bounded queue and its single writer thread.

The proxy never waits on disk: handlers put rows on a bounded queue (put_nowait; a full
queue drops the row and counts it); one thread owns the connection and inserts in batches.
A database that cannot be written never stops the proxy: errors are counted, and logged
once per outage rather than once per request.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import sqlite_utils

from ..record import RequestRecord
from ..telemetry.metrics import HistoryMetrics
from .spend import REFRESH_SECONDS, Spend
from .store import COLUMNS, INSERT_SQL, LEDGER_SQL, SPEND_SQL, UTC_ZONE, open_db, row

log = logging.getLogger("llm_usage_exporter")
_STOP = object()


class LedgerEvent(tuple):
    """A change of a ledger, queued with the rows: ("create", job id, key, at) of the jobs
    (gateway/jobs.py), ("uptime", deployment, ...) of the deployments (deployments/)."""
_STARTED, _KEY, _FEE = (COLUMNS.index(c) for c in ("started_at", "api_key", "fee_usd"))


class History:
    """Queue records from the event loop; write them from one thread."""

    def __init__(self, path: str, metrics: HistoryMetrics, *, queue_size: int = 10000,
                 batch_size: int = 500, linger: float = 0.1,
                 retention_days: float | None = 90, tz: ZoneInfo = UTC_ZONE,
                 clock=time.time):
        self.path = path
        self.metrics = metrics
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.batch_size = batch_size
        self.linger = linger
        self.tz = tz
        self.retention_days = retention_days
        self.clock = clock
        self.failing = False
        self.spend = Spend(tz)  # for the budgets the gateway enforces
        self.collector = None  # its scrape-time metrics (app.py), told of budgets on reload
        self.thread = threading.Thread(target=self._run, name="history-writer", daemon=True)

    def start(self) -> None:
        if self.thread.ident is None:  # once: the app's cleanup_ctx and tests may both ask
            self.thread.start()

    def put(self, record: RequestRecord) -> None:
        """Queue one record; never blocks (a full queue drops it, counted)."""
        r = row(record)
        if r[_FEE]:  # counted before the writer can see the row, so it is never settled first
            self.spend.queued(r[_KEY], r[_FEE])
        if not self._enqueue(r) and r[_FEE]:
            self.spend.settle({r[_KEY]: r[_FEE]}, None)  # dropped: it will never be written

    def put_event(self, event: tuple) -> None:
        """Queue a change of a ledger (LedgerEvent); never blocks."""
        self._enqueue(LedgerEvent(event))

    def _enqueue(self, item) -> bool:
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.metrics.dropped.inc()
            return False
        self.metrics.queue_size.inc()
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued, then stop the writer."""
        self.queue.put(_STOP)
        self.thread.join(timeout)

    # --- the writer thread --------------------------------------------------------------
    def _run(self) -> None:
        db = None
        next_prune = next_refresh = 0.0
        stopping = False
        while not stopping:
            try:  # with budgets enforced, woken every second to read others' spend
                item = self.queue.get(timeout=REFRESH_SECONDS if self.spend.active else 60)
            except queue.Empty:
                item = None
            batch = []
            # Linger after the first row so light traffic still commits in batches (a commit
            # per request cost more CPU than proxying it), asleep: waiting in get() would wake
            # this thread, and take the GIL from the proxy, for every row that arrives.
            # Under load the queue holds a batch already: no linger, or it would cap writes
            # at batch_size rows per linger.
            if item is not None and item is not _STOP and self.linger \
                    and self.queue.qsize() < self.batch_size:
                time.sleep(self.linger)
            while item is not None:
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
                if len(batch) >= self.batch_size:
                    break
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    item = None
            if not batch and self.failing and not stopping:
                continue  # retried with the next row, not counted once a second meanwhile
            fees = self._fees(batch)
            try:
                if db is None:
                    db = open_db(self.path, self.tz)
                if batch:
                    self.metrics.queue_size.dec(len(batch))
                    try:
                        self._write(db, batch)
                    except sqlite3.OperationalError:
                        raise  # the database itself: full, read-only, gone
                    except Exception:  # a row it refuses: keep the others of the batch
                        self._write_each(db, batch)
                if self.spend.active and (batch or self.clock() >= next_refresh):
                    spent = self.spend.read(db.conn, self.clock())
                    self.spend.settle(fees, spent)
                    fees, next_refresh = {}, self.clock() + REFRESH_SECONDS
                if self.retention_days and self.clock() >= next_prune:
                    self._prune(db)
                    next_prune = self.clock() + 3600
                if self.failing:
                    log.warning("history: writing to %s again", self.path)
                    self.failing = False
            except Exception as e:  # the writer never dies: a row it cannot write is lost
                self.metrics.write_errors.inc()
                if not self.failing:  # once per outage, not once per request
                    log.error("history: cannot write to %s: %s; requests are still "
                              "proxied, and their rows are lost until it recovers", self.path, e)
                    self.failing = True
                db = None  # reopen next time: the file may come back
            finally:
                if fees:  # lost, or written but not read back: leave the unwritten sums
                    self.spend.settle(fees, None)
        if db is not None:
            db.conn.close()

    def _write(self, db: sqlite_utils.Database, batch: list) -> None:
        rows = [r for r in batch if not isinstance(r, LedgerEvent)]
        with db.conn:  # one transaction per batch: rows and their spend
            db.conn.executemany(INSERT_SQL, rows)
            db.conn.executemany(SPEND_SQL, self._spend(rows))
            for event in batch:
                if isinstance(event, LedgerEvent):
                    db.conn.execute(LEDGER_SQL[event[0]], event[1:])

    def _write_each(self, db: sqlite_utils.Database, batch: list) -> None:
        """Write a batch row by row: only a row the database refuses is lost, counted."""
        for item in batch:
            try:
                self._write(db, [item])
            except sqlite3.OperationalError:
                raise
            except Exception as e:
                self.metrics.write_errors.inc()
                log.error("history: a row cannot be written (%s: %s); it is lost, the "
                          "others are kept", type(e).__name__, e)

    @staticmethod
    def _fees(batch) -> dict[str, float]:
        """Sum a batch's fees by key."""
        fees: dict[str, float] = {}
        for r in batch:
            if not isinstance(r, LedgerEvent) and r[_FEE]:
                fees[r[_KEY]] = fees.get(r[_KEY], 0.0) + r[_FEE]
        return fees

    def _spend(self, batch) -> list[tuple]:
        """Sum a batch's fees by key and local calendar day."""
        totals: dict[tuple[str, str], float] = {}
        for r in batch:
            if r[_FEE]:
                day = datetime.fromtimestamp(r[_STARTED], self.tz).date().isoformat()
                totals[r[_KEY], day] = totals.get((r[_KEY], day), 0.0) + r[_FEE]
        return [(k, d, usd) for (k, d), usd in totals.items()]

    def _prune(self, db: sqlite_utils.Database) -> None:
        cutoff = self.clock() - self.retention_days * 86400
        # The spend of the whole current month is kept, whatever the retention: the month's
        # spend and its budgets read it.
        month = datetime.fromtimestamp(self.clock(), self.tz).date().replace(day=1)
        oldest_day = min(datetime.fromtimestamp(cutoff, self.tz).date(), month).isoformat()
        with db.conn:
            db.conn.execute("DELETE FROM requests WHERE started_at < ?", [cutoff])
            db.conn.execute("DELETE FROM spend_daily WHERE day < ?", [oldest_day])
            db.conn.execute("DELETE FROM jobs WHERE coalesce(metered_at, created_at, 0) < ?",
                            [cutoff])
            db.conn.execute("DELETE FROM deployment_uptime WHERE ended_at < ?", [cutoff])
