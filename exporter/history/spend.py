"""What each key has spent this calendar day and month, for budgets the gateway enforces.

The history's spend rollup holds what every worker and gateway sharing the database has
written; the rows this process has queued but not yet written are added to it. The writer
thread reads the rollup right after each batch it commits and, in the same step, takes that
batch out of the unwritten sums, so no fee is ever in neither or in both. Other processes'
fees arrive as they commit theirs: at most a second (`REFRESH_SECONDS`) plus their writer's
linger later, besides the requests still under way everywhere, whose fees are not known yet.
"""

from __future__ import annotations

import threading
from datetime import datetime
from zoneinfo import ZoneInfo

from .query import spend_sql

REFRESH_SECONDS = 1.0
ALL_KEYS = 1_000_000  # spend_sql's limit: enforcement needs every key, not the top ones


class Spend:
    """Fees per API key name this day and month in zone `tz`, as (day, month) in USD."""

    def __init__(self, tz: ZoneInfo):
        self.tz = tz
        self.written: dict[str, tuple[float, float]] = {}
        self.period = ("", "")  # the local day and month the written sums are of
        self.unwritten: dict[str, float] = {}
        self.lock = threading.Lock()
        self.active = False  # a budget is enforced: the writer reads the rollup back

    def of(self, api_key: str, now: float) -> tuple[float, float]:
        """Read from the event loop: one consistent enough view, without a lock (a fee
        moving from unwritten to written between the two reads is counted twice, never
        missed). Sums of a day or month that has ended since they were read count 0."""
        pending = self.unwritten.get(api_key, 0.0)
        day, month = self.written.get(api_key, (0.0, 0.0))
        today = datetime.fromtimestamp(now, self.tz).date().isoformat()
        read_day, read_month = self.period
        return (day if read_day == today else 0.0) + pending, \
            (month if read_month == today[:7] else 0.0) + pending

    def queued(self, api_key: str, fee: float) -> None:
        """A row with this fee is on its way to the database."""
        with self.lock:
            self.unwritten[api_key] = self.unwritten.get(api_key, 0.0) + fee

    def read(self, conn, now: float) -> tuple[tuple[str, str], dict]:
        """Read the rollup (writer thread): the local day and month it is of, and the
        (day, month) sums per key."""
        today = datetime.fromtimestamp(now, self.tz).date().isoformat()
        return (today, today[:7]), {api_key: (day or 0.0, month or 0.0) for api_key, month, day
                                    in conn.execute(*spend_sql(self.tz, now, ALL_KEYS))}

    def settle(self, handled: dict[str, float], read: tuple | None) -> None:
        """Take a batch's fees (`handled`: per key, its rows just committed or lost) out of
        the unwritten sums, in one step with the rollup read after it (`read`, or None to
        keep the last)."""
        with self.lock:
            if read is not None:
                self.period, self.written = read
            for api_key, fee in handled.items():
                left = self.unwritten.get(api_key, 0.0) - fee
                if left > 1e-9:
                    self.unwritten[api_key] = left
                else:
                    self.unwritten.pop(api_key, None)
