"""The history database: its tables and migrations, a record as a row, opening it."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from zoneinfo import ZoneInfo

import sqlite_utils
from sqlite_utils import Migrations

from ..record import TOKEN_FIELDS, RequestRecord
from .zones import local_time_sql, offset_segments

migrations = Migrations("llm_usage_exporter")
TOKEN_COLUMNS = TOKEN_FIELDS  # one column per token category of Usage
MAX_ERROR_CHARS = 500
UTC_ZONE = ZoneInfo("UTC")


@migrations()
def m001_requests(db: sqlite_utils.Database) -> None:
    columns = {"request_id": str, "started_at": float, "service": str, "provider": str,
               "model": str, "api_key": str, "operation": str, "stream": int, "status": int,
               "error_type": str, "error_message": str,
               **{c: int for c in TOKEN_COLUMNS},
               "estimated_input": int, "estimated_output": int, "fee_usd": float,
               "unpriced": int, "service_tier": str, "ttft_ms": float, "duration_ms": float,
               "overhead_ms": float, "upstream_request_id": str}
    db["requests"].create(columns)
    # Every query filters on a time range, most also on a key or a model.
    db["requests"].create_index(["started_at"])
    db["requests"].create_index(["api_key", "started_at"])
    db["requests"].create_index(["model", "started_at"])


@migrations()
def m002_spend_daily(db: sqlite_utils.Database) -> None:
    # llm_spend_usd is read at every scrape: summing a month of requests took 0.6 s at a
    # million rows, so the writer keeps fees per key and local calendar day instead.
    db["spend_daily"].create({"api_key": str, "day": str, "fee_usd": float},
                             pk=("api_key", "day"))
    db["meta"].create({"key": str, "value": str}, pk="key")


@migrations()
def m003_request_id(db: sqlite_utils.Database) -> None:
    # One request by its id, as an exemplar's link asks: without the index, a scan of the
    # whole retention period.
    db["requests"].create_index(["request_id"])


@migrations()
def m004_tool_calls(db: sqlite_utils.Database) -> None:
    # Server-side tools billed per call (web search): their fee is in fee_usd.
    db["requests"].add_column("web_search_calls", int, not_null_default=0)


@migrations()
def m005_billed_units(db: sqlite_utils.Database) -> None:
    # Billed by the second of audio (whisper-1) or the character of text (tts-1).
    db["requests"].add_column("audio_seconds", float, not_null_default=0)
    db["requests"].add_column("input_characters", int, not_null_default=0)


@migrations()
def m006_jobs(db: sqlite_utils.Database) -> None:
    # Batches and background responses (gateway/jobs.py): who created each, which file
    # holds a batch's output, when it was metered, so a restart meters nothing twice.
    db["jobs"].create({"job_id": str, "api_key": str, "created_at": float,
                       "output_file_id": str, "metered_at": float}, pk="job_id")


def row(r: RequestRecord) -> tuple:
    """Flatten a record into the column order of INSERT_SQL; no prompt or completion text."""
    u = r.usage
    return (r.request_id, r.started, r.service, r.provider, r.model, r.api_key, r.operation,
            int(r.stream), r.code, r.error_type, r.error_message[:MAX_ERROR_CHARS] or None,
            *(getattr(u, c) for c in TOKEN_COLUMNS), u.estimated_input, u.estimated_output,
            float(r.fee), int(r.unpriced), r.service_tier,
            None if r.ttft is None else r.ttft * 1000, r.duration * 1000, r.overhead * 1000,
            r.upstream_request_id or None, u.web_search_calls, u.audio_seconds,
            u.input_characters, _fees(r.fees), int(r.share))


def _fees(fees) -> str | None:
    """A record's fees as {"direction_type": usd} JSON; None when there are none."""
    if not fees:
        return None
    by = {}
    for direction, token_type, usd in fees:
        key = f"{direction}_{token_type}"
        by[key] = by.get(key, 0.0) + float(usd)
    return json.dumps(by, separators=(",", ":"))


COLUMNS = ("request_id", "started_at", "service", "provider", "model", "api_key", "operation",
           "stream", "status", "error_type", "error_message", *TOKEN_COLUMNS,
           "estimated_input", "estimated_output", "fee_usd", "unpriced", "service_tier",
           "ttft_ms", "duration_ms", "overhead_ms", "upstream_request_id", "web_search_calls",
           "audio_seconds", "input_characters", "fees", "share")
INSERT_SQL = (f"INSERT INTO requests ({', '.join(COLUMNS)}) "
              f"VALUES ({', '.join('?' * len(COLUMNS))})")


@migrations()
def m007_deployment_uptime(db: sqlite_utils.Database) -> None:
    # Each run of a deployment's uptime, from the first probe that found it up to the last
    # so far: a restart starts a new run, so no second is counted twice, and a range's
    # duration, GPU hours and cost are its overlap with the runs, in any time zone.
    db["deployment_uptime"].create({"deployment": str, "started_at": float,
                                    "ended_at": float, "gpus": int, "gpu_hourly_usd": float,
                                    "model": str, "type": str}, pk=("deployment", "started_at"))
    db["deployment_uptime"].create_index(["ended_at"])


@migrations()
def m008_job_states(db: sqlite_utils.Database) -> None:
    # The states a fine-tuning job was seen to reach, comma-separated: each counted once.
    db["jobs"].add_column("states", str)


@migrations()
def m009_fees_by_category(db: sqlite_utils.Database) -> None:
    # Each request's fee by category, {"input_text": 0.0012, ...} (JSON): the cost report
    # sums them with json_each. Rows written before have none (NULL).
    db["requests"].add_column("fees", str)


@migrations()
def m010_share(db: sqlite_utils.Database) -> None:
    # A row that is no request of its own (a batch's further model, a fine-tuning job's
    # training): counted for its tokens and fee, not as a request. Earlier ones, by the id
    # the gateway gave them.
    db["requests"].add_column("share", int, not_null_default=0)
    db.execute("UPDATE requests SET share = 1 WHERE operation IN ('batch', 'fine_tuning') "
               "AND (request_id GLOB '*#[0-9]*' OR request_id GLOB '*#training')")


@migrations()
def m011_reports_sent(db: sqlite_utils.Database) -> None:
    # Each scheduled report's periods delivered: made once per period, across restarts.
    db["reports_sent"].create({"report": str, "period_start": float, "delivered_at": float},
                              pk=("report", "period_start"))


# The ledgers' events (gateway/jobs.py, deployments/), each an upsert of one column set.
LEDGER_SQL = {
    "create": "INSERT INTO jobs (job_id, api_key, created_at) VALUES (?, ?, ?) ON CONFLICT "
              "(job_id) DO UPDATE SET api_key = excluded.api_key, "
              "created_at = excluded.created_at",
    "output": "INSERT INTO jobs (job_id, output_file_id) VALUES (?, ?) ON CONFLICT (job_id) "
              "DO UPDATE SET output_file_id = excluded.output_file_id",
    "metered": "INSERT INTO jobs (job_id, metered_at) VALUES (?, ?) ON CONFLICT (job_id) "
               "DO UPDATE SET metered_at = excluded.metered_at",
    "states": "INSERT INTO jobs (job_id, states) VALUES (?, ?) ON CONFLICT (job_id) "
              "DO UPDATE SET states = excluded.states",
    "uptime": "INSERT INTO deployment_uptime (deployment, started_at, ended_at, gpus, "
              "gpu_hourly_usd, model, type) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT "
              "(deployment, started_at) DO UPDATE SET ended_at = excluded.ended_at",
}


def load_jobs(path: str, since: float) -> list[tuple]:
    """The ledger's rows newer than `since` (none without a database yet)."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(
                "SELECT job_id, api_key, created_at, output_file_id, metered_at, states "
                "FROM jobs "
                "WHERE coalesce(metered_at, created_at, ?) >= ?", [since, since]).fetchall()
    except sqlite3.Error:
        return []


class SharedLedger:
    """The jobs ledger in the database itself, for worker processes that share it: each
    claim is one statement that only one process can win. A few milliseconds of SQLite on
    the event loop, and only for the rare requests that read a job (a batch's results, a
    fine-tuning job's state), where an in-memory ledger per worker would bill twice."""

    def __init__(self, path: str):
        self.path = path

    def _update(self, job_id: str, sql: str, args: list) -> bool:
        """Run an UPDATE of the job's row (made if missing); True if it changed it."""
        with contextlib.closing(sqlite3.connect(self.path, timeout=5)) as conn, conn:
            conn.execute("INSERT INTO jobs (job_id) VALUES (?) ON CONFLICT (job_id) DO NOTHING",
                         [job_id])
            return conn.execute(sql, args).rowcount == 1

    def claim(self, job_id: str, at: float) -> bool:
        """True for the one process that marks the job metered."""
        return self._update(job_id, "UPDATE jobs SET metered_at = ? WHERE metered_at IS NULL "
                            "AND job_id = ?", [at, job_id])

    def reached(self, job_id: str, state: str) -> bool:
        """True for the one process that adds `state` to the states the job was seen in."""
        return self._update(
            job_id, "UPDATE jobs SET states = CASE WHEN coalesce(states, '') = '' THEN ?1 "
            "ELSE states || ',' || ?1 END WHERE instr(',' || coalesce(states, '') || ',', "
            "',' || ?1 || ',') = 0 AND job_id = ?2", [state, job_id])

    def creator(self, job_id: str) -> tuple[str, float] | None:
        with contextlib.closing(sqlite3.connect(self.path, timeout=5)) as conn:
            found = conn.execute("SELECT api_key, created_at FROM jobs WHERE job_id = ? AND "
                                 "api_key IS NOT NULL", [job_id]).fetchone()
        return tuple(found) if found else None


SPEND_SQL = ("INSERT INTO spend_daily (api_key, day, fee_usd) VALUES (?, ?, ?) "
             "ON CONFLICT (api_key, day) DO UPDATE SET fee_usd = fee_usd + excluded.fee_usd")


def migrate(path: str) -> None:
    """Bring an older history database's tables and columns up to date, and nothing else
    (not the zone of its spend rollup, which is its gateway's): for the commands that read
    it, run before the gateway was restarted on a newer release."""
    db = sqlite_utils.Database(path)
    try:
        migrations.apply(db)
    finally:
        db.conn.close()


def open_db(path: str, tz: ZoneInfo = UTC_ZONE) -> sqlite_utils.Database:
    """Open the history database, in WAL mode, migrated, its spend rollup in zone `tz`."""
    db = sqlite_utils.Database(path)
    db.enable_wal()
    # WAL with synchronous=NORMAL survives a crash of the process; only a power loss can
    # lose the last commits. FULL fsyncs every commit, which doubled the gateway's CPU.
    db.execute("PRAGMA synchronous=NORMAL")
    migrations.apply(db)
    stored = db.execute("SELECT value FROM meta WHERE key = 'timezone'").fetchone()
    if stored is None or stored[0] != tz.key:
        rebuild_spend(db, tz)
    return db


def rebuild_spend(db: sqlite_utils.Database, tz: ZoneInfo) -> None:
    """Recompute the spend rollup in zone `tz` from every stored request."""
    low, high = db.execute("SELECT min(started_at), max(started_at) FROM requests").fetchone()
    with db.conn:
        db.execute("DELETE FROM spend_daily")
        if low is not None:
            local, args = local_time_sql(offset_segments(tz, low, high + 1))
            db.execute(f"INSERT INTO spend_daily (api_key, day, fee_usd) SELECT api_key, "
                       f"date({local}, 'unixepoch'), sum(fee_usd) FROM requests "
                       f"GROUP BY 1, 2", args)
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('timezone', ?)",
                   [tz.key])


