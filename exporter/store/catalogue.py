"""Every metric the gateway can expose, from its definitions: the request path's and the
background parts' (telemetry/), and those the history's collectors make at scrape time
(this part). The docs' reference page, the dashboards' lint and the docs' test read this
one list, so a new metric owner is added here once."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from ..telemetry.background import (
    DeploymentMetrics,
    HistoryMetrics,
    ReconcileMetrics,
    ReportMetrics,
)
from ..telemetry.metrics import Metrics
from .collector import HistoryCollector
from .database import Database
from .reconcile_collector import ReconcileCollector


def every_metric() -> dict[str, tuple[str, list[str], str]]:
    """name -> (type, label names, HELP) of every metric, as /metrics names them."""
    registry = CollectorRegistry()
    owners = (Metrics(registry), HistoryMetrics(registry), DeploymentMetrics(registry),
              ReportMetrics(registry), ReconcileMetrics(registry))
    out = {m._name + ("_total" if m._type == "counter" else ""):
           (m._type, list(m._labelnames), m._documentation)
           for owner in owners for m in vars(owner).values()
           if isinstance(m, MetricWrapperBase)}
    nowhere = Database("/nonexistent.db")  # no history: each family, without samples
    for family in [*HistoryCollector(registry, nowhere, ZoneInfo("UTC")).collect(),
                   *ReconcileCollector(registry, nowhere, ()).collect()]:
        out[family.name] = (family.type, list(getattr(family, "_labelnames", ())),
                            family.documentation)
    return out
