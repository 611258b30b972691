"""`llm-usage-exporter bench`: the gateway against the upstream hit directly and through
nginx, in one run.

The simulated upstream (zero delays), nginx as a plain reverse proxy (where installed) and
the gateway (fees and history on, as in production) run in processes of their own, so each
proxy's CPU time is read exactly from /proc. The targets alternate, several times; the
medians are reported.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal

from .. import __version__
from . import nginx
from .figures import format_row, summarise
from .load import Run, client_run, wrk_run
from .processes import cpu_seconds, family, free_port, memory_mb, wait_for_port

__all__ = ["Bench", "family", "main", "memory_mb"]  # family, memory_mb: for soak and tests

SCENARIOS = (("non-streaming", False, 1), ("non-streaming", False, 32),
             ("non-streaming", False, 128), ("streaming, 50 chunks", True, 1),
             ("streaming, 50 chunks", True, 32))
# With two cores or more, the gateway gets core 0 to itself and the upstream and the load
# generator share core 1: measured unpinned on 2 cores, four busy processes contending
# inflated the gateway's CPU per request by a third. nginx shares the gateway's core: only
# one of the two is loaded at a time.
CAN_PIN = len(os.sched_getaffinity(0)) >= 2
GATEWAY_CORE, OTHER_CORE = {0}, {1}


SIMULATOR = ("import sys; from aiohttp import web; "
             "from exporter.devtools.simulator import Simulator; "
             "web.run_app(Simulator(first_token_delay=0, token_delay=0, error_rate=0, "
             "output_tokens=50, seed=1).app(), host='127.0.0.1', port=int(sys.argv[1]), "
             "access_log=None, print=None)")
PATH = "/v1/chat/completions"


def recorded_means(metrics_url: str) -> tuple[float, float, float, float]:
    """Sum and count of the gateway's recorded durations and TTFTs, from its /metrics."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    totals = dict.fromkeys(("llm_request_duration_seconds_sum",
                            "llm_request_duration_seconds_count",
                            "llm_time_to_first_token_seconds_sum",
                            "llm_time_to_first_token_seconds_count"), 0.0)
    for metric in text_string_to_metric_families(text):
        for sample in metric.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
    return tuple(totals.values())


class Bench:
    def __init__(self, duration: float, repetitions: int, use_wrk: bool = True,
                 workers: int = 1, pinned: bool = True, use_nginx: bool = True):
        self.pinned = CAN_PIN and pinned
        self.duration, self.repetitions, self.workers = duration, repetitions, workers
        self.wrk = shutil.which("wrk") if use_wrk else None
        self.nginx = nginx.binary() if use_nginx else None
        self.tmp = tempfile.mkdtemp(prefix="llm-usage-bench-")
        self.procs: list[subprocess.Popen] = []
        self.upstream = 0  # the simulated upstream's port, once started

    def pin(self, cores: set[int]):
        return (lambda: os.sched_setaffinity(0, cores)) if self.pinned else None

    def start_upstream(self) -> str:
        """Start the simulated upstream: its URL."""
        self.upstream = free_port()
        simulator = subprocess.Popen([sys.executable, "-c", SIMULATOR, str(self.upstream)],
                                     preexec_fn=self.pin(OTHER_CORE))
        self.procs.append(simulator)
        wait_for_port(self.upstream, simulator)
        return f"http://127.0.0.1:{self.upstream}{PATH}"

    def start(self) -> tuple[str, str, int, str]:
        """Start the upstream and the gateway: their URLs, the gateway's pid, its /metrics."""
        direct = self.start_upstream()
        listen, admin = free_port(), free_port()
        config = os.path.join(self.tmp, "config.yaml")
        with open(config, "w") as f:
            json.dump({"listen": f"127.0.0.1:{listen}", "admin_listen": f"127.0.0.1:{admin}",
                       "log_level": "warning", "workers": self.workers,
                       "history": {"path": os.path.join(self.tmp, "history.db")},
                       "services": [{"name": "openai",
                                     "base_url": f"http://127.0.0.1:{self.upstream}",
                                     "provider": "openai"}]}, f)
        gateway = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--config",
                                    config], preexec_fn=self.pin(GATEWAY_CORE))
        self.procs.append(gateway)
        for port in (listen, admin):
            wait_for_port(port, gateway)
        return (direct, f"http://127.0.0.1:{listen}{PATH}", gateway.pid,
                f"http://127.0.0.1:{admin}/metrics")

    def start_nginx(self) -> tuple[str, int]:
        """Start nginx in front of the started upstream, on the gateway's core: URL, pid."""
        listen = free_port()
        proc = nginx.start(self.nginx, self.tmp, listen, self.upstream,
                           self.pin(GATEWAY_CORE))
        self.procs.append(proc)
        wait_for_port(listen, proc)
        return f"http://127.0.0.1:{listen}{PATH}", proc.pid

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

    def scenario(self, stream: bool, concurrency: int, urls: dict[str, str],
                 pids: dict[str, int], metrics_url: str) -> tuple[dict, dict, list]:
        """Load each target in turn, the turns repeated: runs and CPU per target, and what
        the gateway recorded against what the client saw (at concurrency 1)."""
        runs: dict[str, list[Run]] = {target: [] for target in urls}
        cpu: dict[str, list[float]] = {target: [] for target in pids}
        accuracy = []
        for _ in range(self.repetitions):
            for target, url in urls.items():
                pid = pids.get(target)
                # Read before the CPU is: the scrape's own CPU stays out of the figure.
                seen = (recorded_means(metrics_url) if target == "gateway" and concurrency == 1
                        else None)
                before = cpu_seconds(pid) if pid else 0.0
                run = self.measure(url, stream, concurrency)
                if pid:
                    cpu[target].append((cpu_seconds(pid) - before) * 1000 / run.requests)
                if seen:
                    d_sum, d_n, t_sum, t_n = (b - a for a, b in zip(
                        seen, recorded_means(metrics_url), strict=True))
                    accuracy.append((d_sum / d_n - run.mean,
                                     t_sum / t_n - run.ttft_mean if stream else None))
                runs[target].append(run)
        return runs, cpu, accuracy

    def run(self, out=print) -> list[dict]:
        direct_url, gateway_url, pid, metrics_url = self.start()
        urls, pids = {"direct": direct_url}, {"gateway": pid}
        results = []
        try:
            if self.nginx:
                urls["nginx"], pids["nginx"] = self.start_nginx()
            urls["gateway"] = gateway_url
            for target in pids:  # warm up the proxies' connections and caches
                self.measure(urls[target], False, 8)
            for name, stream, concurrency in SCENARIOS:
                runs, cpu, accuracy = self.scenario(stream, concurrency, urls, pids,
                                                    metrics_url)
                results.append(summarise(name, stream, concurrency, runs, cpu, accuracy))
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


def header(bench: Bench) -> str:
    """What the run compares and how, before its figures; a second line when nginx is
    missing."""
    cores = ("gateway and nginx on core 0, upstream and load on core 1" if bench.pinned
             else "unpinned")
    targets = (f"the upstream direct, through nginx {nginx.version(bench.nginx)} and through "
               "the gateway" if bench.nginx else "the upstream direct and through the gateway")
    text = (f"llm-usage-exporter {__version__} bench: {targets}, alternating, "
            f"{bench.repetitions} x {bench.duration:g} s each per scenario, medians; load from "
            f"{'wrk (non-streaming) and ' if bench.wrk else ''}the built-in async client"
            f"{' (streams)' if bench.wrk else ''}; "
            f"{cores}; "
            f"{bench.workers} gateway worker{'s' if bench.workers > 1 else ''}")
    if not bench.nginx:
        text += ("\nnginx is not installed (Debian: apt-get install nginx): running without "
                 "it, so nothing shows what a plain proxy costs")
    return text


def main(duration: float, repetitions: int, use_wrk: bool, json_out: str | None,
         workers: int = 1, pinned: bool = True) -> int:
    bench = Bench(duration, repetitions, use_wrk, workers, pinned)
    print(header(bench), flush=True)
    results = bench.run(lambda line: print(line, flush=True))
    if json_out:
        with open(json_out, "w") as f:
            json.dump(results, f, indent=2)
    return 0
