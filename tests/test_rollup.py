"""The usage rollup answers exactly what the rows answer, on both engines."""

from __future__ import annotations

import dataclasses
import random
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from conftest import read_rows
from prometheus_client import CollectorRegistry

from exporter.record import RequestRecord, Usage
from exporter.store.query import Filters
from exporter.store.reads import usage_rows
from exporter.store.upkeep import Upkeep
from exporter.store.usage import UsageQuery
from exporter.store.writer import History
from exporter.telemetry.background import HistoryMetrics

START = 1_793_491_200.0  # 2026-11-01T00:00:00Z
ZONES = ("UTC", "Asia/Kolkata", "Asia/Kathmandu", "America/St_Johns", "Europe/Paris",
         "Australia/Eucla")  # +5:30, +5:45, -3:30, DST on 25 October, +8:45


class RowsOnly(UsageQuery):
    """The same query answered from the rows alone."""

    def rolled(self):
        return None


def records(n: int, seed: int) -> list[RequestRecord]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        error = rng.random() < 0.2
        r = RequestRecord(
            f"r{i}", START + rng.uniform(0, 3 * 86400), rng.choice(("openai", "anthropic")),
            "openai", rng.choice(("alice", "bob", "carol")), rng.choice(("chat", "batch")),
            stream=rng.random() < 0.5, model=rng.choice(("gpt-4o", "claude", "o4-mini")),
            code=rng.choice((429, 500)) if error else 200,
            error_type=rng.choice(("rate_limited", "upstream_error")) if error else
            rng.choice(("none", "none", "accounting_error")),
            usage=Usage(input_text=rng.randrange(2000), input_cache_read=rng.randrange(500),
                        output_text=rng.randrange(800), output_reasoning=rng.randrange(100),
                        estimated_output=rng.randrange(3), web_search_calls=rng.randrange(2),
                        audio_seconds=rng.choice((0.0, 1.5)),
                        input_characters=rng.randrange(40)),
            fee=Decimal(rng.randrange(10_000)) / 10_000_000, duration=rng.uniform(0.1, 9),
            ttft=rng.uniform(0.05, 2) if rng.random() < 0.5 else None,
            share=rng.random() < 0.1)
        out.append(r)
    return out


@pytest.fixture
def history(db):
    h = History(db, HistoryMetrics(CollectorRegistry()))
    h.start()
    for r in records(600, seed=3):
        h.put(r)
    h.close()
    return db


def queries(seed: int):
    rng = random.Random(seed)
    for _ in range(60):
        start = START + rng.uniform(-3600, 2 * 86400)
        end = start + rng.choice((900, 3600, 86400, 2 * 86400)) + rng.uniform(0, 5000)
        equal = []
        if rng.random() < 0.3:
            equal.append(("model", tuple(rng.sample(("gpt-4o", "claude", "o4-mini"), 2))))
        if rng.random() < 0.2:
            equal.append(("api_key", ("alice",)))
        if rng.random() < 0.2:
            equal.append(("operation", ("batch",)))
        status = rng.choice((None, None, "success", "error", "429"))
        group = tuple(rng.sample(("model", "api_key", "service"), rng.randrange(3)))
        yield UsageQuery(Filters(start, end, ZoneInfo(rng.choice(ZONES)), tuple(equal), status),
                         group, rng.choice(("none", "hour", "day", "1d")),
                         rng.choice(("tokens", "fee", "requests")),
                         rng.choice((None, None, 2)))


def comparable(rows: list[dict]) -> list[dict]:
    """Floats summed in another order differ in their last bits, nothing else may."""
    return [{k: round(v, 6) if isinstance(v, float) else v for k, v in r.items()}
            for r in rows]


def test_the_rollup_answers_as_the_rows_do(history):
    used = 0
    for q in queries(seed=11):
        used += q.rolled() is not None
        assert comparable(usage_rows(history, q).all()) == comparable(
            usage_rows(history, RowsOnly(q.filters, q.group_by, q.granularity, q.order,
                                         q.limit)).all()), q
    assert used > 30  # most of these ranges span whole quarter hours


def test_what_the_rollup_cannot_answer_is_read_from_the_rows():
    f = Filters(START, START + 86400, ZoneInfo("UTC"))
    assert UsageQuery(f).rolled() == (START, START + 86400)
    assert UsageQuery(f, granularity="5m").rolled() is None  # buckets within a quarter hour
    assert UsageQuery(dataclasses.replace(f, equal=(("request_id", ("r1",)),))).rolled() \
        is None
    inside = Filters(START + 60, START + 800, ZoneInfo("UTC"))  # no whole quarter hour
    assert UsageQuery(inside).rolled() is None
    # Africa/Monrovia was 44 min 30 s behind UTC until 1972: hours between quarter hours.
    old = Filters(0, 3 * 86400, ZoneInfo("Africa/Monrovia"))
    assert UsageQuery(old, granularity="hour").rolled() is None
    assert UsageQuery(old).rolled() == (0, 3 * 86400)  # without buckets, zones are moot


def test_the_rollup_is_the_sum_of_the_rows(history):
    rows, rolled = read_rows(history), read_rows(history, "usage_rollup", "bucket")
    assert sum(r["rows_n"] for r in rolled) == len(rows) == 600
    assert sum(r["requests"] for r in rolled) == sum(1 - r["share"] for r in rows)
    assert sum(r["output_text"] for r in rolled) == sum(r["output_text"] for r in rows)
    assert round(sum(r["fee_usd"] for r in rolled), 10) == round(
        sum(r["fee_usd"] for r in rows), 10)


def test_retention_takes_the_rollup_with_the_rows(db):
    now = START + 40 * 86400 + 450  # mid-quarter hour: the cutoff is taken to its start
    h = History(db, HistoryMetrics(CollectorRegistry()))
    h.start()
    for r in records(300, seed=5):
        r.started += 10 * 86400 - 3 * 3600  # around the cutoff
        h.put(r)
    h.close()
    Upkeep(db, 30, ZoneInfo("UTC"), clock=lambda: now).once()
    rows, rolled = read_rows(db), read_rows(db, "usage_rollup", "bucket")
    assert sum(r["rows_n"] for r in rolled) == len(rows)
    assert min(r["bucket"] for r in rolled) <= min(r["started_at"] for r in rows)
