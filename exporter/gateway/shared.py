"""What every request's exchange uses of the proxy it came through: a Protocol, so that
exchange.py need not import proxy.py, which makes the exchanges."""

from __future__ import annotations

from typing import Protocol

from prometheus_client import Gauge

from ..accounting.pricing import Pricing
from ..config.table import Service
from ..record import RequestRecord
from ..wire.request import Request
from ..wire.upstream import Origin, Pool
from .attribution import Attributor
from .aws import Signer
from .finish import Failures, Sink
from .jobs import Jobs
from .keys import Keys


class Gateway(Protocol):
    """What an exchange uses of the proxy it came through (proxy.py's Proxy)."""

    keys: Keys  # and prices: as they are now (SIGHUP replaces both)
    pricing: Pricing
    max_body: int
    client_timeout: float
    pool: Pool
    origins: dict[str, Origin]
    signers: dict[str, Signer]  # by service: those the gateway signs for (Bedrock)
    attribution: Attributor
    not_up: frozenset[bytes]  # the client's headers that never go upstream
    in_flight: dict[str, Gauge]  # by service
    jobs: Jobs
    failed: Failures
    sinks: list[Sink]

    def route(self, request: Request) -> tuple[Service, str]: ...

    def name_model(self, rec: RequestRecord, requested: str) -> None: ...
