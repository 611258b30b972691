"""What the writer writes, a batch in one transaction: the rows, their usage rollup, their
spend by key and day, their count and the ledgers' events; and what retention takes away,
hourly."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from .rollup import BUCKET, UPSERT_SQL, rollup
from .rows import Event, RequestRow
from .spend import ADD_ATTRIBUTED_SQL, ADD_SPEND_SQL, payers

BATCH_IDS_KEPT = 86400  # a batch's id outlives any commit that can go unanswered
ROWS_COUNTER = "UPDATE counters SET value = value + ? WHERE name = 'requests'"


def write_batch(conn, batch_id: str, rows: list[RequestRow], events: list[Event],
                tz: ZoneInfo, now: float) -> None:
    """Write a batch, or nothing if a batch of this id was written already (its commit went
    unanswered, and it was tried again)."""
    try:
        with conn.transaction():
            if not conn.changed("INSERT INTO batches (batch_id, written_at) VALUES (?, ?) "
                                "ON CONFLICT (batch_id) DO NOTHING", [batch_id, now]):
                return
            if rows:
                conn.dialect.ensure_partitions(conn, {int(r.started_at // 86400)
                                                      for r in rows})
                conn.dialect.insert_rows(conn, rows)
                conn.executemany(UPSERT_SQL, rollup(rows))
                by_key, attributed = spend_by_day(rows, tz)
                conn.executemany(ADD_SPEND_SQL, by_key)
                conn.executemany(ADD_ATTRIBUTED_SQL, attributed)
                conn.execute(ROWS_COUNTER, [len(rows)])
            for event in events:
                conn.execute(event.sql, event.args())
    except Exception:  # partitions made in a transaction rolled back are gone again
        conn.dialect.forget_partitions()
        raise


def spend_by_day(rows: list[RequestRow], tz: ZoneInfo) -> tuple[list[tuple], list[tuple]]:
    """Rows' fees summed by local calendar day: by key, (api_key, day, usd), and by project
    and end user, (kind, name, day, usd)."""
    totals: dict[tuple[str, str, str], float] = {}
    for r in rows:
        if r.fee_usd:
            day = datetime.fromtimestamp(r.started_at, tz).date().isoformat()
            for kind, name in payers(r.api_key, r.project, r.end_user):
                totals[kind, name, day] = totals.get((kind, name, day), 0.0) + r.fee_usd
    # In key order, as the rollup's: two replicas' batches then lock rows in one order.
    ordered = sorted(totals.items())
    return ([(name, day, usd) for (kind, name, day), usd in ordered if kind == "api_key"],
            [(*k, usd) for k, usd in ordered if k[0] != "api_key"])


def prune(conn, now: float, retention_days: float, tz: ZoneInfo) -> None:
    """Delete what is older than the retention, in one transaction (on PostgreSQL, after
    the old days' partitions are detached)."""
    # Whole quarter hours: the rollup and the rows it sums go together.
    cutoff = (now - retention_days * 86400) // BUCKET * BUCKET
    # The spend of the whole current month is kept, whatever the retention: the month's
    # spend and its budgets read it.
    month = datetime.fromtimestamp(now, tz).date().replace(day=1)
    oldest_day = min(datetime.fromtimestamp(cutoff, tz).date(), month).isoformat()
    conn.dialect.retire(conn, cutoff)
    with conn.transaction():
        removed, gone_before = conn.dialect.prune(conn, cutoff)
        if removed:
            conn.execute(ROWS_COUNTER, [-removed])
        conn.execute("DELETE FROM usage_rollup WHERE bucket < ?", [gone_before])
        conn.execute("DELETE FROM spend_daily WHERE day < ?", [oldest_day])
        conn.execute("DELETE FROM spend_attributed WHERE day < ?", [oldest_day])
        conn.execute("DELETE FROM jobs WHERE coalesce(metered_at, created_at, 0) < ?",
                     [cutoff])
        conn.execute("DELETE FROM deployment_uptime WHERE ended_at < ?", [cutoff])
        conn.execute("DELETE FROM batches WHERE written_at < ?", [now - BATCH_IDS_KEPT])
        # The providers' figures of UTC days whose requests are gone: nothing to compare.
        utc_day = datetime.fromtimestamp(cutoff, UTC).date().isoformat()
        for table in ("provider_usage", "provider_costs", "provider_fetches"):
            conn.execute(f"DELETE FROM {table} WHERE day < ?", [utc_day])
