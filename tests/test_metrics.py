"""The metric contract: series made at zero, exemplars, and the calendar periods of spend."""

from __future__ import annotations

import math
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry

from exporter.record import RequestRecord, Usage
from exporter.store.collector import HistoryCollector
from exporter.store.database import Database
from exporter.telemetry.metrics import Metrics
from exporter.telemetry.scrapes import Scrapes


def record(rid="0123456789abcdef0123456789abcdef", code=200, error_type="none", model="gpt-4o",
           key="team-a", ttft=None):
    return RequestRecord(rid, 1764000000.0, "openai", "openai", key, "chat", model=model,
                         code=code, error_type=error_type, usage=Usage(input_text=3),
                         duration=0.3, ttft=ttft, stream=ttft is not None)


def requests(registry, **labels):
    return registry.get_sample_value("llm_requests_total", {
        "service": "openai", "provider": "openai", "model": "gpt-4o", "api_key": "team-a",
        "project": "none", "operation": "chat", **labels})


def test_failure_series_exist_at_zero_once_a_model_is_seen():
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    assert requests(registry, code="502", error_type="connect_error") is None
    metrics.observe(record())
    # rate() cannot see a series born at 1: the failures the alerts read wait at 0.
    for code, error_type in (("502", "connect_error"), ("504", "timeout"),
                             ("500", "upstream_error")):
        assert requests(registry, code=code, error_type=error_type) == 0
    assert requests(registry, code="503", error_type="upstream_error") is None
    assert requests(registry, code="200", error_type="none") == 0  # until a scrape reads it
    metrics.holds.release(math.inf)
    assert requests(registry, code="200", error_type="none") == 1
    metrics.observe(record(code=504, error_type="timeout"))
    assert requests(registry, code="504", error_type="timeout") == 1  # read at 0 already
    # Per model and key: another key gets its own.
    metrics.observe(record(key="team-b"))
    assert requests(registry, api_key="team-b", code="500", error_type="upstream_error") == 0


def test_a_new_series_counts_once_a_scrape_begun_after_it_has_read_it():
    registry = CollectorRegistry()
    scrapes = Scrapes()
    metrics = Metrics(registry, scrapes=scrapes)
    before = time.monotonic()  # a scrape under way when the series is made
    metrics.observe(record())
    metrics.observe(record())
    scrapes.answered(before)
    metrics.holds.release()
    assert requests(registry, code="200", error_type="none") == 0  # read at 0, by chance
    scrapes.answered(time.monotonic())  # a scrape that began after: it has read the 0
    metrics.holds.release()
    assert requests(registry, code="200", error_type="none") == 2
    metrics.observe(record())  # a series read already: counted at once
    assert requests(registry, code="200", error_type="none") == 3
    metrics.observe(record(model="gpt-4o-mini"))  # a new one: held again
    assert requests(registry, code="200", error_type="none", model="gpt-4o-mini") == 0


def test_workers_release_by_the_latest_scrape_any_of_them_answered(tmp_path):
    mine, other = Scrapes(str(tmp_path)), Scrapes(str(tmp_path))
    other.latest = 0.0
    mine.answered(5.0)
    assert other.last() == 5.0  # read from the file the other wrote
    (tmp_path / "scraped_1.bin").write_bytes(b"\x00")  # half made: left out
    assert other.last() == 5.0


def exemplars(registry, name):
    found = []
    for family in registry.collect():
        for s in family.samples:
            if s.name == name and s.exemplar is not None:
                found.append(s.exemplar.labels["request_id"])
    return found


@pytest.mark.parametrize("rid,kept", [
    ("0123456789abcdef0123456789abcdef", True),  # the gateway's own ids
    ("client-chosen id 7", True),
    ("x" * 64, True),
    ("x" * 65, False),  # OpenMetrics allows 128 characters of labels; a client may send more
    ("caf\u00e9", False),
    ("bad\udcff", False),  # a non-UTF-8 X-Request-ID, as decoded with surrogateescape
    ("line\nbreak", False),
])
def test_exemplar_names_the_request_when_it_can(rid, kept):
    registry = CollectorRegistry()
    Metrics(registry).observe(record(rid=rid, ttft=0.1))
    expected = [rid] if kept else []
    assert exemplars(registry, "llm_request_duration_seconds_bucket") == expected
    assert exemplars(registry, "llm_time_to_first_token_seconds_bucket") == expected


def periods(zone: str, now: str) -> dict:
    registry = CollectorRegistry()
    moment = datetime.fromisoformat(now).timestamp()
    HistoryCollector(registry, Database("/nonexistent.db"), ZoneInfo(zone), clock=lambda: moment)
    return {(name, period): registry.get_sample_value(name, {"period": period})
            for name in ("llm_period_start_timestamp_seconds",
                         "llm_period_end_timestamp_seconds")
            for period in ("day", "month")}


def at(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def test_periods_follow_the_configured_zone():
    # 20:00 UTC on 30 November is 04:00 on 1 December in Shanghai (UTC+8): the month there
    # began on the previous UTC day, at 16:00 UTC on 30 November.
    assert periods("Asia/Shanghai", "2026-11-30T20:00:00+00:00") == {
        ("llm_period_start_timestamp_seconds", "day"): at("2026-11-30T16:00:00+00:00"),
        ("llm_period_end_timestamp_seconds", "day"): at("2026-12-01T16:00:00+00:00"),
        ("llm_period_start_timestamp_seconds", "month"): at("2026-11-30T16:00:00+00:00"),
        ("llm_period_end_timestamp_seconds", "month"): at("2026-12-31T16:00:00+00:00"),
    }
    # Paris in October 2026: summer time (UTC+2) at the start, winter (UTC+1) at the end,
    # and the 25th is 25 hours long.
    paris = periods("Europe/Paris", "2026-10-25T12:00:00+00:00")
    assert paris[("llm_period_start_timestamp_seconds", "month")] == \
        at("2026-09-30T22:00:00+00:00")
    assert paris[("llm_period_end_timestamp_seconds", "month")] == \
        at("2026-10-31T23:00:00+00:00")
    assert paris[("llm_period_end_timestamp_seconds", "day")] - \
        paris[("llm_period_start_timestamp_seconds", "day")] == 25 * 3600
