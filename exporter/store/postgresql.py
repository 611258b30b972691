"""PostgreSQL: one history for a fleet of gateways, through psycopg 3.

Readers (the usage API, scrapes, ledger claims, leases) borrow connections from a small
pool; the writer thread keeps one of its own. The requests table is partitioned by UTC
day (partitions.py), so retention drops whole days instead of deleting rows (which would
leave the table bloated until a vacuum), and a query of a range reads only its days.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

from . import partitions
from .rows import COLUMNS
from .schema import migrate_postgresql

MIGRATION_LOCK = 0x6C6C6D01  # pg_advisory_lock's key: one replica migrates at a time
CONNECT_TIMEOUT = 5  # seconds: an unreachable server is named at start, not waited on
# Connections lent at once: six, of which four at most to the usage API's readers (an
# export holds one for as long as it takes), so that a batch's claim, a lease's renewal
# and a scrape always find one.
POOL_SIZE, API_READERS = 6, 4
POOL_WAIT = 10.0  # a reader waits this long for a connection, then the API answers 503
DAY = partitions.DAY
COPY_SQL = f"COPY requests ({', '.join(COLUMNS)}) FROM STDIN"


@functools.lru_cache(maxsize=1024)
def _placeholders(text: str) -> str:
    """`?` placeholders as psycopg's `%s` (and a literal % doubled)."""
    return text.replace("%", "%%").replace("?", "%s")


def parts(url: str) -> tuple[str, str]:
    """The host and port of a URL, as a message names them (libpq's defaults if absent)."""
    split = urlsplit(url)
    try:
        port = split.port or 5432
    except ValueError:
        port = 5432
    return split.hostname or "localhost", str(port)


def safe_url(url: str) -> str:
    """The URL without a password or parameters: what logs and messages may show."""
    split = urlsplit(url)
    user = f"{split.username}@" if split.username else ""
    host, port = parts(url)
    return f"{split.scheme}://{user}{host}:{port}{split.path}"


class Pool:
    """At most `size` connections in use at once (`readers` of them for the usage API),
    kept open between uses and checked with a round trip before each. psycopg_pool's waits out its
    whole timeout while the server is down (and logs each attempt to reconnect): here a
    reader learns at once, with libpq's reason, so the usage API answers 503 at once and a
    scrape is not held up."""

    def __init__(self, connect, size: int, readers: int, wait: float):
        self.connect, self.size, self.wait = connect, size, wait
        self.slots = threading.BoundedSemaphore(size)
        self.reader_slots = threading.BoundedSemaphore(readers)
        self.idle: list = []
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def connection(self, wait: float | None = None, reader: bool = False) -> Iterator:
        """A connection, waited for up to `wait` seconds; `reader`: for the usage API."""
        import psycopg
        wait = self.wait if wait is None else wait
        with contextlib.ExitStack() as held:
            for slots, busy in ((self.reader_slots, "other readers") if reader else (None, ""),
                                (self.slots, f"all {self.size} connections")):
                if slots is None:
                    continue
                if not slots.acquire(timeout=wait):
                    raise psycopg.OperationalError(f"the history is busy ({busy}); try again")
                held.callback(slots.release)
            conn = self._take()
            try:
                yield conn
            except BaseException:
                conn.close()  # in an unknown state: not given to the next reader
                raise
            if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.close()
            else:
                with self.lock:
                    self.idle.append(conn)

    def _take(self):
        while True:
            with self.lock:
                conn = self.idle.pop() if self.idle else None
            if conn is None:
                return self.connect()
            try:
                conn.execute("SELECT 1")  # the server may have restarted since
                return conn
            except Exception:
                conn.close()

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()


class PostgreSQL:
    """The PostgreSQL engine: its connections, transactions, partitions and spelling of SQL."""

    name = "postgresql"
    rowid = "id"

    def __init__(self, url: str, password: str | None = None, pooled: bool = False):
        self.url, self.password, self.pooled = url, password, pooled
        self._pool = None
        self._days: set[int] = set()  # the partitions known to exist (the writer's)

    @property
    def Error(self) -> type[Exception]:  # noqa: N802 - as sqlite3.Error reads
        import psycopg
        return psycopg.Error

    def describe(self) -> str:
        return safe_url(self.url)

    def exists(self) -> bool:
        return True  # a server's database: asking is connecting, which says what is wrong

    def __getstate__(self) -> dict:  # for a report's process: the pool stays here
        return {**self.__dict__, "_pool": None, "pooled": False}

    # --- connections ------------------------------------------------------------------
    def _options(self) -> dict:
        options = {"autocommit": True, "connect_timeout": CONNECT_TIMEOUT,
                   "application_name": "llm-usage-exporter",
                   # A server that goes silent (its host gone) is noticed within a minute,
                   # not the kernel's two hours.
                   "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                   "keepalives_count": 3}
        if self.password is not None:  # else libpq's own: PGPASSWORD, ~/.pgpass
            options["password"] = self.password
        return options

    def connect(self, write: bool):
        import psycopg
        return psycopg.connect(self.url, **self._options())

    @contextlib.contextmanager
    def borrowed(self, wait: float | None = None, reader: bool = False) -> Iterator:
        """A connection of the pool (made at the first need), given back at the end."""
        if self._pool is None:
            self._pool = Pool(lambda: self.connect(write=False), POOL_SIZE, API_READERS,
                              POOL_WAIT)
        with self._pool.connection(wait, reader) as conn:
            yield conn

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    @staticmethod
    def transaction(conn):
        return conn.transaction()

    @staticmethod
    def stream(conn, sql: str, args, size: int):
        """Yield the column names, then batches of at most `size` rows, from a server-side
        cursor: a million-row export never holds a million rows here either."""
        with conn.transaction(), conn.cursor(name="llm_usage_rows") as cursor:
            cursor.itersize = size
            cursor.execute(sql, args)
            yield [d.name for d in cursor.description]
            while batch := cursor.fetchmany(size):
                yield batch

    @staticmethod
    def unavailable(error: BaseException) -> bool:
        """True when the server failed (unreachable, shutting down, out of disk), not a
        row: the writer then keeps the batch and tries again."""
        import psycopg
        from psycopg import errors
        return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError
                          | errors.InsufficientResources | errors.AdminShutdown
                          | errors.CannotConnectNow | errors.ReadOnlySqlTransaction)

    @contextlib.contextmanager
    def migrating(self) -> Iterator[None]:
        """Hold the migration lock: replicas started together migrate one at a time."""
        with contextlib.closing(self.connect(write=True)) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK])
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK])

    def migrate(self) -> None:
        with contextlib.closing(self.connect(write=True)) as conn:
            migrate_postgresql(conn)

    def sql(self, text: str) -> str:
        return _placeholders(text)

    @staticmethod
    def insert_rows(conn, rows) -> None:
        """COPY, not INSERT: 2.5 times the rows a second (measured), in the same transaction."""
        with conn.raw.cursor().copy(COPY_SQL) as copy:
            for row in rows:
                copy.write_row(row)

    # --- the requests table's day partitions (partitions.py) ----------------------------
    def ensure_partitions(self, conn, days) -> None:
        """Make the partitions of these UTC days (Unix seconds // 86400) the upkeep has not
        made ahead (a clock far off, rows of another day), in the rows' transaction."""
        missing = set(days) - self._days
        if missing:
            partitions.make(conn, missing)
            self._days |= missing

    def forget_partitions(self) -> None:
        """A transaction that made partitions was rolled back: they may not exist."""
        self._days.clear()

    @staticmethod
    def prepare(conn, now: float) -> None:
        """Make today's partition and the next days' before their rows come (the upkeep)."""
        today = int(now // DAY)
        with conn.transaction():
            partitions.make(conn, range(today, today + partitions.AHEAD + 1))

    @staticmethod
    def retire(conn, before: float) -> None:
        """Detach the partitions wholly before `before` (outside a transaction)."""
        partitions.retire(conn, before)

    @staticmethod
    def prune(conn, before: float) -> tuple[int, float]:
        """Drop the partitions retire() detached, in the caller's transaction; return the
        rows they held, and the time before which none is left: the start of the day
        `before` falls in (retention is kept to the day, not to the second), or of an
        older day whose partition could not be detached yet."""
        dropped = partitions.drop_detached(conn)
        kept = partitions.attached(conn)
        return dropped, min([before // DAY * DAY, *(day * DAY for day in kept)])

    # --- expressions the engines spell apart ------------------------------------------
    @staticmethod
    def floor(expr: str) -> str:
        return f"floor({expr})"

    @staticmethod
    def greatest(*exprs: str) -> str:
        return f"greatest({', '.join(exprs)})"

    @staticmethod
    def least(*exprs: str) -> str:
        return f"least({', '.join(exprs)})"

    @staticmethod
    def day(epoch: str) -> str:
        return f"to_char(to_timestamp({epoch}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"

    @staticmethod
    def p95(column: str) -> str:
        return f"percentile_disc(0.95) WITHIN GROUP (ORDER BY {column})"

    @staticmethod
    def tag(key: str) -> str:
        return f"(tags::jsonb ->> '{key}')"

    @staticmethod
    def fee_of(category: str) -> str:
        return f"(fees::jsonb ->> '{category}')::float8"

    @staticmethod
    def fee_categories() -> tuple[str, str]:
        return "jsonb_each_text(requests.fees::jsonb)", "value::float8"

    now = "extract(epoch from clock_timestamp())::float8"
