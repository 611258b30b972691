"""The providers' own figures kept beside ours: each UTC day's usage and cost as their admin
APIs report it, the state of each day's last fetch, and our side of the same days.

A day's figures are replaced whole, in one transaction, or not at all: a fetch that fails
half way leaves the day as it was (and marked failed).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .database import Database
from .provider_tables import RECONCILED
from .query import SUCCESSES

DAY = 86400

# Operations whose provider reports count requests or units, never tokens (OpenAI's
# images and audio endpoints): their tokens stay out of our side's token columns, else
# an image model's tokens would show as drift against a report that has none.
UNTOKENED = ("images", "speech", "transcription")
# Our disjoint token columns summed into the four categories the providers report.
OURS = {"input_uncached": ("input_text", "input_audio", "input_image"),
        "cache_read": ("input_cache_read",),
        "cache_write": ("input_cache_write_5m", "input_cache_write_1h"),
        "output": ("output_text", "output_reasoning", "output_audio", "output_image")}


@dataclass(frozen=True)
class Figures:
    """Requests (None: not reported), tokens by category and fee of one day, model, key."""

    day: str
    model: str
    api_key: str
    requests: int | None
    input_uncached: int = 0
    cache_read: int = 0
    cache_write: int = 0
    output: int = 0
    fee_usd: float | None = None
    estimated: int = 0  # ours only: tokens estimated from text


@dataclass(frozen=True)
class FetchState:
    fetched_at: float
    status: str  # ok or failed
    cause: str | None
    digest: str | None
    stable: bool  # its last two fetches found the same figures


def day_start(day: str) -> float:
    """Unix time of a UTC day's midnight, YYYY-MM-DD."""
    return dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp()


SETTLE_SECONDS = 6 * 3600


def save_day(db: Database, account: str, day: str, usage: list[Figures],
             costs: dict[str, float], at: float, digest: str) -> None:
    """Replace a day's figures with a fetch's, whole, and note the fetch."""
    with db.connect(write=True) as conn, conn.transaction():
        before = conn.one("SELECT digest, status, fetched_at FROM provider_fetches WHERE "
                          "account = ? AND day = ?", [account, day])
        # Settled when a fetch hours after the last agrees: a retry minutes later (after a
        # failure of another day) proves nothing of a day the provider still amends.
        stable = before is not None and before[0] == digest and before[1] == "ok" \
            and at - before[2] >= SETTLE_SECONDS
        conn.execute("DELETE FROM provider_usage WHERE account = ? AND day = ?", [account, day])
        conn.execute("DELETE FROM provider_costs WHERE account = ? AND day = ?", [account, day])
        conn.executemany(
            f"INSERT INTO provider_usage (account, day, model, api_key, requests, "
            f"{', '.join(RECONCILED)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [[account, day, f.model, f.api_key, f.requests,
              *(getattr(f, c) for c in RECONCILED)] for f in usage])
        conn.executemany("INSERT INTO provider_costs (account, day, model, fee_usd) "
                         "VALUES (?, ?, ?, ?)",
                         [[account, day, model, fee] for model, fee in costs.items()])
        _note(conn, account, day, at, "ok", None, digest, stable)


def mark_failed(db: Database, account: str, day: str, at: float, cause: str) -> None:
    """Note a day whose fetch failed: its figures, if any, stay those of the last good one."""
    with db.connect(write=True) as conn, conn.transaction():
        before = conn.one("SELECT digest FROM provider_fetches WHERE account = ? AND day = ?",
                          [account, day])
        _note(conn, account, day, at, "failed", cause, before[0] if before else None, False)


def _note(conn, account, day, at, status, cause, digest, stable) -> None:
    conn.execute("INSERT INTO provider_fetches (account, day, fetched_at, status, cause, "
                 "digest, stable) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (account, day) DO "
                 "UPDATE SET fetched_at = excluded.fetched_at, status = excluded.status, "
                 "cause = excluded.cause, digest = excluded.digest, stable = excluded.stable",
                 [account, day, at, status, cause, digest, int(stable)])


def fetch_states(db: Database, account: str) -> dict[str, FetchState]:
    with db.connect() as conn:
        return {day: FetchState(at, status, cause, digest, bool(stable))
                for day, at, status, cause, digest, stable in conn.all(
                    "SELECT day, fetched_at, status, cause, digest, stable FROM "
                    "provider_fetches WHERE account = ?", [account])}


def fetched_days(db: Database, account: str, first: str, last: str,
                 wait: float | None = None) -> set[str]:
    """The days first..last whose figures the provider's reports gave at the account's last
    fetch of them: the only days compared (a day not fetched yet, or whose fetch failed,
    has none of their side, and would show all of ours as drift)."""
    with db.connect(wait=wait) as conn:
        return {day for (day,) in conn.all(
            "SELECT day FROM provider_fetches WHERE account = ? AND status = 'ok' AND "
            "day >= ? AND day <= ?", [account, first, last])}


def theirs(db: Database, account: str, first: str, last: str, wait: float | None = None
           ) -> tuple[list[Figures], dict[tuple[str, str], float]]:
    """Their usage rows, and their fee by (day, model), of the days first..last."""
    with db.connect(wait=wait) as conn:
        usage = [Figures(*row) for row in conn.all(
            f"SELECT day, model, api_key, requests, {', '.join(RECONCILED)} FROM "
            "provider_usage WHERE account = ? AND day >= ? AND day <= ?", [account, first, last])]
        costs = {(day, model): fee for day, model, fee in conn.all(
            "SELECT day, model, fee_usd FROM provider_costs WHERE account = ? AND day >= ? "
            "AND day <= ?", [account, first, last])}
    return usage, costs


# The requests a provider counts: answered ones, and those cut short after billing began (a
# stream the client left); not what the gateway refused, nor the upstream's errors.
BILLED = (f"sum(CASE WHEN error_type IN {SUCCESSES} OR fee_usd > 0 THEN requests ELSE 0 "
          "END)")


def ours(db: Database, services: tuple[str, ...], first: str, last: str,
         wait: float | None = None) -> list[Figures]:
    """Our figures of the same days (UTC), per day, model and key, from the usage rollup
    (whole 15-minute buckets: a UTC day is 96 of them)."""
    tokened = f"operation NOT IN ({', '.join('?' * len(UNTOKENED))})"
    sums = ", ".join(f"sum(CASE WHEN {tokened} THEN {' + '.join(columns)} ELSE 0 END)"
                     for columns in OURS.values())
    places = ", ".join("?" * len(services))
    with db.connect(wait=wait) as conn:
        day = conn.dialect.day("bucket")
        rows = conn.all(
            f"SELECT {day} AS d, model, api_key, {BILLED}, {sums}, sum(fee_usd), "
            f"sum(estimated_tokens) FROM usage_rollup WHERE bucket >= ? AND bucket < ? AND "
            f"service IN ({places}) GROUP BY {day}, model, api_key",
            [*UNTOKENED * len(OURS), day_start(first), day_start(last) + DAY, *services])
    return [Figures(d, model, key, int(n), *(int(t or 0) for t in tokens), fee or 0.0,
                    int(estimated or 0))
            for d, model, key, n, *tokens, fee, estimated in rows]


def fetch_summary(db: Database, backfill: dict[str, int], today: dt.date,
                  wait: float | None = None) -> dict[str, tuple[float | None, int]]:
    """Per account of `backfill` (its backfill_days): its last good fetch's time, and the
    days its job still fetches (the last backfill_days before `today`) whose last fetch
    failed."""
    firsts = {a: (today - dt.timedelta(days=days)).isoformat() for a, days in backfill.items()}
    out: dict[str, tuple[float | None, int]] = {a: (None, 0) for a in firsts}
    with db.connect(wait=wait) as conn:
        for account, day, status, at in conn.all(
                "SELECT account, day, status, fetched_at FROM provider_fetches"):
            if account not in out:
                continue
            good, failed = out[account]
            if status == "ok":
                good = at if good is None else max(good, at)
            elif day >= firsts[account]:
                failed += 1
            out[account] = (good, failed)
    return out


def save_account(db: Database, account: str, provider: str, services: tuple[str, ...]) -> None:
    """Note whose traffic an account pays for, for those that read without the config."""
    with db.connect(write=True) as conn, conn.transaction():
        conn.execute("INSERT INTO provider_accounts (account, provider, services) VALUES "
                     "(?, ?, ?) ON CONFLICT (account) DO UPDATE SET provider = "
                     "excluded.provider, services = excluded.services",
                     [account, provider, ",".join(services)])


def daily_fees(db: Database, first: str, last: str) -> list[tuple[str, str, str, float, float]]:
    """Per account and UTC day first..last fetched from the provider, with a fee on either
    side: (account, provider, day, our fee, their billed cost)."""
    with db.connect() as conn:
        accounts = conn.all("SELECT account, provider, services FROM provider_accounts "
                            "ORDER BY account")
    out = []
    for account, provider, services in accounts:
        fetched = fetched_days(db, account, first, last)
        mine: dict[str, float] = {}
        for f in ours(db, tuple(services.split(",")), first, last):
            if f.day in fetched:
                mine[f.day] = mine.get(f.day, 0.0) + (f.fee_usd or 0.0)
        billed: dict[str, float] = {}
        for (day, _), usd in theirs(db, account, first, last)[1].items():
            billed[day] = billed.get(day, 0.0) + usd
        out += [(account, provider, day, mine.get(day, 0.0), billed.get(day, 0.0))
                for day in sorted(set(mine) | set(billed))]
    return out
