"""The gateway's two listeners, and the server runner.

Client traffic on `listen`, /metrics, /healthz and /api/* on `admin_listen`, so the metrics
port is never exposed where client traffic arrives. Both are served by the gateway's own
HTTP server (wire/server.py), not aiohttp's: on the proxy path that took the CPU per request
from 0.73 ms to about 0.3 ms, and without aiohttp.web a gateway process holds 11 MB less.
Listener plays the part of aiohttp's runner and cleanup_ctx.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import signal
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry

from . import __version__
from .accounting.pricing import pricing_for
from .accounting.table import TableError
from .api.usage import UsageApi
from .config.schema import ConfigError
from .config.table import Config
from .deployments.probe import Deployments
from .gateway.finish import Sink
from .gateway.jobs import Jobs
from .gateway.proxy import Proxy
from .reconcile.job import Reconciler
from .reconcile.keys import tails
from .reports.deliver import Deliverer
from .reports.make import render_apart
from .reports.schedule import Scheduler
from .store.collector import HistoryCollector
from .store.database import Database
from .store.ledger import JobLedger
from .store.reconcile_collector import ReconcileCollector
from .store.singleton import Singleton
from .store.upkeep import Upkeep
from .store.writer import History
from .telemetry.admin import Admin
from .telemetry.background import (
    DeploymentMetrics,
    HistoryMetrics,
    ReconcileMetrics,
    ReportMetrics,
)
from .telemetry.exemplars import WorkersCollector, worker_exemplars
from .telemetry.metrics import Metrics
from .telemetry.scrapes import Scrapes
from .wire.server import Server

log = logging.getLogger(__name__)


def create_proxy(config: Config, *, registry: CollectorRegistry, history: History | None = None,
                 env=os.environ, probe: bool = True) -> ProxyListener:
    """Build the proxy listener: its server, upstream connections and history writer, and
    what one process of a fleet runs at a time: the history's upkeep, the deployments'
    prober, the scheduled reports and the reconciliation's fetches (each under a lease in
    the history; without one, where `probe` says)."""
    metrics = Metrics(registry, max_models=config.limits.max_models,
                      max_api_keys=config.limits.max_api_keys,
                      api_key_names=[k.name for k in config.api_keys],
                      max_projects=config.limits.max_projects,
                      projects=[*config.attribution.projects,
                                *(k.project for k in config.api_keys if k.project)],
                      tag_labels=config.attribution.tag_labels,
                      max_label_sets=config.limits.max_label_sets,
                      exemplars=worker_exemplars(env),
                      scrapes=Scrapes(env.get("PROMETHEUS_MULTIPROC_DIR")))
    sinks: list[Sink] = []
    jobs = []
    if history is not None:
        sinks.append(history.put)
        jobs.append(("upkeep", Upkeep(history.db, config.history.retention_days,
                                      ZoneInfo(config.timezone))))
    if config.deployments:
        # Their costs per token at the prices the proxy holds now (SIGHUP replaces them).
        deployments = Deployments(config.deployments, DeploymentMetrics(registry),
                                  persist=history.put_event if history is not None else None,
                                  pricing=lambda: proxy.pricing)
        sinks.append(deployments.observe)
        jobs.append(("deployments", deployments))
    # Batches and background responses: with a history, shared by every process and kept
    # across restarts, so each is metered once, wherever its results pass.
    ledger = Jobs(counts=metrics) if history is None else \
        Jobs(history.put_event, JobLedger(history.db), counts=metrics)
    proxy = Proxy(config, metrics, env, spend=history.spend if history is not None else None,
                  sinks=sinks, jobs=ledger)
    if config.reports and history is not None:
        jobs.append(("reports", Scheduler(config.reports, history.db, render_apart,
                                          Deliverer(config.smtp, env),
                                          ReportMetrics(registry).reports, config.timezone)))
    if config.reconcile and history is not None:
        jobs.append(("reconcile", Reconciler(config.reconcile, history.db,
                                             ReconcileMetrics(registry).failures, env,
                                             tails=tails(config.api_keys, env))))
    background = [Singleton(history.db, name, job) for name, job in jobs] \
        if history is not None else [job for _, job in jobs if probe]
    return ProxyListener(proxy, history, config.limits, background)


class Listener:
    """A port served by the gateway's HTTP server, started and stopped like an aiohttp runner."""

    def __init__(self, handler, **limits):
        self.server = Server(handler, **limits)
        self.port: int | None = None

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        self.port = await self.server.listen(host, port, reuse_port=reuse_port)
        return self.port

    async def cleanup(self, timeout: float = 30) -> None:
        """Finish in-flight requests, up to `timeout` seconds."""
        await self.server.shutdown(timeout)


class ProxyListener(Listener):
    """Client traffic, with the upstream connections and the history writer it owns."""

    def __init__(self, proxy: Proxy, history: History | None, limits, background=()):
        super().__init__(proxy.handle, head_timeout=limits.head_timeout_seconds,
                         body_timeout=limits.body_timeout_seconds,
                         max_connections=limits.max_connections,
                         refused=proxy.metrics.refused.inc)
        self.proxy, self.history = proxy, history
        self.background = list(background)  # each has an async run() until cancelled
        self.tasks: list[asyncio.Task] = []

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        if self.history is not None:  # it may wait for another replica's migration
            await asyncio.to_thread(self.history.start)
        port = await super().start(host, port, reuse_port=reuse_port)
        self.tasks = [asyncio.create_task(job.run()) for job in self.background]
        self.tasks.append(asyncio.create_task(self.proxy.metrics.holds.releasing()))
        return port

    async def cleanup(self, timeout: float = 30) -> None:
        """Stop probing and the report schedule, finish in-flight requests (up to `timeout`
        s), flush the history."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await super().cleanup(timeout)
        self.proxy.metrics.holds.release(math.inf)  # the last counts: no scrape may come
        self.proxy.pool.close()
        if self.history is not None:
            await asyncio.to_thread(self.history.close)


def create_admin(registry: CollectorRegistry, *, db: Database | None = None,
                 token: str | None = None, scrapes: Scrapes | None = None) -> Listener:
    """Build the admin listener: /metrics, /healthz and, with a history, /api/*;
    `scrapes`: where the scrapes it answers are noted (the proxy's metrics read it)."""
    routes = UsageApi(db).routes() if db is not None else None
    return Listener(Admin(registry, routes=routes, token=token, scrapes=scrapes).handle)


def split_hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def history_for(config: Config, registry: CollectorRegistry,
                exposition: CollectorRegistry | None = None, env=os.environ,
                ) -> tuple[History, HistoryCollector] | tuple[None, None]:
    """Build the history the config asks for, and its scrape-time metrics (told of the
    budgets again on SIGHUP); the app starts and closes the history's writer."""
    metrics = HistoryMetrics(registry)
    if not config.history.enabled:
        return None, None
    db = Database.of(config.history, env, pooled=True)
    history = History(db, metrics, queue_size=config.history.queue_size,
                      tz=ZoneInfo(config.timezone))
    collector = HistoryCollector(exposition or registry, db, ZoneInfo(config.timezone),
                                 config.budgets, max_keys=config.limits.max_api_keys,
                                 writer=history)
    if config.reconcile:  # the providers' figures beside ours, from the history
        ReconcileCollector(exposition or registry, db, config.reconcile)
    return history, collector


async def start(config: Config, registry: CollectorRegistry, *, history: History | None = None,
                exposition: CollectorRegistry | None = None, reuse_port: bool = False,
                env=os.environ):
    """Start both listeners; return the runners to clean up.

    `registry` holds the metric objects; `exposition`, when given, is what /metrics renders
    (in a worker process: every worker's metrics, read from their shared files).
    """
    # With --workers and no history to hold leases in, the supervisor names one worker to
    # probe the deployments.
    probe = not reuse_port or env.get("LLM_USAGE_EXPORTER_PROBER") == "1"
    proxy = create_proxy(config, registry=registry, history=history, env=env, probe=probe)
    await proxy.start(*split_hostport(config.listen), reuse_port=reuse_port)
    admin = create_admin(exposition or registry, db=history.db if history else None,
                         token=config.admin_token(env), scrapes=proxy.proxy.metrics.holds.scrapes)
    await admin.start(*split_hostport(config.admin_listen), reuse_port=reuse_port)
    return [proxy, admin]


# What SIGHUP applies; any other change waits for a restart (listeners, services, history).
RELOADED = ("pricing", "pricing_data", "api_keys", "require_api_key", "budgets", "log_level")


async def reload(running: Config, load, proxy: Proxy, collector: HistoryCollector | None,
                 env=os.environ) -> Config:
    """Apply the prices, keys and budgets of the config file again (SIGHUP), or, if it has a
    problem, log every one and keep the running configuration. Return the one now running."""
    try:
        loaded = await asyncio.to_thread(load)
        # What a reload applies, over what only a restart does (the time zone, say).
        config = dataclasses.replace(running, **{n: getattr(loaded, n) for n in RELOADED})
        pricing = await asyncio.to_thread(pricing_for, config)
    except (ConfigError, TableError) as e:
        for problem in getattr(e, "problems", None) or [f"pricing_data: {e}"]:
            log.error("reload: %s", problem)
        log.error("reload: refused; the running configuration stays")
        return running
    later = [f.name for f in dataclasses.fields(Config) if f.name not in RELOADED
             and getattr(loaded, f.name) != getattr(running, f.name)]
    if later:
        log.warning("reload: %s changed: applied at the next restart", ", ".join(later))
    proxy.reload(config, env, pricing)
    if collector is not None:
        collector.reload(config.budgets)
    logging.getLogger().setLevel(config.log_level.upper())
    log.info("reload: prices, API keys and budgets applied")
    return config


async def serve(config: Config, *, ready=None, worker: bool = False, load=None) -> None:
    """Run the gateway until SIGTERM or SIGINT, then finish in-flight requests and exit.

    As one of several workers (see cli/workers.py) it shares both ports with the others, and
    its /metrics sums every worker's metrics from the files prometheus-client keeps in
    PROMETHEUS_MULTIPROC_DIR, so whichever worker answers a scrape gives the same totals
    (and the same exemplars: telemetry/exemplars.py).
    On SIGHUP, `load()` reads the config again (see reload()).
    """
    registry = exposition = CollectorRegistry()
    if worker:
        exposition = CollectorRegistry()
        WorkersCollector(exposition, os.environ["PROMETHEUS_MULTIPROC_DIR"])
    history, collector = history_for(config, registry, exposition)
    runners = await start(config, registry, history=history, exposition=exposition,
                          reuse_port=worker)
    log.info("llm-usage-exporter %s: proxy on http://%s, metrics on http://%s/metrics",
             __version__, config.listen, config.admin_listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = config
    reloading = asyncio.Lock()  # one at a time, in the order the signals came

    async def on_hangup() -> None:
        nonlocal running
        if load is None:
            log.warning("reload: started with --upstream, there is no config file to read")
            return
        async with reloading:
            running = await reload(running, load, runners[0].proxy, collector)

    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(on_hangup()))
    if ready is not None:
        ready()
    try:
        await stop.wait()
    finally:
        log.info("shutting down: finishing in-flight requests")
        for runner in runners:
            await runner.cleanup()
        if history is not None:
            history.db.close()
