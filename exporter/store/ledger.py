"""What every process and replica sharing the history agrees on through it: who created
each job and whether it was metered, which periods of each scheduled report were
delivered, and who holds the lease of a job only one process may run.

Each decision is one statement only one process can win. Every call is a blocking round
trip to the database: the gateway makes it from a worker thread, never on its event loop.
"""

from __future__ import annotations

import os
import socket
import time
import uuid

from .database import Database

CAS_TRIES = 20  # compare-and-swap rounds before a state change gives up (never seen past 2)


class JobLedger:
    """The jobs table: batches, background responses and fine-tuning jobs."""

    def __init__(self, db: Database):
        self.db = db

    @staticmethod
    def _row(conn, job_id: str, at: float) -> None:
        # With a time, as every row of the ledger: the retention prunes rows by their
        # times, and took a row without one for as old as 1970, deleting it between its
        # making and its reading (a state counted twice; a claim's read that failed).
        conn.execute("INSERT INTO jobs (job_id, created_at) VALUES (?, ?) "
                     "ON CONFLICT (job_id) DO NOTHING", [job_id, at])

    def claim(self, job_id: str, at: float, also=()) -> bool:
        """True for the one process that marks the job metered. The claim is decided on
        `job_id` (the id its results were fetched by); `also` are other ids of the same job
        (a batch's own, where its output file's is known), marked with it, and refused if
        one of them was metered already."""
        with self.db.connect(write=True) as conn, conn.transaction():
            self._row(conn, job_id, at)
            if also and conn.one(
                    f"SELECT count(*) FROM jobs WHERE job_id IN ({', '.join('?' * len(also))})"
                    " AND metered_at IS NOT NULL", list(also))[0]:
                return False
            if conn.changed("UPDATE jobs SET metered_at = ? WHERE job_id = ? AND "
                            "metered_at IS NULL", [at, job_id]) != 1:
                return False
            for other in also:
                self._row(conn, other, at)
                conn.execute("UPDATE jobs SET metered_at = ? WHERE job_id = ? AND "
                             "metered_at IS NULL", [at, other])
            return True

    def reached(self, job_id: str, state: str) -> bool:
        """True for the one process that adds `state` to the states the job was seen in."""
        with self.db.connect(write=True) as conn:
            with conn.transaction():
                self._row(conn, job_id, time.time())
            for _ in range(CAS_TRIES):
                seen = conn.one("SELECT coalesce(states, '') FROM jobs WHERE job_id = ?",
                                [job_id])[0]
                if state in seen.split(","):
                    return False
                with conn.transaction():
                    if conn.changed("UPDATE jobs SET states = ? WHERE job_id = ? AND "
                                    "coalesce(states, '') = ?",
                                    [f"{seen},{state}" if seen else state, job_id, seen]):
                        return True
        return False

    def creator(self, job_id: str) -> tuple[str, float] | None:
        """The key that created the job and when, if it was created through a gateway."""
        with self.db.connect() as conn:
            found = conn.one("SELECT api_key, created_at FROM jobs WHERE job_id = ? AND "
                             "api_key IS NOT NULL", [job_id])
        return (found[0], found[1]) if found else None

    def batch_of(self, file_id: str) -> str | None:
        """The batch whose results are in this file, if one is known."""
        with self.db.connect() as conn:
            found = conn.one("SELECT job_id FROM jobs WHERE output_file_id = ?", [file_id])
        return found[0] if found else None


def delivered(db: Database, report: str, period_start: float) -> bool:
    """True if the report's period was delivered (by any process)."""
    with db.connect() as conn:
        return conn.one("SELECT 1 FROM reports_sent WHERE report = ? AND period_start = ?",
                        [report, period_start]) is not None


def record_delivery(db: Database, report: str, period_start: float, at: float) -> None:
    with db.connect(write=True) as conn, conn.transaction():
        conn.execute("INSERT INTO reports_sent (report, period_start, delivered_at) VALUES "
                     "(?, ?, ?) ON CONFLICT (report, period_start) DO NOTHING",
                     [report, period_start, at])


class Lease:
    """The right to run one job (`name`) that only one process of a fleet may run: taken
    when free or expired, renewed by its holder, expiring `ttl` seconds after the last
    renewal by the database's clock (one clock for every replica)."""

    def __init__(self, db: Database, name: str, ttl: float):
        self.db, self.name, self.ttl = db, name, ttl
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def hold(self) -> bool:
        """Take the lease or renew it; True while this process holds it."""
        now = self.db.dialect.now
        with self.db.connect(write=True) as conn, conn.transaction():
            return conn.changed(
                f"INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, {now} + ?) "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                "expires_at = excluded.expires_at "
                f"WHERE leases.holder = excluded.holder OR leases.expires_at < {now}",
                [self.name, self.holder, self.ttl]) == 1

    def release(self) -> None:
        """Give the lease up, so another process takes it at its next try."""
        with self.db.connect(write=True) as conn, conn.transaction():
            conn.execute("DELETE FROM leases WHERE name = ? AND holder = ?",
                         [self.name, self.holder])

    def holder_now(self) -> str | None:
        """Who holds the lease now (None when it is free or expired)."""
        with self.db.connect() as conn:
            found = conn.one(f"SELECT holder FROM leases WHERE name = ? AND "
                             f"expires_at >= {self.db.dialect.now}", [self.name])
        return found[0] if found else None
