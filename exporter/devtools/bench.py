"""`llm-usage-exporter bench`: the gateway against the upstream hit directly, in one run.

The simulated upstream (zero delays) and the gateway (fees and history on, as in
production) run in processes of their own, so the gateway's CPU time is read exactly from
/proc. Direct and gateway runs alternate, several times; the medians are reported.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal

from .. import __version__
from .load import Run, client_run, wrk_run

SCENARIOS = (("non-streaming", False, 1), ("non-streaming", False, 32),
             ("non-streaming", False, 128), ("streaming, 50 chunks", True, 1),
             ("streaming, 50 chunks", True, 32))
# With two cores or more, the gateway gets core 0 to itself and the upstream and the load
# generator share core 1: measured unpinned on 2 cores, four busy processes contending
# inflated the gateway's CPU per request by a third.
CAN_PIN = len(os.sched_getaffinity(0)) >= 2
GATEWAY_CORE, OTHER_CORE = {0}, {1}


SIMULATOR = ("import sys; from aiohttp import web; "
             "from exporter.devtools.simulator import Simulator; "
             "web.run_app(Simulator(first_token_delay=0, token_delay=0, error_rate=0, "
             "output_tokens=50, seed=1).app(), host='127.0.0.1', port=int(sys.argv[1]), "
             "access_log=None, print=None)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stat(pid: int) -> list[str]:
    return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()


def family(pid: int) -> list[int]:
    """A gateway process and, with --workers, its worker processes."""
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(_stat(int(entry))[1]) == pid:
                    pids.append(int(entry))
            except (OSError, IndexError):
                continue
    return pids


def cpu_seconds(pid: int) -> float:
    """CPU time of a gateway and its workers."""
    total = 0
    for p in family(pid):
        fields = _stat(p)
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int, field: str = "VmHWM") -> float:
    """Memory summed over a gateway's processes: peak resident (VmHWM), or resident now
    (VmRSS)."""
    total = 0
    for p in family(pid):
        for line in open(f"/proc/{p}/status"):
            if line.startswith(field):
                total += int(line.split()[1])
    return total / 1024


def recorded_means(metrics_url: str) -> tuple[float, float, float, float]:
    """Sum and count of the gateway's recorded durations and TTFTs, from its /metrics."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    totals = dict.fromkeys(("llm_request_duration_seconds_sum",
                            "llm_request_duration_seconds_count",
                            "llm_time_to_first_token_seconds_sum",
                            "llm_time_to_first_token_seconds_count"), 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
    return tuple(totals.values())


class Bench:
    def __init__(self, duration: float, repetitions: int, use_wrk: bool = True,
                 workers: int = 1, pinned: bool = True):
        self.pinned = CAN_PIN and pinned
        self.duration, self.repetitions, self.workers = duration, repetitions, workers
        self.wrk = shutil.which("wrk") if use_wrk else None
        self.tmp = tempfile.mkdtemp(prefix="llm-usage-bench-")
        self.procs: list[subprocess.Popen] = []

    def pin(self, cores: set[int]):
        return (lambda: os.sched_setaffinity(0, cores)) if self.pinned else None

    def start(self) -> tuple[str, str, int, str]:
        upstream, listen, admin = free_port(), free_port(), free_port()
        self.procs.append(subprocess.Popen([sys.executable, "-c", SIMULATOR, str(upstream)],
                                           preexec_fn=self.pin(OTHER_CORE)))
        config = os.path.join(self.tmp, "config.yaml")
        with open(config, "w") as f:
            json.dump({"listen": f"127.0.0.1:{listen}", "admin_listen": f"127.0.0.1:{admin}",
                       "log_level": "warning", "workers": self.workers,
                       "history": {"path": os.path.join(self.tmp, "history.db")},
                       "services": [{"name": "openai", "base_url": f"http://127.0.0.1:{upstream}",
                                     "provider": "openai"}]}, f)
        gateway = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--config",
                                    config], preexec_fn=self.pin(GATEWAY_CORE))
        self.procs.append(gateway)
        for port in (upstream, listen, admin):
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"port {port} never opened") from None
                    time.sleep(0.05)  # waiting for a process this command started
        path = "/v1/chat/completions"
        return (f"http://127.0.0.1:{upstream}{path}", f"http://127.0.0.1:{listen}{path}",
                gateway.pid, f"http://127.0.0.1:{admin}/metrics")

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def measure(self, url: str, stream: bool, concurrency: int) -> Run:
        if self.wrk and not stream:
            return wrk_run(self.wrk, url, concurrency, self.duration, self.pin(OTHER_CORE))
        if self.pinned:
            os.sched_setaffinity(0, OTHER_CORE)
        return asyncio.run(client_run(url, stream, concurrency, self.duration))

    def run(self, out=print) -> list[dict]:
        direct_url, gateway_url, pid, metrics_url = self.start()
        results = []
        try:
            self.measure(gateway_url, False, 8)  # warm up connections and caches
            for name, stream, concurrency in SCENARIOS:
                direct, through, cpu, accuracy = [], [], [], []
                for _ in range(self.repetitions):
                    direct.append(self.measure(direct_url, stream, concurrency))
                    before, seen = cpu_seconds(pid), recorded_means(metrics_url)
                    run = self.measure(gateway_url, stream, concurrency)
                    cpu.append((cpu_seconds(pid) - before) * 1000 / run.requests)
                    if concurrency == 1:  # what the gateway recorded against what we saw
                        d_sum, d_n, t_sum, t_n = (b - a for a, b in zip(
                            seen, recorded_means(metrics_url)))
                        accuracy.append((d_sum / d_n - run.mean,
                                         t_sum / t_n - run.ttft_mean if stream else None))
                    through.append(run)
                results.append(summarise(name, stream, concurrency, direct, through, cpu,
                                         accuracy))
                out(format_row(results[-1]))
            results.append({"peak_rss_mb": memory_mb(pid)})
            out(f"gateway peak RSS: {memory_mb(pid):.0f} MB")
            series, ms = metrics_render()
            results.append({"metrics_series": series, "metrics_render_ms": ms})
            out(f"/metrics render with {series:,} series (40 models x 25 keys): {ms:.0f} ms")
            with_exemplars, without = observe_cost()
            results.append({"observe_us": with_exemplars,
                            "exemplars_us": with_exemplars - without})
            out(f"metrics per streamed request: {with_exemplars:.2f} us of CPU, of which "
                f"{with_exemplars - without:.2f} us for its two exemplars")
        finally:
            self.stop()
        return results


def metrics_render(models: int = 40, keys: int = 25) -> tuple[int, float]:
    """Render /metrics after every model was used with every key, streamed and not:
    return the series and the best of five renders in ms of CPU."""
    from prometheus_client import CollectorRegistry

    from ..record import RequestRecord, Usage
    from ..telemetry.exposition import render
    from ..telemetry.metrics import Metrics
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_models=models, max_api_keys=keys)
    for m in range(models):
        for k in range(keys):
            for stream in (False, True):
                r = RequestRecord("bench", 0.0, "openai", "openai", f"key-{k:08x}", "chat",
                                  stream=stream, model=f"model-{m}", code=200, duration=0.8,
                                  overhead=0.0003, ttft=0.2 if stream else None,
                                  usage=Usage(input_text=900, input_cache_read=100,
                                              output_text=40, output_reasoning=10))
                r.fees = [(d, t, Decimal("0.0001")) for d, t, _ in r.usage.categories()]
                metrics.observe(r)
    times = []
    for _ in range(5):
        t = time.process_time()
        body = render(registry)
        times.append(time.process_time() - t)
    series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return series, min(times) * 1000


def observe_cost(n: int = 50_000) -> tuple[float, float]:
    """CPU of Metrics.observe for one streamed request, in us: with its two exemplars
    (duration and TTFT), and without (an id too long to be one). Best of three each."""
    from prometheus_client import CollectorRegistry

    from ..record import RequestRecord, Usage
    from ..telemetry.metrics import MAX_EXEMPLAR_ID, Metrics
    best = {}
    for rid in ("f" * 32, "f" * (MAX_EXEMPLAR_ID + 1)) * 3:
        metrics = Metrics(CollectorRegistry())
        r = RequestRecord(rid, 0.0, "openai", "openai", "key", "chat", stream=True,
                          model="m", code=200, duration=0.8, overhead=0.0003, ttft=0.2,
                          usage=Usage(input_text=900, output_text=40))
        t = time.process_time()
        for _ in range(n):
            metrics.observe(r)
        us = (time.process_time() - t) / n * 1e6
        best[len(rid)] = min(best.get(len(rid), us), us)
    return best[32], best[MAX_EXEMPLAR_ID + 1]


def summarise(name, stream, concurrency, direct, through, cpu, accuracy) -> dict:
    med = statistics.median
    row = {"scenario": f"{name}, concurrency {concurrency}", "stream": stream,
           "direct_rps": med(r.rps for r in direct), "gateway_rps": med(r.rps for r in through),
           "direct_p50_ms": med(r.p50 for r in direct) * 1000,
           "gateway_p50_ms": med(r.p50 for r in through) * 1000,
           "direct_p99_ms": med(r.p99 for r in direct) * 1000,
           "gateway_p99_ms": med(r.p99 for r in through) * 1000,
           "cpu_ms_per_request": med(cpu)}
    if stream:
        row["direct_ttft_p50_ms"] = med(r.ttft_p50 for r in direct) * 1000
        row["gateway_ttft_p50_ms"] = med(r.ttft_p50 for r in through) * 1000
    if accuracy:  # recorded minus observed, mean per request
        row["recorded_minus_client_duration_ms"] = med(a for a, _ in accuracy) * 1000
        if stream:
            row["recorded_minus_client_ttft_ms"] = med(t for _, t in accuracy) * 1000
    return row


def format_row(r: dict) -> str:
    text = (f"{r['scenario']}: {r['gateway_rps']:,.0f} req/s through the gateway, "
            f"{r['direct_rps']:,.0f} direct ({r['gateway_rps'] / r['direct_rps']:.2f}x); "
            f"p50 {r['gateway_p50_ms']:.2f} ms (+{r['gateway_p50_ms'] - r['direct_p50_ms']:.2f}), "
            f"p99 {r['gateway_p99_ms']:.2f} ms (+{r['gateway_p99_ms'] - r['direct_p99_ms']:.2f})")
    if r["stream"]:
        text += (f"; TTFT p50 {r['gateway_ttft_p50_ms']:.2f} ms "
                 f"(+{r['gateway_ttft_p50_ms'] - r['direct_ttft_p50_ms']:.2f})")
    text += f"; gateway CPU {r['cpu_ms_per_request']:.3f} ms/request"
    if "recorded_minus_client_duration_ms" in r:
        text += (f"; recorded minus observed: duration "
                 f"{r['recorded_minus_client_duration_ms']:+.3f} ms")
        if r["stream"]:
            text += f", TTFT {r['recorded_minus_client_ttft_ms']:+.3f} ms"
    return text


def main(duration: float, repetitions: int, use_wrk: bool, json_out: str | None,
         workers: int = 1, pinned: bool = True) -> int:
    bench = Bench(duration, repetitions, use_wrk, workers, pinned)
    print(f"llm-usage-exporter {__version__} bench: {repetitions} x {duration:g} s per target "
          f"and scenario, medians; load from "
          f"{'wrk (non-streaming) and ' if bench.wrk else ''}the built-in async client"
          f"{' (streams)' if bench.wrk else ''}; "
          f"{'gateway on core 0, upstream and load on core 1' if bench.pinned else 'unpinned'}; "
          f"{workers} gateway worker{'s' if workers > 1 else ''}",
          flush=True)
    results = bench.run(lambda line: print(line, flush=True))
    if json_out:
        with open(json_out, "w") as f:
            json.dump(results, f, indent=2)
    return 0
