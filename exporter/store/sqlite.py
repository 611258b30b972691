"""SQLite: the history in one file, for one gateway and its worker processes.

WAL mode, so readers never wait on the writer. A write transaction takes the lock at its
start (BEGIN IMMEDIATE): two processes' writers then queue on the busy timeout, where a
transaction that read first and wrote later could fail at once with `database is locked`.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import sqlite3
from collections.abc import Iterator
from urllib.request import pathname2url

from .rows import INSERT_SQL
from .schema import migrate_sqlite

# A writer waits this long for another process's transaction before giving up; readers
# less, so a scrape or a page of the usage API never hangs on a long write.
WRITE_TIMEOUT, READ_TIMEOUT = 30.0, 5.0


class P95:
    """The nearest-rank 95th percentile, as PostgreSQL's percentile_disc(0.95) gives it."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def step(self, value) -> None:
        if value is not None:
            self.values.append(value)

    def finalize(self):
        if not self.values:
            return None
        self.values.sort()
        return self.values[math.ceil(0.95 * len(self.values)) - 1]


class SQLite:
    """The SQLite engine: its connections, transactions and spelling of SQL."""

    name = "sqlite"
    rowid = "rowid"  # every table has one; PostgreSQL's requests table has an id column
    Error = sqlite3.Error

    def __init__(self, path: str):
        self.path = path

    def describe(self) -> str:
        return self.path

    def exists(self) -> bool:
        return os.path.isfile(self.path)

    # --- connections ------------------------------------------------------------------
    def connect(self, write: bool) -> sqlite3.Connection:
        """A connection in autocommit mode; read-only unless `write` (so a reader never
        creates an empty database where none was)."""
        if write:
            conn = sqlite3.connect(self.path, timeout=WRITE_TIMEOUT, isolation_level=None,
                                   check_same_thread=False)
            # WAL with synchronous=NORMAL survives a crash of the process; only a power loss
            # can lose the last commits. FULL fsyncs every commit: it doubled the CPU.
            conn.execute("PRAGMA synchronous=NORMAL")
        else:
            conn = sqlite3.connect(f"file:{pathname2url(os.path.abspath(self.path))}?mode=ro",
                                   uri=True, timeout=READ_TIMEOUT, isolation_level=None,
                                   check_same_thread=False)
        conn.create_aggregate("p95", 1, P95)
        return conn

    @staticmethod
    @contextlib.contextmanager
    def transaction(conn: sqlite3.Connection) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @staticmethod
    def stream(conn: sqlite3.Connection, sql: str, args, size: int):
        """Yield the column names, then batches of at most `size` rows."""
        cursor = conn.execute(sql, args)
        yield [d[0] for d in cursor.description]
        while batch := cursor.fetchmany(size):
            yield batch

    @staticmethod
    def unavailable(error: BaseException) -> bool:
        """True when the database itself failed (locked, full, read-only, gone), not a row:
        the writer then keeps the batch and tries again."""
        return isinstance(error, sqlite3.OperationalError | OSError)

    @contextlib.contextmanager
    def migrating(self) -> Iterator[None]:
        """Hold the file lock beside the database while its schema is brought up to date:
        two gateways started at once on one file then migrate one after the other. A lock
        file of its own: closing any descriptor of the database itself would drop the
        locks SQLite holds on it in this process."""
        with open(f"{self.path}-lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def migrate(self) -> None:
        conn = self.connect(write=True)
        try:
            migrate_sqlite(conn)
        finally:
            conn.close()

    def sql(self, text: str) -> str:
        return text  # `?` is SQLite's own placeholder

    @staticmethod
    def insert_rows(conn, rows) -> None:
        conn.executemany(INSERT_SQL, rows)

    @staticmethod
    def ensure_partitions(conn, days) -> None:
        """One table: nothing to make."""

    @staticmethod
    def forget_partitions() -> None:
        """None made, none to forget."""

    @staticmethod
    def prepare(conn, now: float) -> None:
        """Nothing to make ahead."""

    @staticmethod
    def retire(conn, before: float) -> None:
        """Nothing to do outside the pruning's transaction."""

    @staticmethod
    def prune(conn, before: float) -> tuple[int, float]:
        """Delete the requests before `before`, in the caller's transaction; return how
        many, and the time before which none is left (`before` itself)."""
        return conn.changed("DELETE FROM requests WHERE started_at < ?", [before]), before

    # --- expressions the engines spell apart ------------------------------------------
    @staticmethod
    def floor(expr: str) -> str:
        """The integer at or below `expr`: CAST rounds toward zero, so it is cast from
        above zero (a local time is at least -14 hours, -840 minutes from 1970); floor()
        itself is in few SQLite builds."""
        return f"(CAST(({expr}) + 1000000 AS INTEGER) - 1000000)"

    @staticmethod
    def greatest(*exprs: str) -> str:
        return f"max({', '.join(exprs)})"

    @staticmethod
    def least(*exprs: str) -> str:
        return f"min({', '.join(exprs)})"

    @staticmethod
    def day(epoch: str) -> str:
        """The UTC calendar date of Unix seconds `epoch`, as YYYY-MM-DD."""
        return f"date({epoch}, 'unixepoch')"

    @staticmethod
    def p95(column: str) -> str:
        return f"p95({column})"

    @staticmethod
    def tag(key: str) -> str:
        """A request's tag `key` (query.TAG_KEY's letters only), or NULL."""
        return f"json_extract(tags, '$.{key}')"

    @staticmethod
    def fee_of(category: str) -> str:
        """A request's fee in one category of its `fees` JSON."""
        return f"json_extract(fees, '$.{category}')"

    @staticmethod
    def fee_categories() -> tuple[str, str]:
        """The table of a request's fees by category (columns key and value), and its value
        as a number."""
        return "json_each(requests.fees)", "value"

    # The database's clock in Unix seconds: one clock for every process of a lease.
    now = "((julianday('now') - 2440587.5) * 86400.0)"
