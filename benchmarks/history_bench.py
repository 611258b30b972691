"""Measure the history: the writer's sustained rows/s, the usage API's queries, and the
exports' and reports' time and peak memory, on SQLite or on a PostgreSQL server.

    .venv/bin/python benchmarks/history_bench.py [--engine sqlite|postgresql] [--rows N]
        [--days D] [--no-exports] [--scale DAYS [--year]]

The rows are spread evenly over the last D days (default 1,000,000 over 30). On
postgresql, a throwaway server with fsync on (Debian's binaries, as the tests start them).
Each export and report runs in its own process, so its peak RSS is its own.

--scale DAYS loads DAYS days at a million requests a day instead (through the writer's own
batches, without its thread), and times the queries on them; with --year, the rollup of
the rest of a year is added too (those days' rows copied back in time: a year of rows
would not fit this machine's disk), so a year-long query reads a year of rollup.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry

from exporter.devtools.postgres import Server
from exporter.record import RequestRecord, Usage
from exporter.store.batches import write_batch
from exporter.store.database import Database
from exporter.store.query import Filters
from exporter.store.reads import request_rows, usage_rows
from exporter.store.rollup import KEY, SUMS
from exporter.store.rows import row
from exporter.store.usage import UsageQuery
from exporter.store.writer import History
from exporter.telemetry.background import HistoryMetrics

# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child forked from this
# process (which holds every row) would report this process's peak.
MEASURE = ("import sys; from exporter.cli.main import main; main(sys.argv[1:]); "
           "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))"
           ".split()[1], file=sys.stderr)")
MODELS = ("gpt-4o-mini", "gpt-4o", "o4-mini", "claude-sonnet-4-5", "claude-haiku-4-5")
QUEUE = 100_000


def record(i: int, start: float, step: float) -> RequestRecord:
    return RequestRecord(f"req-{i:09d}", start + i * step, "openai", "openai",
                         f"key-{i % 50:08x}", "chat", stream=i % 2 == 0,
                         model=MODELS[i % 5], code=200 if i % 20 else 429,
                         error_type="none" if i % 20 else "rate_limited",
                         usage=Usage(input_text=500 + i % 700, input_cache_read=i % 300,
                                     output_text=200 + i % 100),
                         fee=Decimal("0.000123"), ttft=0.4, duration=2.1, overhead=0.0003,
                         fees=[("input", "text", Decimal("0.0001")),
                               ("output", "text", Decimal("0.000023"))])


def write(db: Database, n: int, start: float, days: int) -> float:
    """Write n rows as fast as the writer takes them; return the rows per second. The
    records are made before the clock starts: making them took the GIL from the writer."""
    history = History(db, HistoryMetrics(CollectorRegistry()), queue_size=QUEUE)
    history.start()
    step = days * 86400 / n
    records = [record(i, start, step) for i in range(n)]
    t0 = time.perf_counter()

    def produce():  # a blocking put, so nothing is dropped: the writer sets the pace
        for r in records:
            history.queue.put((time.monotonic(), r))

    producer = threading.Thread(target=produce)
    producer.start()
    producer.join()
    history.close(timeout=7200)
    return n / (time.perf_counter() - t0)


def load(db: Database, days: int) -> float:
    """Load `days` days at a million requests a day; return the rows per second."""
    db.migrate()
    conn = db.dedicated()
    n, step = days * 1_000_000, 86400 / 1_000_000
    start = time.time() - days * 86400
    t0 = time.perf_counter()
    for first in range(0, n, 5000):
        rows = [row(record(i, start, step)) for i in range(first, first + 5000)]
        write_batch(conn, f"load-{first}", rows, [], ZoneInfo("UTC"), time.time())
    conn.close()
    return n / (time.perf_counter() - t0)


def year_of_rollup(db: Database, days: int) -> int:
    """Copy the loaded days' rollup back in time until it covers 365 days."""
    columns = ", ".join(KEY[1:] + SUMS)
    with db.connect(write=True) as conn, conn.transaction():
        for k in range(1, 365 // days + 1):
            conn.execute(f"INSERT INTO usage_rollup (bucket, {columns}) SELECT bucket - ?, "
                         f"{columns} FROM usage_rollup WHERE bucket >= ? "
                         "ON CONFLICT DO NOTHING",
                         [k * days * 86400, time.time() - days * 86400])
        return conn.one("SELECT count(*) FROM usage_rollup")[0]


def timed(work) -> float:
    """The median of three runs, in seconds."""
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        work()
        runs.append(time.perf_counter() - t0)
    return sorted(runs)[1]


def queries(db: Database, end: float, spans=(("day", 1), ("week", 7), ("30 days", 30))):
    """What the dashboards ask of the usage API, over a day, a week and a month."""
    utc = ZoneInfo("UTC")
    for label, days in spans:
        f = Filters(end - days * 86400, end, utc)
        asked = {
            "totals": UsageQuery(f),
            "per model and day": UsageQuery(f, ("model",), "day"),
            "top 10 keys by fee": UsageQuery(f, ("api_key",), order="fee", limit=10),
            "one key, per hour": UsageQuery(Filters(f.start, f.end, utc,
                                                    (("api_key", ("key-00000007",)),)),
                                            (), "hour"),
        }
        for name, q in asked.items():
            seconds = timed(lambda q=q: usage_rows(db, q).all())
            print(f"  /api/usage {name}, last {label}: {seconds * 1000:,.0f} ms")
        seconds = timed(lambda f=f: [b for b in request_rows(db, f, 100, None).batches()])
        print(f"  /api/requests first page of 100, last {label}: {seconds * 1000:,.0f} ms")


def exports(db: Database, tmp: str, start: float) -> None:
    runs = [(f"export {label}", ["export", *args]) for label, args in (
            ("requests CSV", ["--kind", "requests", "--format", "csv"]),
            ("requests XLSX", ["--kind", "requests", "--format", "xlsx"]),
            ("usage by model and day, XLSX", ["--group-by", "model,api_key", "--granularity",
                                             "day", "--format", "xlsx"]))]
    runs += [(f"report {kind} {fmt}", ["report", "--type", kind, "--format", fmt])
             for kind in ("summary", "cost", "trend", "detailed") for fmt in ("pdf", "xlsx")]
    # The default buckets a year by month; by day, the detailed report is the longest.
    runs += [(f"report detailed {fmt} by day", ["report", "--type", "detailed", "--format",
                                                fmt, "--granularity", "day"])
             for fmt in ("pdf", "xlsx")]
    for label, args in runs:
        out = os.path.join(tmp, "out")
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", MEASURE, *args[:1], "--db", db.target,
                               "--from", str(start - 1), "--to", str(time.time()), *args[1:],
                               "--output", out], check=True, capture_output=True, text=True)
        print(f"{label}: {time.perf_counter() - t0:.1f} s, "
              f"{os.path.getsize(out) / 2**20:.0f} MiB file, peak RSS "
              f"{int(done.stderr.split()[-1]) / 1024:.0f} MiB")  # VmHWM is in kB
        os.unlink(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--no-exports", action="store_true")
    parser.add_argument("--scale", type=int, metavar="DAYS")
    parser.add_argument("--year", action="store_true")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    server = None
    if args.engine == "postgresql":
        server = Server(durable=True)  # fsync on, as a real server runs
        server.start()
        db = Database(server.create_database("bench"))
    else:
        db = Database(os.path.join(tmp, "bench.db"))
    try:
        if args.scale:
            rate = load(db, args.scale)
            print(f"{args.engine}: {args.scale} days at a million requests a day loaded at "
                  f"{rate:,.0f} rows/s")
            spans = [("day", 1), ("week", 7)]
            if args.year:
                print(f"  a year of rollup: {year_of_rollup(db, args.scale):,} rows")
                spans += [("30 days", 30), ("year", 365)]
            if db.postgresql:  # what autovacuum has done to a server that runs for days
                with db.connect(write=True) as conn:
                    conn.execute("VACUUM ANALYZE")
            queries(db, time.time(), spans)
            return
        end = time.time()
        start = end - args.days * 86400
        rate = write(db, args.rows, start, args.days)
        print(f"{args.engine} writer: {args.rows:,} rows over {args.days} days at "
              f"{rate:,.0f} rows/s")
        queries(db, end)
        if not args.no_exports:
            exports(db, tmp, start)
    finally:
        db.close()
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
