"""Probe each deployment's health; accrue its GPU time while it is up; remember each run.

Time counts between two probes that both found the deployment up, measured on the
monotonic clock: a deployment that goes down stops accruing at its last good probe and
starts again at its first good one after. Each run of uptime is also written to the history
(its first and latest good probe, wall clock), so a month's duration and GPU hours are
right after restarts: a new process starts a new run and counts nothing twice. In a fleet,
one process probes at a time (its lease); the one that takes over starts a new run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from ..accounting.bill import hosted_fee
from ..config.table import Deployment
from ..record import RequestRecord
from ..store.rows import Uptime
from ..telemetry.background import DeploymentMetrics
from ..wire.upstream import Origin, Pool, UpstreamError

log = logging.getLogger(__name__)
HEALTH_PATHS = (b"/health", b"/v1/models")  # vLLM, TGI and SGLang have both; Ollama only one


@dataclass
class _State:
    up: bool = False
    at: float = 0.0  # monotonic time of the last probe
    run_started: float = 0.0  # wall time of the current run's first good probe
    path: bytes | None = None  # the health path that answered


class Deployments:
    """Every configured deployment's prober, metrics and uptime ledger."""

    def __init__(self, deployments: tuple[Deployment, ...], metrics: DeploymentMetrics, *,
                 persist=None, pricing=None, pool: Pool | None = None, clock=time.monotonic,
                 wall=time.time):
        self.items = {d.name: d for d in deployments}
        self.metrics, self.persist = metrics, persist
        self.pricing = pricing  # () -> the Pricing in force, for compare_to
        self.pool = pool or Pool()
        self.clock, self.wall = clock, wall
        self.state = {name: _State() for name in self.items}
        self.origins = {d.name: Origin(d.base_url) for d in deployments}
        for d in deployments:  # in every process: each one serves the deployments' traffic
            metrics.last_request.labels(d.name).set(wall())  # idle counts from start-up
            if d.compare_to:  # at 0, so increase() sees the first request's
                metrics.hosted.labels(d.name, d.compare_to)

    def announce(self) -> None:
        """Set what the prober alone exports (one process, with --workers)."""
        for d in self.items.values():
            self.metrics.info.labels(d.name, d.model, d.type, d.gpu_type or "unknown").set(1)
            self.metrics.gpus.labels(d.name).set(d.gpus)
            self.metrics.idle_after.labels(d.name).set(d.idle_alert_minutes * 60)
            self.metrics.up.labels(d.name).set(0)
            self.metrics.gpu_seconds.labels(d.name)  # at 0: increase() sees the first hour
            self.metrics.cost.labels(d.name)

    def observe(self, record: RequestRecord) -> None:
        """A sink: the end of each request to a deployment (for LLMDeploymentIdle)."""
        d = self.items.get(record.service)
        if d is None:
            return
        if not record.share:
            self.metrics.last_request.labels(d.name).set(record.started + record.duration)
        if d.compare_to and self.pricing is not None:
            usd = hosted_fee(self.pricing(), record, d.compare_to)
            if usd:
                self.metrics.hosted.labels(d.name, d.compare_to).inc(float(usd))

    def retire(self) -> None:
        """Stop exporting what the prober alone exports, and forget the last probes: this
        process probes no more, and if it probes again it starts new runs."""
        for d in self.items.values():
            for gauge, labels in ((self.metrics.info, (d.name, d.model, d.type,
                                                       d.gpu_type or "unknown")),
                                  (self.metrics.gpus, (d.name,)),
                                  (self.metrics.idle_after, (d.name,)),
                                  (self.metrics.up, (d.name,))):
                try:
                    gauge.remove(*labels)
                except KeyError:
                    pass
        self.state = {name: _State() for name in self.items}

    async def run(self) -> None:
        """Probe every deployment on its interval, until cancelled."""
        self.announce()
        try:
            await asyncio.gather(*(self._every(d) for d in self.items.values()))
        finally:  # its connections end with it
            self.pool.close()
            self.retire()

    async def _every(self, d: Deployment) -> None:
        while True:
            try:
                await self.check(d)
            except Exception:  # a bug must not end the probing: counted as down
                log.exception("deployment %s: the health probe failed", d.name)
                self.found(d, False)
            await asyncio.sleep(d.probe_interval_seconds)

    async def check(self, d: Deployment) -> bool:
        """Probe one deployment now and account for the time since its last probe."""
        try:
            async with asyncio.timeout(d.probe_timeout_seconds):
                up = await self.healthy(d)
        except (TimeoutError, OSError, UpstreamError):
            up = False
        self.found(d, up)
        return up

    async def healthy(self, d: Deployment) -> bool:
        """GET /health, or /v1/models where there is none: a 2xx is up."""
        st = self.state[d.name]
        # The path that answered last first; the other too if it is gone (404): another
        # server may have taken its place.
        for path in sorted(HEALTH_PATHS, key=lambda p: p != st.path):
            conn = await self.pool.request(
                self.origins[d.name], "GET", self.origins[d.name].path.encode() + path, b"",
                connect_timeout=d.probe_timeout_seconds, read_timeout=d.probe_timeout_seconds,
                idempotent=True)
            try:
                await conn.pipe(lambda data, last: None, d.probe_timeout_seconds)
            finally:
                conn.release()
            if conn.status != 404:
                st.path = path if 200 <= conn.status < 300 else st.path
                return 200 <= conn.status < 300
        return False

    def found(self, d: Deployment, up: bool) -> None:
        """Account for a probe's finding, at the clocks' present time."""
        st, now, wall = self.state[d.name], self.clock(), self.wall()
        if up and st.up:  # up at both ends: the time between counts
            gpu_seconds = (now - st.at) * d.gpus
            self.metrics.gpu_seconds.labels(d.name).inc(gpu_seconds)
            if d.gpu_hourly_usd:
                self.metrics.cost.labels(d.name).inc(gpu_seconds * d.gpu_hourly_usd / 3600)
            if self.persist is not None:
                self.persist(Uptime(d.name, st.run_started, wall, d.gpus,
                                    d.gpu_hourly_usd or 0.0, d.model, d.type))
        elif up:
            st.run_started = wall
            log.info("deployment %s is up", d.name)
        elif st.up:
            log.warning("deployment %s is down: its health probe failed", d.name)
        st.up, st.at = up, now
        self.metrics.up.labels(d.name).set(1 if up else 0)
