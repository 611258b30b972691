"""PostgreSQL's requests table has a partition per UTC day: made before the day comes,
dropped once the whole day is past the retention, without ever blocking the table's
readers and writers.

A partition made with CREATE TABLE ... PARTITION OF, or dropped, locks the whole table
until every reader is done: one export's open cursor held up every replica's writer and
every query behind it (measured: 5 s). So a day's table is made apart and then attached,
and an old one detached CONCURRENTLY before it is dropped: both take only a lock that
reads and writes pass.
"""

from __future__ import annotations

DAY = 86400
LOCK = 0x6C6C6D02  # pg_advisory_xact_lock's key: one process makes a day's table at a time
AHEAD = 2  # days made before they come: today's rows never wait for one


def table(day: int) -> str:
    return f"requests_d{day}"


def attached(conn) -> dict[int, bool]:
    """The days that have a partition, each with whether its detaching was left pending."""
    return {int(name.removeprefix("requests_d")): pending for name, pending in conn.all(
        "SELECT c.relname, i.inhdetachpending FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'requests'::regclass")}


def make(conn, days) -> None:
    """Make the partitions of these days (Unix seconds // 86400) that are missing, in the
    caller's transaction; waits at most 5 s for a lock (the writer then tries again)."""
    conn.execute("SET LOCAL lock_timeout = '5s'")
    conn.execute("SELECT pg_advisory_xact_lock(?)", [LOCK])
    have = attached(conn)
    for day in sorted(set(days) - set(have)):
        start, end = day * DAY, (day + 1) * DAY
        # The CHECK says what the bound will: ATTACH then reads nothing to prove it.
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table(day)} (LIKE requests INCLUDING "
                     f"DEFAULTS, CHECK (started_at >= {start} AND started_at < {end}))")
        conn.execute(f"ALTER TABLE requests ATTACH PARTITION {table(day)} "
                     f"FOR VALUES FROM ({start}) TO ({end})")


def retire(conn, before: float) -> None:
    """Detach the partitions wholly before `before`, CONCURRENTLY: outside a transaction,
    it waits for the readers that may see them, and blocks nobody meanwhile."""
    for day, pending in sorted(attached(conn).items()):
        if (day + 1) * DAY <= before:
            finish = " FINALIZE" if pending else " CONCURRENTLY"  # a detach interrupted
            conn.execute(f"ALTER TABLE requests DETACH PARTITION {table(day)}{finish}")


def drop_detached(conn) -> int:
    """Drop the day tables no longer attached, in the caller's transaction; return the
    rows they held."""
    dropped = 0
    for (name,) in conn.all(
            "SELECT c.relname FROM pg_class c WHERE c.relname ~ '^requests_d[0-9]+$' "
            "AND c.relkind = 'r' AND NOT EXISTS (SELECT 1 FROM pg_inherits i "
            "WHERE i.inhrelid = c.oid)"):
        dropped += conn.one(f"SELECT count(*) FROM {name}")[0]
        conn.execute(f"DROP TABLE {name}")
    return dropped
