"""The usage API, exports and period spend, against a history of hand-placed rows."""

from __future__ import annotations

import calendar
import csv
import io
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from prometheus_client import CollectorRegistry

from exporter.config.table import Budget
from exporter.record import RequestRecord, Usage
from exporter.store.collector import HistoryCollector
from exporter.store.database import Database
from exporter.store.writer import History
from exporter.store.zones import offset_segments
from exporter.telemetry.background import HistoryMetrics

ROOT = Path(__file__).parent.parent


def at(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def rec(iso, model="gpt-4o", key="team-a", *, tokens=(10, 5), fee="0.001", code=200,
        error_type="none", duration=2.0, ttft=None, rid=None):
    return RequestRecord(rid or f"{iso}-{model}-{key}", at(iso), "openai", "openai", key, "chat",
                         stream=ttft is not None, model=model, code=code, error_type=error_type,
                         usage=Usage(input_text=tokens[0], output_text=tokens[1]),
                         fee=D(fee), ttft=ttft, duration=duration)


# Around midnight: 15:30Z is 23:30 in Shanghai (UTC+8) on Nov 1, 16:30Z is 00:30 on Nov 2.
ROWS = [
    rec("2026-11-01T15:30:00+00:00", tokens=(100, 50), fee="0.002", duration=1.0, ttft=0.2),
    rec("2026-11-01T16:30:00+00:00", model="claude", key="team-b", tokens=(300, 0),
        fee="0.010", duration=3.0, ttft=0.6),
    rec("2026-11-01T23:30:00+00:00", code=429, error_type="rate_limited", tokens=(0, 0),
        fee="0", duration=0.5),
    rec("2026-11-02T00:30:00+00:00", model="claude", tokens=(20, 20), fee="0.004",
        duration=2.5),
]
RANGE = {"from": "2026-11-01T00:00:00+00:00", "to": "2026-11-03T00:00:00+00:00"}


def write_history(db: Database, records, tz=None) -> Database:
    h = History(db, HistoryMetrics(CollectorRegistry()), **({"tz": tz} if tz else {}))
    h.start()
    for r in records:
        h.put(r)
    h.close()
    return db


@pytest.fixture
def history(db):
    return write_history(db, ROWS)


@pytest.fixture
async def api(admin, history):
    return await admin(CollectorRegistry(), db=history)


async def get_json(api, path, **params):
    r = await api.get(path, params=params)
    assert r.status == 200, await r.text()
    return await r.json()


@pytest.mark.parametrize("tz,expected", [
    ("UTC", [("2026-11-01T00:00:00+00:00", 3), ("2026-11-02T00:00:00+00:00", 1)]),
    ("Asia/Shanghai", [("2026-11-01T00:00:00+08:00", 1), ("2026-11-02T00:00:00+08:00", 3)]),
])
async def test_day_buckets_follow_the_time_zone(api, tz, expected):
    body = await get_json(api, "/api/usage", granularity="day", tz=tz, **RANGE)
    assert [(r["time"], r["requests"]) for r in body["data"]] == expected


async def test_usage_by_model_has_every_figure(api):
    body = await get_json(api, "/api/usage", group_by="model", **RANGE)
    claude, gpt = sorted(body["data"], key=lambda r: r["model"])
    # claude: 300 + 0 and 20 + 20 tokens; fees 0.010 + 0.004; latency (3000 + 2500) / 2 ms;
    # TTFT only from the one stream: 600 ms. Over 2 days = 172800 s: 2 requests.
    assert claude == {**claude, "model": "claude", "requests": 2, "successful": 2,
                      "failed": 0, "success_rate": 1.0, "input_text": 320, "output_text": 20,
                      "total_tokens": 340, "fee_usd": 0.014, "avg_latency_ms": 2750.0,
                      "avg_ttft_ms": 600.0, "qps": 2 / 172800}
    assert (gpt["requests"], gpt["failed"], gpt["success_rate"], gpt["total_tokens"]) == (
        2, 1, 0.5, 150)


@pytest.mark.parametrize("order,first", [("tokens", "team-b"), ("fee", "team-b"),
                                         ("requests", "team-a")])
async def test_top_n_ranking(api, order, first):
    # team-a: 3 requests, 190 tokens, $0.006; team-b: 1 request, 300 tokens, $0.010.
    body = await get_json(api, "/api/usage", group_by="api_key", order=order, limit="1",
                          **RANGE)
    assert [r["api_key"] for r in body["data"]] == [first]


async def test_top_n_with_buckets_keeps_every_bucket_of_the_top_groups(api):
    body = await get_json(api, "/api/usage", group_by="model", granularity="day", order="fee",
                          limit="1", **RANGE)
    assert [(r["time"][:10], r["model"], r["requests"]) for r in body["data"]] == [
        ("2026-11-01", "claude", 1), ("2026-11-02", "claude", 1)]


async def test_what_grafana_sends_is_understood(api):
    # Grafana sends ${__from} and ${__to} in epoch milliseconds, ${model:csv} as a list,
    # a multi-value variable's All as its all value, and ${__timezone} as "utc".
    seconds = await get_json(api, "/api/usage", group_by="model", **RANGE)
    millis = await get_json(api, "/api/usage", group_by="model", tz="utc", **{
        "from": str(int(at(RANGE["from"]) * 1000)), "to": str(int(at(RANGE["to"]) * 1000))})
    assert millis == seconds and len(seconds["data"]) == 2
    for everything in (".*", "*", "$__all", ""):
        assert await get_json(api, "/api/usage", group_by="model", model=everything,
                              **RANGE) == seconds
    both = await get_json(api, "/api/requests", model="claude,gpt-4o", api_key="team-b,team-a",
                          **RANGE)
    assert len(both["data"]) == 4
    one = await get_json(api, "/api/requests", model="claude,nothing", api_key="team-a,",
                         **RANGE)
    assert [r["request_id"] for r in one["data"]] == [ROWS[3].request_id]
    # One request by its id, as an exemplar's link asks for it.
    found = await get_json(api, "/api/requests", request_id=ROWS[1].request_id, **RANGE)
    assert [(r["model"], r["api_key"]) for r in found["data"]] == [("claude", "team-b")]
    # The 500 this used to be: minute buckets from a time in milliseconds.
    minutes = await get_json(api, "/api/usage", granularity="minute", **{
        "from": str(int(at(RANGE["from"]) * 1000)), "to": str(int(at(RANGE["to"]) * 1000))})
    assert [r["requests"] for r in minutes["data"]] == [1, 1, 1, 1]


def test_dst_day_is_25_hours_long():
    # Paris leaves summer time at 01:00 UTC on 25 October 2026: that day lasts 25 hours.
    paris = ZoneInfo("Europe/Paris")
    start, end = at("2026-10-24T00:00:00+00:00"), at("2026-10-27T00:00:00+00:00")
    assert offset_segments(paris, start, end) == [(start, 7200),
                                                  (at("2026-10-25T01:00:00+00:00"), 3600)]


async def test_dst_day_bucket_and_qps(db, admin):
    write_history(db, [
        rec("2026-10-24T22:30:00+00:00", rid="a"),   # 00:30 Paris summer time, 25 Oct
        rec("2026-10-25T22:30:00+00:00", rid="b")])  # 23:30 Paris winter time, 25 Oct
    api = await admin(CollectorRegistry(), db=db)
    body = await get_json(api, "/api/usage", granularity="day", tz="Europe/Paris",
                          **{"from": "2026-10-25", "to": "2026-10-26"})
    [day] = body["data"]
    assert (day["time"], day["requests"], day["qps"]) == (
        "2026-10-25T00:00:00+02:00", 2, 2 / 90000)


async def test_calendar_weeks_and_months_in_the_zone(db, admin):
    write_history(db, [
        rec("2026-10-25T22:30:00+00:00", rid="a"),  # Sunday 25 Oct, 23:30 in Paris
        rec("2026-10-25T23:30:00+00:00", rid="b"),  # Monday 26 Oct, 00:30 in Paris
        rec("2026-10-31T23:30:00+00:00", rid="c"),  # Sunday 1 Nov, 00:30 in Paris
        rec("2026-11-03T10:00:00+00:00", rid="d")])
    api = await admin(CollectorRegistry(), db=db)
    period = {"from": "2026-10-20", "to": "2026-11-05", "tz": "Europe/Paris"}
    weeks = await get_json(api, "/api/usage", granularity="week", **period)
    # ISO weeks from Monday's local midnight; the first holds 20-25 October (summer time to
    # winter time), from the range's start on Tuesday 20th: 5 days and 25 hours of it.
    assert [(r["time"], r["requests"]) for r in weeks["data"]] == [
        ("2026-10-19T00:00:00+02:00", 1), ("2026-10-26T00:00:00+01:00", 2),
        ("2026-11-02T00:00:00+01:00", 1)]
    assert weeks["data"][0]["qps"] == 1 / (6 * 86400 + 3600)
    months = await get_json(api, "/api/usage", granularity="month", **period)
    [november] = (await get_json(api, "/api/usage", granularity="month", **{
        **period, "from": "2026-11-02"}))["data"]  # one bucket
    assert (november["time"], november["requests"]) == ("2026-11-01T00:00:00+01:00", 1)
    assert [(r["time"], r["requests"]) for r in months["data"]] == [
        ("2026-10-01T00:00:00+02:00", 2), ("2026-11-01T00:00:00+01:00", 2)]


async def test_requests_newest_first_filtered_and_paged(api):
    body = await get_json(api, "/api/requests", **RANGE)
    assert [r["time"] for r in body["data"]] == [
        "2026-11-02T00:30:00+00:00", "2026-11-01T23:30:00+00:00",
        "2026-11-01T16:30:00+00:00", "2026-11-01T15:30:00+00:00"]
    assert body["next_cursor"] is None
    assert [r["status"] for r in (await get_json(api, "/api/requests", status="error",
                                                  **RANGE))["data"]] == [429]
    assert len((await get_json(api, "/api/requests", status="success", **RANGE))["data"]) == 3
    assert len((await get_json(api, "/api/requests", status="429", **RANGE))["data"]) == 1
    assert [r["api_key"] for r in (await get_json(api, "/api/requests", model="claude",
                                                  api_key="team-b", **RANGE))["data"]] == ["team-b"]
    seen, cursor = [], None
    while True:
        page = await get_json(api, "/api/requests", limit="3", **RANGE,
                              **({"cursor": cursor} if cursor else {}))
        seen += [r["request_id"] for r in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [r.request_id for r in reversed(ROWS)]


@pytest.mark.parametrize("path,params", [
    ("/api/usage", {"group_by": "model,api_key", "granularity": "hour", "tz": "Asia/Kolkata"}),
    ("/api/requests", {"limit": "1000"}),
])
async def test_csv_and_xlsx_read_back_to_the_json(api, path, params):
    params = {**params, **RANGE}
    data = (await get_json(api, path, **params))["data"]
    r = await api.get(path, params={**params, "format": "csv"})
    assert r.headers["Content-Disposition"].startswith("attachment; filename=")
    rows = list(csv.DictReader(io.StringIO(await r.text())))
    r = await api.get(path, params={**params, "format": "xlsx"})
    sheet = openpyxl.load_workbook(io.BytesIO(await r.read()), read_only=True).active
    header, *cells = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert len(rows) == len(cells) == len(data) > 0
    for j, c, x in zip(data, rows, cells, strict=True):
        x = dict(zip(header, x, strict=True))
        for column, value in j.items():
            if value is None:
                assert c[column] == "" and x[column] is None, column
            elif isinstance(value, (int, float)):
                assert float(c[column]) == pytest.approx(value, rel=1e-12) == x[column], column
            elif column == "time":  # an Excel date-time of the row's wall clock in `tz`
                assert c[column] == value
                wall = datetime.fromisoformat(value).replace(tzinfo=None)
                assert abs(x[column] - wall).total_seconds() < 0.001, column
            else:
                assert c[column] == value == x[column], column


@pytest.mark.parametrize("path,params,name", [
    ("/api/usage", {"tz": "Mars/Olympus"}, "tz"),
    ("/api/usage", {"from": "yesterday"}, "from"),
    ("/api/usage", {"from": "2026-11-02", "to": "2026-11-01"}, "from"),
    ("/api/usage", {"from": "1e20"}, "from"),
    ("/api/usage", {"to": "nan"}, "to"),
    ("/api/usage", {"from": "-5"}, "from"),
    ("/api/usage", {"from": "2201-01-01", "granularity": "minute"}, "from"),
    ("/api/usage", {"granularity": "fortnight"}, "granularity"),
    # 30 days of minutes: 43,200 buckets per group, past the 10,140 (a week) a table shows.
    ("/api/usage", {"from": "2026-10-01", "to": "2026-10-31", "granularity": "1m"},
     "granularity"),
    ("/api/usage", {"group_by": "model,colour"}, "group_by"),
    ("/api/usage", {"order": "latency"}, "order"),
    ("/api/usage", {"limit": "-1"}, "limit"),
    ("/api/usage", {"limit": "0"}, "limit"),  # as /api/requests: no limit is no `limit`
    ("/api/requests", {"limit": "many"}, "limit"),
    ("/api/requests", {"status": "broken"}, "status"),
    ("/api/requests", {"format": "pdf"}, "format"),
    ("/api/requests", {"cursor": "%%%"}, "cursor"),
])
async def test_bad_parameters_are_400_naming_the_parameter(api, path, params, name):
    r = await api.get(path, params=params)
    assert r.status == 400
    assert (await r.json())["error"]["parameter"] == name


async def test_a_granularity_too_fine_for_the_range_says_what_to_do(api):
    r = await api.get("/api/usage", params={"from": "2026-10-01", "to": "2026-10-31",
                                            "granularity": "1m"})
    assert (await r.json())["error"]["message"] == (
        "granularity: 1m over this range is 43,200 buckets, past the 10,140 a table can show: "
        "choose a coarser granularity or a shorter range")
    # A week with the hour a clock change adds (10,140) is shown; a download of any length.
    week = {"from": "2026-10-24T00:00:00+00:00", "to": "2026-10-31T01:00:00+00:00",
            "granularity": "1m"}
    assert (await api.get("/api/usage", params=week)).status == 200
    month = {"from": "2026-10-01", "to": "2026-10-31", "granularity": "1m", "format": "csv"}
    assert (await api.get("/api/usage", params=month)).status == 200


@pytest.mark.parametrize("where", ["no such file", "a server that does not answer"])
async def test_missing_history_is_503(admin, tmp_path, where):
    missing = Database(str(tmp_path / "none.db")) if where == "no such file" else \
        Database("postgresql://nobody@127.0.0.1:1/llm_usage")
    api = await admin(CollectorRegistry(), db=missing)
    r = await api.get("/api/usage")
    assert r.status == 503
    assert (await r.json())["error"]["message"].startswith(
        "the request history cannot be read: ")


async def test_bearer_token_guards_metrics_and_api(admin, history):
    api = await admin(CollectorRegistry(), db=history, token="s3cret")
    for path in ("/metrics", "/api/usage", "/api/requests"):
        assert (await api.get(path)).status == 401
        assert (await api.get(path, headers={"Authorization": "Bearer wrong"})).status == 401
        assert (await api.get(path, headers={"Authorization": "Bearer s3cret"})).status == 200
    assert (await api.get("/healthz")).status == 200


async def test_unknown_paths_and_methods(api):
    assert (await api.get("/api/nope")).status == 404
    r = await api.post("/api/usage")
    assert r.status == 405 and r.headers["Allow"] == "GET, HEAD"
    r = await api.head("/api/usage")
    assert r.status == 200 and await r.read() == b""


@pytest.mark.parametrize("written_in", ["Asia/Shanghai", "UTC"])
def test_spend_and_budgets_by_calendar_period(db, written_in):
    # Now is 2026-11-02 10:00 UTC = 18:00 in Shanghai. Shanghai's day began 2026-11-01 16:00Z.
    # Written in UTC: the history is reopened in Shanghai's zone and its rollup rebuilt.
    shanghai = ZoneInfo("Asia/Shanghai")
    write_history(db, [
        rec("2026-10-31T12:00:00+00:00", fee="1.00"),    # last month
        rec("2026-11-01T12:00:00+00:00", fee="0.50"),    # this month, yesterday in Shanghai
        rec("2026-11-01T17:00:00+00:00", fee="0.25"),    # today in Shanghai (01:00 local)
        rec("2026-11-02T09:00:00+00:00", fee="0.125", key="team-b")], ZoneInfo(written_in))
    if written_in != "Asia/Shanghai":
        write_history(db, [], shanghai)
    registry = CollectorRegistry()
    HistoryCollector(registry, db, ZoneInfo("Asia/Shanghai"),
                   [Budget("team-a", daily=1.0, monthly=20.0), Budget("*", monthly=5.0),
                    Budget("team-c", daily=2.0)], clock=lambda: at("2026-11-02T10:00:00+00:00"))

    def value(name, key, period):
        return registry.get_sample_value(name, {"api_key": key, "period": period})

    assert (value("llm_spend_usd", "team-a", "month"), value("llm_spend_usd", "team-a", "day")) \
        == (0.75, 0.25)
    assert (value("llm_spend_usd", "team-b", "month"), value("llm_spend_usd", "team-b", "day")) \
        == (0.125, 0.125)
    assert (value("llm_budget_usd", "team-a", "day"), value("llm_budget_usd", "team-a", "month"),
            value("llm_budget_usd", "team-b", "month"), value("llm_budget_usd", "team-b", "day"),
            value("llm_budget_usd", "team-c", "day")) == (1.0, 20.0, 5.0, None, 2.0)


def test_export_command_writes_xlsx(history, tmp_path):
    out = tmp_path / "usage.xlsx"
    done = subprocess.run([sys.executable, "-m", "exporter", "export", "--db", history.target,
                           "--from", "2026-11-01", "--to", "2026-11-03", "--group-by",
                           "model,api_key", "--granularity", "day", "--tz", "Europe/Paris",
                           "--format", "xlsx", "--output", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"wrote 4 rows to {out}\n"  # where, and how much
    book = openpyxl.load_workbook(out, read_only=True)
    assert book.sheetnames == ["Usage"]  # named for what it holds, not Sheet1
    rows = list(book.active.iter_rows(values_only=True))
    header = rows[0]
    got = sorted((r[header.index("time")], r[header.index("model")], r[header.index("requests")])
                 for r in rows[1:])
    # Paris is UTC+1 in November: 15:30Z and 16:30Z are on 1 Nov (16:30, 17:30 local),
    # 23:30Z and 00:30Z on 2 Nov (00:30, 01:30 local). Excel gets Paris's wall clock.
    nov1, nov2 = datetime(2026, 11, 1), datetime(2026, 11, 2)
    assert got == [(nov1, "claude", 1), (nov1, "gpt-4o", 1), (nov2, "claude", 1),
                   (nov2, "gpt-4o", 1)]
    bad = subprocess.run([sys.executable, "-m", "exporter", "export", "--db", history.target,
                          "--granularity", "fortnight"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("--granularity: must be one of")


def test_xlsx_spills_to_further_sheets_and_escapes_text(db, monkeypatch):
    import exporter.api.xlsx as xlsx
    from exporter.api.encode import encode
    from exporter.store.query import Filters
    from exporter.store.reads import REQUEST_COLUMNS, request_rows
    monkeypatch.setattr(xlsx, "EXCEL_MAX_ROWS", 3)  # a header and two rows per sheet
    write_history(db, [
        rec(f"2026-11-01T0{i}:00:00+00:00", rid=f"r{i}", code=500, error_type="upstream_error")
        for i in range(5)])
    with db.connect(write=True) as conn:  # a message with markup and a control character
        conn.execute("UPDATE requests SET error_message = ? WHERE request_id = 'r0'",
                     ["<b>bad</b> & \x07worse"])
    filters = Filters.parse(RANGE, 0)
    data = b"".join(encode("xlsx", request_rows(db, filters, None, None), REQUEST_COLUMNS))
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    sheets = [list(ws.iter_rows(values_only=True)) for ws in book.worksheets]
    assert [len(s) for s in sheets] == [3, 3, 2]  # 5 rows: 2 + 2 + 1, each under a header
    assert all(s[0][0] == "time" for s in sheets)
    messages = [r[REQUEST_COLUMNS.index("error_message")] for s in sheets for r in s[1:]]
    assert messages[-1] == "<b>bad</b> & worse"  # r0 is the oldest: the last row


async def test_xlsx_is_made_for_excel(api):
    # Times are date-times with a format (sortable, chartable), fees and rates have number
    # formats, the header stays in view, columns are wide enough.
    r = await api.get("/api/usage", params={**RANGE, "group_by": "model",
                                            "granularity": "day", "format": "xlsx"})
    book = openpyxl.load_workbook(io.BytesIO(await r.read()))
    sheet = book.active
    header = [c.value for c in sheet[1]]
    first = dict(zip(header, sheet[2], strict=True))
    assert first["time"].value == datetime(2026, 11, 1) and first["time"].is_date
    assert first["time"].number_format == "yyyy-mm-dd hh:mm:ss"
    assert first["fee_usd"].number_format == "$#,##0.000000"
    assert first["success_rate"].number_format == "0.00%"
    assert sheet[1][0].font.b and sheet.freeze_panes == "A2"
    assert sheet.column_dimensions["A"].width == 20


def test_spend_has_no_float_noise(db):
    # 0.1 + 0.2 in floats is 0.30000000000000004: the gauge says 0.3.
    now = datetime.now(ZoneInfo("UTC")).isoformat()
    write_history(db, [rec(now, fee="0.1", rid="a"), rec(now, fee="0.2", rid="b")])
    registry = CollectorRegistry()
    HistoryCollector(registry, db, ZoneInfo("UTC"))
    assert registry.get_sample_value("llm_spend_usd", {"api_key": "team-a",
                                                       "period": "day"}) == 0.3


def test_an_answer_whose_bill_failed_is_a_success(db):
    import dataclasses
    from datetime import datetime as dt

    from exporter.store.query import Filters
    from exporter.store.reads import request_rows, usage_rows
    from exporter.store.usage import UsageQuery
    h = History(db, HistoryMetrics(CollectorRegistry()), linger=0)
    now = dt.now().timestamp()
    for rid, code, kind in (("a", 200, "none"), ("b", 200, "accounting_error"),
                            ("c", 502, "upstream_error")):
        h.put(RequestRecord(rid, now, "s", "p", "k", "chat", code=code, error_type=kind))
    h.start()
    h.close()
    window = Filters(now - 60, now + 60, ZoneInfo("UTC"))
    [row] = [r for b in usage_rows(db, UsageQuery(window)).batches() for r in b]
    assert (row["requests"], row["successful"], row["failed"]) == (3, 2, 1)
    ok = dataclasses.replace(window, status="success")
    assert sorted(r["request_id"] for b in request_rows(db, ok, None, None).batches()
                  for r in b) == ["a", "b"]


async def test_forecast_extends_the_month_so_far_at_its_pace(admin, db):
    now = time.time()
    tz = ZoneInfo("Asia/Shanghai")
    local = datetime.fromtimestamp(now, tz)
    first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    days = calendar.monthrange(first.year, first.month)[1]

    def iso(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).isoformat()
    third = (now - first.timestamp()) / 3  # whatever the day: within the month so far
    write_history(db, [rec(iso(first.timestamp() - 3600), fee="9"),  # last month
                       rec(iso(first.timestamp() + third), fee="0.25"),
                       rec(iso(now - third), fee="0.5", tokens=(100, 20)),
                       rec(iso(now - third), model="claude", fee="1")], tz)
    api = await admin(CollectorRegistry(), db=db)
    [row] = (await get_json(api, "/api/forecast", tz="Asia/Shanghai", model="gpt-4o"))["data"]
    assert (row["month_start"], row["requests"], row["total_tokens"], row["fee_usd"]) == (
        first.isoformat(), 2, 15 + 120, 0.75)
    elapsed = (now - first.timestamp()) / 86400  # days: the month's first day, none
    pace = days / elapsed if elapsed >= 1 else 1
    assert row["forecast_fee_usd"] == pytest.approx(0.75 * pace, rel=1e-3)
    assert row["forecast_requests"] == pytest.approx(2 * pace, rel=1e-3)
    r = await api.get("/api/forecast", params={"from": "2026-11-01"})
    assert r.status == 400 and (await r.json())["error"]["parameter"] == "from"
