"""What each key, project and end user has spent this calendar day and month: the rollups
the writer keeps, read at every scrape (llm_spend_usd, llm_project_spend_usd) and, for
budgets the gateway enforces, every half second (an end user's: after each of their
batches).

The rollup holds what every process and replica sharing the database has written; the
rows this process has queued but not yet written are added to it. The writer thread reads
the rollup right after each batch it commits and, in the same step, takes that batch out
of the unwritten sums, so no fee is ever in neither or in both. Other replicas' fees
arrive as they commit theirs: at most half a second (`REFRESH_SECONDS`) plus their writer's
linger (0.1 s) later, besides the requests still under way everywhere, whose fees are not
known yet. So a budget spent through one replica is refused by every one within a second;
an end user's, by each replica once a row of theirs it wrote is read back.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

from .zones import local_time_sql, offset_segments

REFRESH_SECONDS = 0.5  # a query of a few rows, per replica: far within a second
ALL_KEYS = 1_000_000  # spend_sql's limit: enforcement needs every key, not the top ones
MAX_USERS = 100_000  # end users' sums kept in memory; the longest unread go first
# A budget holds an API key, a project or an end user: a payer is (kind, name).
Payer = tuple[str, str]
# A batch's fees, added to the day's row of each key, project and user (every replica adds
# its own). Keys in a table of their own, as since the first release.
ADD_SPEND_SQL = ("INSERT INTO spend_daily (api_key, day, fee_usd) VALUES (?, ?, ?) "
                 "ON CONFLICT (api_key, day) DO UPDATE "
                 "SET fee_usd = spend_daily.fee_usd + excluded.fee_usd")
ADD_ATTRIBUTED_SQL = ("INSERT INTO spend_attributed (kind, name, day, fee_usd) "
                      "VALUES (?, ?, ?, ?) ON CONFLICT (kind, name, day) DO UPDATE "
                      "SET fee_usd = spend_attributed.fee_usd + excluded.fee_usd")


def spend_sql(tz: ZoneInfo, now: float, limit: int, kind: str = "api_key",
              names: Iterable[str] = ()) -> tuple[str, list]:
    """Fees per key (or per project or user: `kind`, and only `names` if given) this
    calendar month and day in `tz`, the biggest spenders first."""
    today = datetime.fromtimestamp(now, tz).date()
    name, where, args = "api_key", "", []
    if kind != "api_key":
        name, where, args = "name", "kind = ? AND ", [kind]
    if names := list(names):
        where += f"name IN ({', '.join('?' * len(names))}) AND "
    source = "spend_daily" if kind == "api_key" else "spend_attributed"
    return (f"SELECT {name}, sum(fee_usd) AS month, "
            "sum(CASE WHEN day = ? THEN fee_usd ELSE 0 END) AS day "
            f"FROM {source} WHERE {where}day >= ? GROUP BY {name} "
            f"ORDER BY month DESC, {name} LIMIT {int(limit)}",
            [today.isoformat(), *args, *names, today.replace(day=1).isoformat()])


def rebuild_spend(conn, tz: ZoneInfo, keys: bool = True) -> None:
    """Recompute the spend rollups in zone `tz` from every stored request: the keys' too,
    or (`keys` false: a new history version's projects and users, whose keys' spend is
    kept) only the projects' and users'. The keys' spend of the current month outlives
    a short retention (batches.prune): a rebuild of it from the rows left loses that."""
    low, high = conn.one("SELECT min(started_at), max(started_at) FROM requests")
    with conn.transaction():
        if keys:
            conn.execute("DELETE FROM spend_daily")
        conn.execute("DELETE FROM spend_attributed")
        if low is not None:
            local, args = local_time_sql(offset_segments(tz, low, high + 1))
            day = conn.dialect.day(local)
            if keys:
                conn.execute(f"INSERT INTO spend_daily (api_key, day, fee_usd) SELECT "
                             f"api_key, {day}, sum(fee_usd) FROM requests GROUP BY 1, 2", args)
            for kind, column in (("project", "project"), ("user", "end_user")):
                conn.execute(f"INSERT INTO spend_attributed (kind, name, day, fee_usd) "
                             f"SELECT '{kind}', {column}, {day}, sum(fee_usd) FROM requests "
                             f"WHERE {column} IS NOT NULL GROUP BY 2, 3", args)
        conn.execute("INSERT INTO meta (key, value) VALUES ('timezone', ?) ON CONFLICT (key) "
                     "DO UPDATE SET value = excluded.value", [tz.key])
        conn.execute("DELETE FROM meta WHERE key = 'rebuild'")


def payers(api_key: str, project: str, user: str | None) -> tuple[Payer, ...]:
    """Whom a request's fee is charged to: its key, its project and its end user if known."""
    if user is None:
        return ("api_key", api_key), ("project", project)
    return ("api_key", api_key), ("project", project), ("user", user)


class Spend:
    """Fees per API key, project and end user this day and month in zone `tz`, as (day,
    month) in USD. Keys and projects are few: every one is read every half second. End
    users may be millions: each is read after a batch of its own rows is written, so a
    user's spend through other replicas is seen once a request of theirs passes here."""

    def __init__(self, tz: ZoneInfo):
        self.tz = tz
        self.written: dict[Payer, tuple[float, float]] = {}  # keys' and projects'
        self.read_on = ""  # the local day the written sums are of
        # (read on, day, month), the longest unread first
        self.users: OrderedDict[str, tuple[str, float, float]] = OrderedDict()
        self.unwritten: dict[Payer, float] = {}
        self.lock = threading.Lock()
        self.active = False  # a budget is enforced: the writer reads the rollup back
        self.users_active = False  # a user's budget is: the writer reads the users back

    def of(self, payer: Payer, now: float) -> tuple[float, float]:
        """Read from the event loop: one consistent enough view, without a lock (a fee
        moving from unwritten to written between the two reads is counted twice, never
        missed). Sums of a day or month that has ended since they were read count 0."""
        pending = self.unwritten.get(payer, 0.0)
        if payer[0] == "user":
            read_on, day, month = self.users.get(payer[1], ("", 0.0, 0.0))
        else:
            read_on, (day, month) = self.read_on, self.written.get(payer, (0.0, 0.0))
        today = datetime.fromtimestamp(now, self.tz).date().isoformat()
        return (day if read_on == today else 0.0) + pending, \
            (month if read_on[:7] == today[:7] else 0.0) + pending

    def queued(self, charged: Iterable[Payer], fee: float) -> None:
        """A row with this fee is on its way to the database."""
        with self.lock:
            for payer in charged:
                self.unwritten[payer] = self.unwritten.get(payer, 0.0) + fee

    def read(self, conn, now: float, users: Iterable[str] = ()) -> tuple:
        """Read the rollups (writer thread): the local day they are of, the (day, month)
        sums of every key and project, and of the end users named."""
        today = datetime.fromtimestamp(now, self.tz).date().isoformat()
        written = {(kind, name): (day or 0.0, month or 0.0) for kind in ("api_key", "project")
                   for name, month, day in conn.all(*spend_sql(self.tz, now, ALL_KEYS, kind))}
        found = {user: (today, 0.0, 0.0) for user in users}
        if found:
            found.update((name, (today, day or 0.0, month or 0.0)) for name, month, day
                         in conn.all(*spend_sql(self.tz, now, ALL_KEYS, "user", found)))
        return today, written, found

    def settle(self, handled: dict[Payer, float], read: tuple | None) -> None:
        """Take a batch's fees (`handled`: per payer, of its rows just committed or lost)
        out of the unwritten sums, in one step with the rollup read after it (`read`, or
        None to keep the last)."""
        with self.lock:
            if read is not None:
                self.read_on, self.written, users = read
                for user, sums in users.items():
                    # Replaced in one step, then moved: of() never sees it missing.
                    self.users[user] = sums
                    self.users.move_to_end(user)
                while len(self.users) > MAX_USERS:
                    self.users.popitem(last=False)
            for payer, fee in handled.items():
                left = self.unwritten.get(payer, 0.0) - fee
                if left > 1e-9:
                    self.unwritten[payer] = left
                else:
                    self.unwritten.pop(payer, None)
