"""/metrics: our renderings are prometheus-client's generate_latest (text and OpenMetrics),
byte for byte, and OpenMetrics is served to whoever asks for it."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.openmetrics.exposition import (
    generate_latest as generate_openmetrics,
)

import exporter.telemetry.metrics  # noqa: F401  (it turns off `_created` series, as the gateway does)
from exporter.telemetry.exposition import render, render_openmetrics, wants_openmetrics


class Timestamped:
    def collect(self):
        g = GaugeMetricFamily("spend_usd", "With a timestamp.\nAnd a second line \\ here.",
                              labels=["period"])
        g.add_metric(["day"], 1.5, timestamp=1764000000.25)
        yield g


def sample_registry() -> CollectorRegistry:
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
    return registry


def test_render_matches_generate_latest():
    registry = sample_registry()
    ours = render(registry)
    assert ours == generate_latest(registry)
    assert b'requests_total{key="new\\nline",model="quote \\" back \\\\ slash"} 3.0\n' in ours
    assert b'duration_seconds_bucket{le="+Inf",model="m"} 2.0\n' in ours
    assert b'spend_usd{period="day"} 1.5 1764000000250\n' in ours
    assert b"big 1.2345678e+07\n" in ours
    # Disabled by exporter.telemetry.metrics, which every user of render imports.
    assert b"_created" not in ours


def test_openmetrics_matches_generate_latest_with_exemplars():
    registry = sample_registry()
    h = Histogram("latency_seconds", "Latency with \"quotes\".", ["model"], buckets=(0.1, 1),
                  registry=registry)
    h.labels("m").observe(0.05, {"request_id": "0123abcd"})
    h.labels("m").observe(0.5, {"request_id": 'odd "id" \\'})
    h.labels("m").observe(0.7)  # no exemplar: the bucket keeps the last one it had
    ours = render_openmetrics(registry)
    assert ours == generate_openmetrics(registry)
    assert ours.endswith(b"# EOF\n")
    assert b'latency_seconds_bucket{le="0.1",model="m"} 1.0 # {request_id="0123abcd"} 0.05 ' \
        in ours
    assert b'# {request_id="odd \\"id\\" \\\\"} 0.5 ' in ours
    assert b"# TYPE requests counter\n" in ours and b"requests_total{" in ours


def test_openmetrics_only_when_asked():
    prometheus_242 = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                      "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
    assert wants_openmetrics(prometheus_242)
    assert wants_openmetrics("application/openmetrics-text")
    assert not wants_openmetrics(None)
    assert not wants_openmetrics("text/plain;version=0.0.4")
    assert not wants_openmetrics("*/*")
    assert not wants_openmetrics("text/plain, application/openmetrics-text; q=0")
