"""Measure the history writer's sustained rows/s, and the exports' and reports' time and
peak memory, on 1M rows.

    .venv/bin/python benchmarks/history_bench.py [ROWS [DAYS]]

The rows are spread over DAYS (default 30). Each export and report runs in its own process,
so its peak RSS (ru_maxrss) is its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal

from prometheus_client import CollectorRegistry

from exporter.history.store import row
from exporter.history.writer import History
from exporter.record import RequestRecord, Usage
from exporter.telemetry.metrics import HistoryMetrics

# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child forked from this
# process (which holds every row) would report this process's peak.
MEASURE = ("import sys; from exporter.cli.main import main; main(sys.argv[1:]); "
           "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))"
           ".split()[1], file=sys.stderr)")
MODELS = ("gpt-4o-mini", "gpt-4o", "o4-mini", "claude-sonnet-4-5", "claude-haiku-4-5")


def main(n: int, days: int = 30) -> None:
    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "bench.db")
    history = History(path, HistoryMetrics(CollectorRegistry()), retention_days=None)
    start = time.time() - days * 86400
    rows = [row(RequestRecord(f"req-{i:08d}", start + i * days * 86400 / n, "openai", "openai",
                              f"key-{i % 50:08x}", "chat", stream=i % 2 == 0,
                              model=MODELS[i % 5], code=200 if i % 20 else 429,
                              error_type="none" if i % 20 else "rate_limited",
                              usage=Usage(input_text=500 + i % 700, input_cache_read=i % 300,
                                          output_text=200 + i % 100),
                              fee=Decimal("0.000123"), ttft=0.4, duration=2.1, overhead=0.0003,
                              fees=[("input", "text", Decimal("0.0001")),
                                    ("output", "text", Decimal("0.000023"))]))
            for i in range(n)]
    history.start()
    t0 = time.perf_counter()

    def produce():  # as fast as the writer takes them: a blocking put, so nothing is dropped
        for r in rows:
            history.queue.put(r)

    producer = threading.Thread(target=produce)
    producer.start()
    producer.join()
    history.close(timeout=3600)
    elapsed = time.perf_counter() - t0
    print(f"writer: {n:,} rows in {elapsed:.1f} s = {n / elapsed:,.0f} rows/s "
          f"(database {os.path.getsize(path) / 2**20:.0f} MiB)")
    rows.clear()
    runs = [(f"export {label}", ["export", *args]) for label, args in (
            ("requests CSV", ["--kind", "requests", "--format", "csv"]),
            ("requests XLSX", ["--kind", "requests", "--format", "xlsx"]),
            ("usage by model and day, XLSX", ["--group-by", "model,api_key", "--granularity",
                                             "day", "--format", "xlsx"]))]
    runs += [(f"report {kind} {fmt}", ["report", "--type", kind, "--format", fmt])
             for kind in ("summary", "cost", "trend", "detailed") for fmt in ("pdf", "xlsx")]
    for label, args in runs:
        out = os.path.join(tmp, "out")
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", MEASURE, *args[:1], "--db", path, "--from",
                               str(start - 1), "--to", str(time.time()), *args[1:],
                               "--output", out], check=True, capture_output=True, text=True)
        print(f"{label}: {time.perf_counter() - t0:.1f} s, "
              f"{os.path.getsize(out) / 2**20:.0f} MiB file, peak RSS "
              f"{int(done.stderr.split()[-1]) / 1024:.0f} MiB")  # VmHWM is in kB
        os.unlink(out)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000,
         int(sys.argv[2]) if len(sys.argv) > 2 else 30)
