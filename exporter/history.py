"""SQLite request history: migrations, a bounded queue and its single writer thread.

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
from sqlite_utils import Migrations

from .metrics import HistoryMetrics, RequestRecord

log = logging.getLogger("llm_usage_exporter")
migrations = Migrations("llm_usage_exporter")
TOKEN_COLUMNS = ("input_text", "input_cache_read", "input_cache_write_5m",
                 "input_cache_write_1h", "input_audio", "input_image", "output_text",
                 "output_reasoning", "output_audio", "output_image")
MAX_ERROR_CHARS = 500
UTC_ZONE = ZoneInfo("UTC")
_STOP = object()


@migrations()
def m001_requests(db: sqlite_utils.Database) -> None:
    columns = {"request_id": str, "started_at": float, "service": str, "provider": str,
               "model": str, "api_key": str, "operation": str, "stream": int, "status": int,
               "error_type": str, "error_message": str,
               **{c: int for c in TOKEN_COLUMNS},
               "estimated_input": int, "estimated_output": int, "fee_usd": float,
               "unpriced": int, "service_tier": str, "ttft_ms": float, "duration_ms": float,
               "overhead_ms": float, "upstream_request_id": str}
    db["requests"].create(columns)
    # Every query filters on a time range, most also on a key or a model.
    db["requests"].create_index(["started_at"])
    db["requests"].create_index(["api_key", "started_at"])
    db["requests"].create_index(["model", "started_at"])


@migrations()
def m002_spend_daily(db: sqlite_utils.Database) -> None:
    # llm_spend_usd is read at every scrape: summing a month of requests took 0.6 s at a
    # million rows, so the writer keeps fees per key and local calendar day instead.
    db["spend_daily"].create({"api_key": str, "day": str, "fee_usd": float},
                             pk=("api_key", "day"))
    db["meta"].create({"key": str, "value": str}, pk="key")


def row(r: RequestRecord) -> tuple:
    """Flatten a record into the column order of INSERT_SQL; no prompt or completion text."""
    u = r.usage
    return (r.request_id, r.started, r.service, r.provider, r.model, r.api_key, r.operation,
            int(r.stream), r.code, r.error_type, r.error_message[:MAX_ERROR_CHARS] or None,
            *(getattr(u, c) for c in TOKEN_COLUMNS), u.estimated_input, u.estimated_output,
            float(r.fee), int(r.unpriced), r.service_tier,
            None if r.ttft is None else r.ttft * 1000, r.duration * 1000, r.overhead * 1000,
            r.upstream_request_id or None)


COLUMNS = ("request_id", "started_at", "service", "provider", "model", "api_key", "operation",
           "stream", "status", "error_type", "error_message", *TOKEN_COLUMNS,
           "estimated_input", "estimated_output", "fee_usd", "unpriced", "service_tier",
           "ttft_ms", "duration_ms", "overhead_ms", "upstream_request_id")
_STARTED, _KEY, _FEE = (COLUMNS.index(c) for c in ("started_at", "api_key", "fee_usd"))
INSERT_SQL = (f"INSERT INTO requests ({', '.join(COLUMNS)}) "
              f"VALUES ({', '.join('?' * len(COLUMNS))})")


SPEND_SQL = ("INSERT INTO spend_daily (api_key, day, fee_usd) VALUES (?, ?, ?) "
             "ON CONFLICT (api_key, day) DO UPDATE SET fee_usd = fee_usd + excluded.fee_usd")


def open_db(path: str, tz: ZoneInfo = UTC_ZONE) -> sqlite_utils.Database:
    """Open the history database, in WAL mode, migrated, its spend rollup in zone `tz`."""
    db = sqlite_utils.Database(path)
    db.enable_wal()
    # WAL with synchronous=NORMAL survives a crash of the process; only a power loss can
    # lose the last commits. FULL fsyncs every commit, which doubled the gateway's CPU.
    db.execute("PRAGMA synchronous=NORMAL")
    migrations.apply(db)
    stored = db.execute("SELECT value FROM meta WHERE key = 'timezone'").fetchone()
    if stored is None or stored[0] != tz.key:
        rebuild_spend(db, tz)
    return db


def rebuild_spend(db: sqlite_utils.Database, tz: ZoneInfo) -> None:
    """Recompute the spend rollup in zone `tz` from every stored request."""
    from .query import local_time_sql, offset_segments  # query imports this module
    low, high = db.execute("SELECT min(started_at), max(started_at) FROM requests").fetchone()
    with db.conn:
        db.execute("DELETE FROM spend_daily")
        if low is not None:
            local, args = local_time_sql(offset_segments(tz, low, high + 1))
            db.execute(f"INSERT INTO spend_daily (api_key, day, fee_usd) SELECT api_key, "
                       f"date({local}, 'unixepoch'), sum(fee_usd) FROM requests "
                       f"GROUP BY 1, 2", args)
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('timezone', ?)",
                   [tz.key])


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
        self.thread = threading.Thread(target=self._run, name="history-writer", daemon=True)

    def start(self) -> None:
        if self.thread.ident is None:  # once: the app's cleanup_ctx and tests may both ask
            self.thread.start()

    def put(self, record: RequestRecord) -> None:
        """Queue one record; never blocks (a full queue drops it, counted)."""
        try:
            self.queue.put_nowait(row(record))
        except queue.Full:
            self.metrics.dropped.inc()
        else:
            self.metrics.queue_size.inc()

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued, then stop the writer."""
        self.queue.put(_STOP)
        self.thread.join(timeout)

    # --- the writer thread --------------------------------------------------------------
    def _run(self) -> None:
        db = None
        next_prune = 0.0
        stopping = False
        while not stopping:
            try:
                item = self.queue.get(timeout=60)
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
            try:
                if db is None:
                    db = open_db(self.path, self.tz)
                if batch:
                    self.metrics.queue_size.dec(len(batch))
                    with db.conn:  # one transaction per batch: rows and their spend
                        db.conn.executemany(INSERT_SQL, batch)
                        db.conn.executemany(SPEND_SQL, self._spend(batch))
                if self.retention_days and self.clock() >= next_prune:
                    self._prune(db)
                    next_prune = self.clock() + 3600
                if self.failing:
                    log.warning("history: writing to %s again", self.path)
                    self.failing = False
            except (sqlite3.Error, OSError) as e:
                self.metrics.write_errors.inc()
                if not self.failing:  # once per outage, not once per request
                    log.error("history: cannot write to %s: %s; requests are still "
                              "proxied, and their rows are lost until it recovers", self.path, e)
                    self.failing = True
                db = None  # reopen next time: the file may come back
        if db is not None:
            db.conn.close()

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
        oldest_day = datetime.fromtimestamp(cutoff, self.tz).date().isoformat()
        with db.conn:
            db.conn.execute("DELETE FROM requests WHERE started_at < ?", [cutoff])
            db.conn.execute("DELETE FROM spend_daily WHERE day < ?", [oldest_day])
