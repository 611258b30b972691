"""The one owner of the history database: which engine, every connection, the dialect.

SQLite at a path is the zero-setup default; PostgreSQL at a postgresql:// URL holds one
history for a fleet of gateways. The engine is chosen here and nowhere else: everything
above writes its SQL once, with `?` placeholders, and asks `dialect` for the few
expressions the two engines spell apart.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from zoneinfo import ZoneInfo

from .postgresql import PostgreSQL, parts
from .spend import rebuild_spend
from .sqlite import SQLite

SCHEMES = ("postgresql", "postgres")


def reason(error: BaseException) -> str:
    """An error's first line, for a one-line message: libpq's run on with hints."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def unreachable(url: str, error: BaseException) -> str:
    """One line: the server named by host and port (never a password), and libpq's reason."""
    host, port = parts(url)
    why = reason(error).removeprefix("connection failed: ")
    return f"cannot use the PostgreSQL history at {host}:{port}: {why}"


def is_url(target: str) -> bool:
    """True for a PostgreSQL URL, false for a SQLite file's path."""
    scheme, sep, _ = target.partition("://")
    return bool(sep) and scheme in SCHEMES


class Connection:
    """One connection of either engine: SQL with `?` placeholders, rows as tuples."""

    def __init__(self, raw, engine):
        self.raw, self.engine = raw, engine

    @property
    def dialect(self) -> SQLite | PostgreSQL:
        return self.engine

    def execute(self, sql: str, args=()):
        return self.raw.execute(self.engine.sql(sql), args)

    def executemany(self, sql: str, rows) -> None:
        cursor = self.raw.cursor()
        try:
            cursor.executemany(self.engine.sql(sql), rows)
        finally:
            cursor.close()

    def one(self, sql: str, args=()):
        return self.execute(sql, args).fetchone()

    def all(self, sql: str, args=()) -> list:
        return self.execute(sql, args).fetchall()

    def changed(self, sql: str, args=()) -> int:
        """Run a write; return the rows it changed."""
        return self.execute(sql, args).rowcount

    def transaction(self):
        """A write transaction: committed at the end, rolled back on an error."""
        return self.engine.transaction(self.raw)

    def stream(self, sql: str, args, size: int):
        """Yield the column names, then batches of at most `size` rows."""
        return self.engine.stream(self.raw, self.engine.sql(sql), args, size)

    def close(self) -> None:
        self.raw.close()


class Database:
    """The history database at `target`: a SQLite file's path or a PostgreSQL URL.

    `password` (else libpq's PGPASSWORD or ~/.pgpass) is never part of the URL; `pooled`
    keeps a few PostgreSQL connections for the readers of a long-running gateway.
    """

    def __init__(self, target: str, *, password: str | None = None, pooled: bool = False):
        self.target = target
        self.engine: SQLite | PostgreSQL = PostgreSQL(target, password, pooled) \
            if is_url(target) else SQLite(target)

    @classmethod
    def of(cls, history, env=os.environ, pooled: bool = False) -> Database:
        """The history database a config's `history` section names."""
        password = env.get(history.password_env) if history.password_env else None
        return cls(history.url or history.path, password=password, pooled=pooled)

    @property
    def dialect(self) -> SQLite | PostgreSQL:
        """The engine, for the expressions it spells its own way (floor, greatest, ...)."""
        return self.engine

    @property
    def Error(self) -> type[Exception]:  # noqa: N802 - an exception class, as sqlite3.Error
        """The engine's base exception: `except db.Error`."""
        return self.engine.Error

    @property
    def postgresql(self) -> bool:
        return isinstance(self.engine, PostgreSQL)

    def __str__(self) -> str:
        """What messages and logs name: the path, or the URL without a password."""
        return self.engine.describe()

    def exists(self) -> bool:
        return self.engine.exists()

    @contextlib.contextmanager
    def connect(self, write: bool = False, wait: float | None = None,
                reader: bool = False) -> Iterator[Connection]:
        """A connection for a piece of work (PostgreSQL's from the pool, waited for up to
        `wait` seconds; a `reader` of the usage API's, of which the pool lends only a few
        at once), closed or given back at the end; SQLite's read-only unless `write`."""
        if isinstance(self.engine, PostgreSQL) and self.engine.pooled:
            with self.engine.borrowed(wait, reader) as raw:
                yield Connection(raw, self.engine)
            return
        conn = Connection(self.engine.connect(write), self.engine)
        try:
            yield conn
        finally:
            conn.close()

    def dedicated(self) -> Connection:
        """A connection of its own for a long-lived owner (the writer thread): the caller
        closes it."""
        return Connection(self.engine.connect(True), self.engine)

    def migrate(self, tz: ZoneInfo | None = None) -> None:
        """Bring the tables up to date, one process at a time; given `tz` (the gateway's
        zone), rebuild the spend rollup if it was kept in another."""
        with self.engine.migrating():
            self.engine.migrate()
            if tz is not None:
                with self.connect(write=True) as conn:
                    stored = conn.one("SELECT value FROM meta WHERE key = 'timezone'")
                    if stored is None or stored[0] != tz.key:
                        rebuild_spend(conn, tz)
                    elif conn.one("SELECT value FROM meta WHERE key = 'rebuild'"):
                        rebuild_spend(conn, tz, keys=False)  # a migration's new rollup

    def close(self) -> None:
        """Close the pool's connections (PostgreSQL)."""
        if isinstance(self.engine, PostgreSQL):
            self.engine.close()
