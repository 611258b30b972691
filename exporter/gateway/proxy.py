"""The gateway's proxy: the services, keys and prices requests are served with.

Each request is an Exchange (exchange.py); this holds what they share: the routes, the
upstream connections, the keys and prices (replaced together on SIGHUP), the sinks every
finished record goes to, and the ledger of jobs.
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterable, Mapping
from typing import Any

from ..accounting.pricing import Pricing, pricing_for
from ..config.table import Config, Service
from ..record import RequestRecord
from ..store.spend import Spend
from ..telemetry.metrics import Metrics
from ..wire.request import Request
from ..wire.upstream import Origin, Pool
from .attribution import Attributor
from .aws import Signer, region_of
from .exchange import Exchange
from .finish import Failures, Sink
from .headers import not_up
from .jobs import Jobs
from .keys import Keys

# Requested model names remembered with the name the upstream reported for them: far more
# than any deployment uses, and a bound on what a client sending random names can grow.
REPORTED_MODELS = 10_000


class Proxy:
    """Forward requests to the configured services and record each one."""

    def __init__(self, config: Config, metrics: Metrics, env: Mapping[str, str], *,
                 spend: Spend | None = None, sinks: Iterable[Sink] = (),
                 jobs: Jobs | None = None):
        """`spend`: the history's, for the budgets enforced; `sinks`: where every finished
        record goes after the metrics (the history, the deployments); `jobs`: the ledger
        of batches, background responses and fine-tuning jobs (in memory if None)."""
        self.services = {s.name: s for s in config.services}
        self.default = config.default
        self.max_body = config.limits.max_request_body_bytes
        self.client_timeout = config.limits.client_timeout_seconds
        self.spend = spend
        self.metrics = metrics
        self.reload(config, env)
        self.pool = Pool()
        self.origins = {s.name: Origin(s.base_url) for s in config.services}
        # Bedrock services whose requests the gateway signs itself (NoCredentials if none).
        self.signers = {s.name: Signer(region_of(s.base_url, s.aws_region) or "us-east-1")
                        for s in config.services if s.aws_credentials == "gateway"}
        self.in_flight = {s.name: metrics.in_flight.labels(s.name) for s in config.services}
        self.sinks: list[Sink] = [metrics.observe, *sinks]
        self.reported_models: dict[tuple[str, str], str] = {}  # (service, asked) -> ran
        self.jobs = jobs if jobs is not None else Jobs(counts=metrics)
        metrics.fine_tuning_services(s.name for s in config.services if s.api_format == "openai")
        self.failed = Failures(metrics.record_errors)
        self.attribution = Attributor(config.attribution, metrics.attribution_rejected)
        self.not_up = not_up(self.attribution.headers)  # the client's headers kept here

    def reload(self, config: Config, env: Mapping[str, str],
               pricing: Pricing | None = None) -> None:
        """Take the prices, keys and budgets of `config` (SIGHUP): for the next requests."""
        pricing, keys = pricing or pricing_for(config), Keys(config, env, self.spend)
        self.pricing, self.keys = pricing, keys  # together, between two requests
        if self.spend is not None:  # the writer reads the spend back only while needed
            self.spend.active, self.spend.users_active = keys.enforcing, keys.users
        self.metrics.api_key_label.seen.update(k.name for k in config.api_keys)
        self.metrics.project_label.seen.update(k.project for k in config.api_keys if k.project)

    def route(self, request: Request) -> tuple[Service, str]:
        """Pick the service from the first path segment; return it and the upstream path."""
        raw = request.raw_path
        first = request.path[1:].partition("/")[0]
        service = self.services.get(first)
        if service is None:
            return self.default, raw
        return service, raw[len(first) + 1:] or "/"

    def handle(self, request: Request) -> Coroutine[Any, Any, None]:
        """Serve one request and record it (see exchange.py); the server awaits it."""
        return Exchange(self, request).run()  # no coroutine of its own around it

    def name_model(self, rec: RequestRecord, requested: str) -> None:
        """Give an error the model name its successes carry.

        Successes name the model the upstream ran (gpt-4o-2024-08-06), errors only the one
        asked for (gpt-4o): without this, one model's errors and successes would be two
        label values, and no error ratio could be computed for it.
        """
        key = (rec.service, requested)
        if rec.model != requested:
            if key in self.reported_models or len(self.reported_models) < REPORTED_MODELS:
                self.reported_models[key] = rec.model
        else:
            rec.model = self.reported_models.get(key, requested)
