"""The history's bounded queue and its single writer thread.

The proxy never waits on the database: handlers put records on a bounded queue
(put_nowait; a full queue drops the record and counts it); one thread owns a connection and
writes in batches, each in one transaction with its rollup, its spend and the ledgers'
events. A database that cannot be written (unreachable, locked, full) never stops the
proxy: the batch in hand is kept and tried again, with a backoff, while the queue takes the
rows that follow; the outage is logged once and counted. A batch's id is written with it,
so a batch whose commit went unanswered is not written twice when it is tried again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from zoneinfo import ZoneInfo

from ..record import RequestRecord
from ..telemetry.background import HistoryMetrics
from .batches import write_batch
from .database import Database, reason
from .rows import Event, row
from .spend import REFRESH_SECONDS, Payer, Spend, payers

log = logging.getLogger(__name__)
UTC_ZONE = ZoneInfo("UTC")
_STOP = object()
BACKOFF = (0.5, 1, 2, 5)  # seconds before each further attempt, then every 5 s
STOP_GRACE = 20.0  # at shutdown, how long rows wait for a database that is down


class History:
    """Queue records from the event loop; write them from one thread."""

    def __init__(self, db: Database, metrics: HistoryMetrics, *, queue_size: int = 10000,
                 batch_size: int = 500, linger: float = 0.1, tz: ZoneInfo = UTC_ZONE,
                 clock=time.time, stop_grace: float = STOP_GRACE):
        self.db = db
        self.stop_grace = stop_grace
        self.metrics = metrics
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.batch_size = batch_size
        self.linger = linger
        self.tz = tz
        self.clock = clock
        self.spend = Spend(tz)  # for the budgets the gateway enforces
        self.held_since: float | None = None  # when the batch in hand was queued
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="history-writer", daemon=True)

    def start(self) -> None:
        """Make the tables ready (the ledgers read them from the first request on) and
        start the writer; a database that cannot be reached now is the writer's to retry."""
        if self.thread.ident is not None:  # once: the app and tests may both ask
            return
        try:
            self.db.migrate(self.tz)
        except Exception as e:  # the writer says so, once, when it tries
            log.debug("history: cannot prepare %s: %s", self.db, reason(e))
        self.thread.start()

    def put(self, record: RequestRecord) -> None:
        """Queue one record; never blocks (a full queue drops it, counted)."""
        fee = float(record.fee)
        if fee:  # counted before the writer can see the row, so it is never settled first
            charged = payers(record.api_key, record.project, record.end_user)
            self.spend.queued(charged, fee)
        if not self._enqueue(record) and fee:
            self.spend.settle(dict.fromkeys(charged, fee), None)  # dropped: never written

    def put_event(self, event: Event) -> None:
        """Queue a change of a ledger; never blocks."""
        self._enqueue(event)

    def _enqueue(self, item) -> bool:
        try:
            if self.stopping.is_set() and not self.thread.is_alive():
                raise queue.Full  # the writer has stopped: nobody would write it
            self.queue.put_nowait((time.monotonic(), item))
        except queue.Full:
            self.metrics.dropped.inc()
            return False
        self.metrics.queue_size.inc()
        return True

    def lag(self) -> float:
        """Seconds the oldest row not yet written has waited (0 when none waits)."""
        oldest = self.held_since
        if oldest is None:
            with self.queue.mutex:
                head = self.queue.queue[0] if self.queue.queue else None
            oldest = head[0] if isinstance(head, tuple) else None
        return max(time.monotonic() - oldest, 0.0) if oldest is not None else 0.0

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued, then stop the writer."""
        self.stopping.set()
        try:
            self.queue.put_nowait(_STOP)  # wakes it; a full queue keeps it awake anyway
        except queue.Full:
            pass
        if self.thread.ident is not None:
            self.thread.join(timeout)

    # --- the writer thread --------------------------------------------------------------
    def _run(self) -> None:
        conn = None
        held: list = []  # the batch taken from the queue and not yet written
        batch_id, fees, refused = "", {}, None  # refused: a row's, so the rest go one by one
        failures, next_refresh = 0, 0.0
        give_up = None  # at shutdown, when rows stop waiting for the database
        while not (held == [] and self.stopping.is_set() and self.queue.empty()):
            if not held:
                # With budgets enforced, woken often to read the others' spend.
                held = self._take(REFRESH_SECONDS if self.spend.active else 60)
                batch_id, fees, refused = uuid.uuid4().hex, self._fees(held), None
                self.held_since = held[0][0] if held else None
            if held and failures:
                if self.stopping.is_set():
                    give_up = give_up or time.monotonic() + self.stop_grace
                    if time.monotonic() >= give_up:
                        self._lose(held, fees)
                        held, fees = [], {}
                        continue
                self._pause(BACKOFF[min(failures - 1, len(BACKOFF) - 1)])
            try:
                if conn is None:
                    if failures:  # the database may be new, or the file may have gone
                        self.db.migrate(self.tz)
                    conn = self.db.dedicated()
                if held:
                    refused = self._write(conn, held, batch_id, refused)
                    self._written(held)
                    held = []
                    if failures:
                        log.warning("history: writing to %s again", self.db)
                    failures = 0
            except Exception as e:  # the writer never dies: the batch waits for a retry
                self.metrics.write_errors.inc()
                if not failures:  # once per outage, not once per attempt
                    log.error("history: cannot write to %s: %s; requests are still proxied, "
                              "and their rows wait in memory (up to history.queue_size)",
                              self.db, reason(e))
                failures += 1
                if conn is not None:
                    _close(conn)
                    conn = None  # connected again next time: the server may come back
            if conn is not None and self.spend.active and (
                    fees and not held or self.clock() >= next_refresh):
                fees = self._read_spend(conn, fees if not held else {})
                next_refresh = self.clock() + REFRESH_SECONDS
            if fees and not held:  # written, not read back: leave the unwritten sums
                self.spend.settle(fees, None)
                fees = {}
        self.held_since = None
        if conn is not None:
            _close(conn)

    def _read_spend(self, conn, written: dict[Payer, float]) -> dict[Payer, float]:
        """Read the fleet's spend back (and the end users' of the rows just written), taking
        out of the unwritten sums the fees just written; return those fees if it could not
        (a failing read costs no write)."""
        users = [name for kind, name in written if kind == "user"] \
            if self.spend.users_active else ()
        try:
            self.spend.settle(written, self.spend.read(conn, self.clock(), users))
            return {}
        except Exception as e:
            log.debug("history: the spend cannot be read back: %s", reason(e))
            return written

    def _pause(self, seconds: float) -> None:
        """Wait before trying again; at shutdown, a second at most between tries."""
        if self.stopping.is_set():
            time.sleep(min(seconds, 1.0))
        else:
            self.stopping.wait(seconds)

    def _written(self, batch: list) -> None:
        self.metrics.queue_size.dec(len(batch))
        self.held_since = None

    def _take(self, wait: float) -> list:
        """The next batch of (queued at, item); none within `wait` (at shutdown, at once)."""
        try:
            first = self.queue.get(timeout=0.1 if self.stopping.is_set() else wait)
        except queue.Empty:
            return []
        if first is _STOP:
            return []
        # Linger after the first row so light traffic still commits in batches (a commit
        # per request cost more CPU than proxying it), asleep: waiting in get() would wake
        # this thread, and take the GIL from the proxy, for every row that arrives. Under
        # load the queue holds a batch already: no linger, or it would cap writes at
        # batch_size rows per linger.
        if self.linger and self.queue.qsize() < self.batch_size:
            self.stopping.wait(self.linger)
        batch = [first]
        while len(batch) < self.batch_size:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                batch.append(item)
        return batch

    def _unavailable(self, error: Exception) -> bool:
        return self.db.dialect.unavailable(error)

    def _write(self, conn, batch: list, batch_id: str, refused: set | None) -> set | None:
        """Write a batch in one transaction; if the database refuses a row of it, the
        others one by one (`refused`, the rows refused so far: None until then), each under
        an id of its own, so a retry after an outage writes none of them twice. Return the
        rows refused, or None."""
        if refused is None:
            try:
                write_batch(conn, batch_id, *self._split(batch), self.tz, self.clock())
                return None
            except Exception as e:
                if self._unavailable(e):
                    raise
                refused = set()
        for i, item in enumerate(batch):
            if i in refused:
                continue
            try:
                write_batch(conn, f"{batch_id}-{i}", *self._split([item]), self.tz,
                            self.clock())
            except Exception as e:
                if self._unavailable(e):
                    raise
                refused.add(i)
                self.metrics.write_errors.inc()
                if len(refused) == 1:  # one line per batch, not one per row
                    log.error("history: a row cannot be written (%s: %s); it is lost, the "
                              "others of its batch are kept", type(e).__name__, reason(e))
        return refused

    @staticmethod
    def _split(batch: list) -> tuple[list, list]:
        """A batch's rows and its ledgers' events."""
        return ([row(item) for _, item in batch if isinstance(item, RequestRecord)],
                [item for _, item in batch if isinstance(item, Event)])

    def _lose(self, batch: list, fees: dict[Payer, float]) -> None:
        """Give up on rows the database never took back (at shutdown): counted as dropped."""
        self.metrics.dropped.inc(len(batch))
        self.metrics.queue_size.dec(len(batch))
        self.spend.settle(fees, None)
        log.error("history: %d rows could not be written to %s before the gateway stopped; "
                  "they are lost", len(batch), self.db)

    @staticmethod
    def _fees(batch) -> dict[Payer, float]:
        """Sum a batch's fees by key, project and end user."""
        fees: dict[Payer, float] = {}
        for _, r in batch:
            if isinstance(r, RequestRecord) and r.fee:
                for payer in payers(r.api_key, r.project, r.end_user):
                    fees[payer] = fees.get(payer, 0.0) + float(r.fee)
        return fees


def _close(conn) -> None:
    try:
        conn.close()
    except Exception:
        pass
