"""What each key has spent this calendar day and month: the rollup the writer keeps, read
at every scrape (llm_spend_usd) and, for budgets the gateway enforces, every second.

The rollup holds what every process and replica sharing the database has written; the
rows this process has queued but not yet written are added to it. The writer thread reads
the rollup right after each batch it commits and, in the same step, takes that batch out
of the unwritten sums, so no fee is ever in neither or in both. Other replicas' fees
arrive as they commit theirs: at most half a second (`REFRESH_SECONDS`) plus their writer's
linger (0.1 s) later, besides the requests still under way everywhere, whose fees are not
known yet. So a budget spent through one replica is refused by every one within a second.
"""

from __future__ import annotations

import threading
from datetime import datetime
from zoneinfo import ZoneInfo

from .zones import local_time_sql, offset_segments

REFRESH_SECONDS = 0.5  # a query of a few rows, per replica: far within a second
ALL_KEYS = 1_000_000  # spend_sql's limit: enforcement needs every key, not the top ones
# A batch's fees, added to the day's row of each key (every replica adds its own).
ADD_SPEND_SQL = ("INSERT INTO spend_daily (api_key, day, fee_usd) VALUES (?, ?, ?) "
                 "ON CONFLICT (api_key, day) DO UPDATE "
                 "SET fee_usd = spend_daily.fee_usd + excluded.fee_usd")


def spend_sql(tz: ZoneInfo, now: float, max_keys: int) -> tuple[str, list]:
    """Fees per key this calendar month and day in `tz`, the biggest spenders first."""
    today = datetime.fromtimestamp(now, tz).date()
    return ("SELECT api_key, sum(fee_usd) AS month, "
            "sum(CASE WHEN day = ? THEN fee_usd ELSE 0 END) AS day "
            "FROM spend_daily WHERE day >= ? GROUP BY api_key "
            f"ORDER BY month DESC, api_key LIMIT {int(max_keys)}",
            [today.isoformat(), today.replace(day=1).isoformat()])


def rebuild_spend(conn, tz: ZoneInfo) -> None:
    """Recompute the spend rollup in zone `tz` from every stored request."""
    low, high = conn.one("SELECT min(started_at), max(started_at) FROM requests")
    with conn.transaction():
        conn.execute("DELETE FROM spend_daily")
        if low is not None:
            local, args = local_time_sql(offset_segments(tz, low, high + 1))
            conn.execute(f"INSERT INTO spend_daily (api_key, day, fee_usd) SELECT api_key, "
                         f"{conn.dialect.day(local)}, sum(fee_usd) FROM requests "
                         f"GROUP BY 1, 2", args)
        conn.execute("INSERT INTO meta (key, value) VALUES ('timezone', ?) ON CONFLICT (key) "
                     "DO UPDATE SET value = excluded.value", [tz.key])


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
                                    in conn.all(*spend_sql(self.tz, now, ALL_KEYS))}

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
