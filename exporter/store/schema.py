"""The history's tables, and the migrations that bring either engine's up to date.

SQLite's history has grown by sqlite-utils migrations since the first release, and an old
file is brought up to date by them; a PostgreSQL history starts at today's tables. A change
of the tables from here on is one migration for each engine.
"""

from __future__ import annotations

import sqlite_utils
from sqlite_utils import Migrations

from ..record import TOKEN_FIELDS
from .provider_tables import PROVIDER_TABLES, PROVIDER_TABLES_SQL
from .rollup import FIRST_KEY, KEY, SUMS, backfill_sql

migrations = Migrations("llm_usage_exporter")
# Asks Database.migrate to make the projects' and users' spend from the requests.
REBUILD_ATTRIBUTED = ("INSERT INTO meta (key, value) VALUES ('rebuild', 'spend_attributed') "
                      "ON CONFLICT (key) DO NOTHING")
TOKEN_COLUMNS = TOKEN_FIELDS  # one column per token category of Usage


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


@migrations()
def m012_fleet(db: sqlite_utils.Database) -> None:
    # A lease per job that one process of a fleet runs (the prober, the report schedule);
    # each batch written, so a batch retried after an unanswered commit is not written
    # twice; the rows held, kept by the writer (a count(*) per scrape grows with them);
    # a batch's output file found by any process.
    db["leases"].create({"name": str, "holder": str, "expires_at": float}, pk="name")
    db["batches"].create({"batch_id": str, "written_at": float}, pk="batch_id")
    db["batches"].create_index(["written_at"])
    db["counters"].create({"name": str, "value": int}, pk="name")
    db.execute("INSERT INTO counters (name, value) SELECT 'requests', count(*) FROM requests")
    db["jobs"].create_index(["output_file_id"])


@migrations()
def m013_usage_rollup(db: sqlite_utils.Database) -> None:
    # Usage per 15 minutes and labels (rollup.py): a month's dashboard reads its rollup,
    # not a month of requests.
    _rollup(db, FIRST_KEY)


@migrations()
def m014_attribution(db: sqlite_utils.Database) -> None:
    # Who a request is charged to besides its key (gateway/attribution.py); the rollup
    # made again with the project in its key.
    db["requests"].add_column("project", str, not_null_default="none")
    db["requests"].add_column("end_user", str)
    db["requests"].add_column("tags", str)
    db["requests"].create_index(["project", "started_at"])
    db["requests"].create_index(["end_user", "started_at"])
    db["usage_rollup"].drop()
    _rollup(db, KEY)


@migrations()
def m015_spend_attributed(db: sqlite_utils.Database) -> None:
    # Fees per project and end user and local calendar day, for their budgets; made from
    # the requests at the next start, in the gateway's zone (spend.rebuild_spend), the
    # keys' spend left as it is.
    db["spend_attributed"].create({"kind": str, "name": str, "day": str, "fee_usd": float},
                                  pk=("kind", "name", "day"))
    db.execute(REBUILD_ATTRIBUTED)


@migrations()
def m016_reconcile(db: sqlite_utils.Database) -> None:
    # The providers' own figures per UTC day (exporter/reconcile/), beside our requests.
    for table, (columns, pk) in PROVIDER_TABLES.items():
        db[table].create(columns, pk=pk)


def _rollup(db: sqlite_utils.Database, key: tuple[str, ...]) -> None:
    real = {"audio_seconds", "fee_usd", "duration_ms", "ttft_ms"}
    columns = {"bucket": float, **{c: str for c in key[1:]}, "status": int,
               **{c: float if c in real else int for c in SUMS}}
    db["usage_rollup"].create(columns, pk=key, not_null=set(SUMS),
                              defaults={c: 0 for c in SUMS})
    # No time before 1970: CAST is floor.
    db.execute(backfill_sql(lambda expr: f"CAST({expr} AS INTEGER)", key))


def migrate_sqlite(conn) -> None:
    """Bring a SQLite history's tables and columns up to date (WAL mode on)."""
    db = sqlite_utils.Database(conn)
    db.enable_wal()
    migrations.apply(db)


_TOKENS = ", ".join(f"{c} integer NOT NULL DEFAULT 0" for c in TOKEN_COLUMNS)


def _pg_floor(expr: str) -> str:
    return f"floor({expr})"


def _pg_rollup(key: tuple[str, ...]) -> str:
    # bigint: a quarter hour of one model and key can pass 2^31 tokens.
    labels = ", ".join(f"{c} integer" if c == "status" else f"{c} text" for c in key[1:])
    return f"""CREATE TABLE usage_rollup (
        bucket double precision, {labels},
        rows_n bigint NOT NULL DEFAULT 0, requests bigint NOT NULL DEFAULT 0,
        {", ".join(f"{c} bigint NOT NULL DEFAULT 0" for c in TOKEN_COLUMNS)},
        estimated_tokens bigint NOT NULL DEFAULT 0,
        web_search_calls bigint NOT NULL DEFAULT 0,
        audio_seconds double precision NOT NULL DEFAULT 0,
        input_characters bigint NOT NULL DEFAULT 0,
        fee_usd double precision NOT NULL DEFAULT 0,
        duration_ms double precision NOT NULL DEFAULT 0,
        ttft_ms double precision NOT NULL DEFAULT 0, ttft_n bigint NOT NULL DEFAULT 0,
        PRIMARY KEY ({", ".join(key)}))"""
# Token counts are integer: sum() of integer is bigint (a Python int), of bigint numeric.
POSTGRESQL_MIGRATIONS = (
    ("001_history", (
        "CREATE SEQUENCE requests_id_seq AS bigint",
        f"""CREATE TABLE requests (
            id bigint NOT NULL DEFAULT nextval('requests_id_seq'),
            request_id text, started_at double precision NOT NULL, service text,
            provider text, model text, api_key text, operation text, stream integer,
            status integer, error_type text, error_message text, {_TOKENS},
            estimated_input integer NOT NULL DEFAULT 0,
            estimated_output integer NOT NULL DEFAULT 0, fee_usd double precision,
            unpriced integer, service_tier text, ttft_ms double precision,
            duration_ms double precision, overhead_ms double precision,
            upstream_request_id text, web_search_calls integer NOT NULL DEFAULT 0,
            audio_seconds double precision NOT NULL DEFAULT 0,
            input_characters integer NOT NULL DEFAULT 0, fees text,
            share integer NOT NULL DEFAULT 0
        ) PARTITION BY RANGE (started_at)""",
        "CREATE INDEX ON requests (started_at)",
        "CREATE INDEX ON requests (api_key, started_at)",
        "CREATE INDEX ON requests (model, started_at)",
        "CREATE INDEX ON requests (request_id)",
        "CREATE TABLE spend_daily (api_key text, day text, fee_usd double precision, "
        "PRIMARY KEY (api_key, day))",
        "CREATE TABLE meta (key text PRIMARY KEY, value text)",
        "CREATE TABLE jobs (job_id text PRIMARY KEY, api_key text, "
        "created_at double precision, output_file_id text, metered_at double precision, "
        "states text)",
        "CREATE INDEX ON jobs (output_file_id)",
        "CREATE TABLE deployment_uptime (deployment text, started_at double precision, "
        "ended_at double precision, gpus integer, gpu_hourly_usd double precision, "
        "model text, type text, PRIMARY KEY (deployment, started_at))",
        "CREATE INDEX ON deployment_uptime (ended_at)",
        "CREATE TABLE reports_sent (report text, period_start double precision, "
        "delivered_at double precision, PRIMARY KEY (report, period_start))",
        "CREATE TABLE leases (name text PRIMARY KEY, holder text, "
        "expires_at double precision)",
        "CREATE TABLE batches (batch_id text PRIMARY KEY, written_at double precision)",
        "CREATE INDEX ON batches (written_at)",
        "CREATE TABLE counters (name text PRIMARY KEY, value bigint)",
        "INSERT INTO counters (name, value) VALUES ('requests', 0)",
    )),
    ("002_usage_rollup", (_pg_rollup(FIRST_KEY), backfill_sql(_pg_floor, FIRST_KEY))),
    ("003_attribution", (
        "ALTER TABLE requests ADD COLUMN project text NOT NULL DEFAULT 'none'",
        "ALTER TABLE requests ADD COLUMN end_user text",
        "ALTER TABLE requests ADD COLUMN tags text",
        "CREATE INDEX ON requests (project, started_at)",
        "CREATE INDEX ON requests (end_user, started_at)",
        "DROP TABLE usage_rollup",
        _pg_rollup(KEY), backfill_sql(_pg_floor, KEY),
    )),
    ("004_spend_attributed", (
        "CREATE TABLE spend_attributed (kind text, name text, day text, "
        "fee_usd double precision, PRIMARY KEY (kind, name, day))",
        REBUILD_ATTRIBUTED,
    )),
    ("005_reconcile", PROVIDER_TABLES_SQL),
)


def migrate_postgresql(conn) -> None:
    """Apply the migrations a PostgreSQL history has not had, each in a transaction."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, "
                 "applied_at timestamptz NOT NULL DEFAULT now())")
    applied = {name for (name,) in conn.execute("SELECT name FROM schema_migrations")}
    for name, statements in POSTGRESQL_MIGRATIONS:
        if name in applied:
            continue
        with conn.transaction():
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", [name])
