"""/metrics: our text rendering is prometheus-client's generate_latest, byte for byte."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.core import GaugeMetricFamily

import exporter.telemetry.metrics  # noqa: F401  (it turns off `_created` series, as the gateway does)
from exporter.telemetry.exposition import render


class Timestamped:
    def collect(self):
        g = GaugeMetricFamily("spend_usd", "With a timestamp.\nAnd a second line \\ here.",
                              labels=["period"])
        g.add_metric(["day"], 1.5, timestamp=1764000000.25)
        yield g


def test_render_matches_generate_latest():
    registry = CollectorRegistry()
    c = Counter("requests", "Requests.", ["model", "key"], registry=registry)
    c.labels('quote " back \\ slash', "new\nline").inc(3)
    c.labels("plain", "k").inc(0.1)
    h = Histogram("duration_seconds", "Duration.", ["model"], buckets=(0.01, 1, 1e7),
                  registry=registry)
    h.labels("m").observe(0.5)
    h.labels("m").observe(2e6)
    Gauge("in_flight", "No labels.", registry=registry).set(float("nan"))
    Gauge("big", "Large.", registry=registry).set(12345678.0)
    Info("build", "Build.", registry=registry).info({"version": "1"})
    registry.register(Timestamped())
    ours = render(registry)
    assert ours == generate_latest(registry)
    assert b'requests_total{key="new\\nline",model="quote \\" back \\\\ slash"} 3.0\n' in ours
    assert b'duration_seconds_bucket{le="+Inf",model="m"} 2.0\n' in ours
    assert b'spend_usd{period="day"} 1.5 1764000000250\n' in ours
    assert b"big 1.2345678e+07\n" in ours
    assert b"_created" not in ours  # disabled by exporter.telemetry.metrics, imported by render's users
