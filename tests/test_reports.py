"""Reports on demand: the numbers of a hand-computed fixture in the PDF's text and the
workbook's cells, the same as the usage API's, a PDF that opens and renders, the command
line as typed."""

from __future__ import annotations

import io
import itertools
import subprocess
import sys
from datetime import datetime
from decimal import Decimal as D
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from conftest import need_binary
from PIL import Image
from prometheus_client import CollectorRegistry

from exporter.record import RequestRecord, Usage
from exporter.reports.content import usd
from exporter.reports.pdf import pdf
from exporter.reports.sections import build
from exporter.reports.workbook import workbook
from exporter.store.database import Database
from exporter.store.query import Filters
from exporter.store.reads import usage_rows
from exporter.store.usage import UsageQuery
from exporter.store.writer import History
from exporter.telemetry.background import HistoryMetrics

ROOT = Path(__file__).parent.parent
UTC = ZoneInfo("UTC")
M = D(1_000_000)
# gpt-4o's published prices: $2.50 input, $1.25 cache reads, $10 output per million.
IN, CACHED, OUT = D("2.50") / M, D("1.25") / M, D("10") / M


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def record(when, model, key, text=0, cached=0, output=0, code=200) -> RequestRecord:
    r = RequestRecord(f"r-{when}", at(when), "openai", "openai", key, "chat", model=model,
                      code=code, error_type="none" if code == 200 else "upstream_error",
                      duration=0.5)
    r.usage = Usage(input_text=text, input_cache_read=cached, output_text=output)
    r.fees = [(d, t, n * price) for d, t, n, price in (
        ("input", "text", text, IN), ("input", "cache_read", cached, CACHED),
        ("output", "text", output, OUT)) if n]
    r.fee = sum((usd for _, _, usd in r.fees), D(0))
    return r


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def history(request, tmp_path_factory) -> Database:
    """The reports' history, on each engine (written once per module)."""
    if request.param == "sqlite":
        db = Database(str(tmp_path_factory.mktemp("reports") / "h.db"))
    else:
        db = Database(request.getfixturevalue("postgres_server").create_database("reports"))
    h = History(db, HistoryMetrics(CollectorRegistry()), linger=0)
    for r in (
        # The period, 2026-11-01 to 11-03: $0.0045, $0.0035 and a failure.
        record("2026-11-01T10:00:00+00:00", "gpt-4o", "alice", text=1000, output=200),
        record("2026-11-02T12:00:00+00:00", "gpt-4o", "bob", text=500, cached=1000,
               output=100),
        record("2026-11-02T13:00:00+00:00", "claude-sonnet-4-5", "alice", code=500),
        # The previous period of equal length, 10-30 to 11-01: $0.0035.
        record("2026-10-31T09:00:00+00:00", "gpt-4o", "alice", text=1000, output=100),
    ):
        h.put(r)
    h.start()
    h.close()
    return db


PERIOD = Filters(at("2026-11-01T00:00:00+00:00"), at("2026-11-03T00:00:00+00:00"), UTC)
NOW = at("2026-12-04T00:00:00+00:00")


def pdf_text(data: bytes) -> str:
    done = subprocess.run([need_binary("pdftotext"), "-layout", "-", "-"], input=data,
                          capture_output=True, check=True)
    return done.stdout.decode()


def test_summary_totals_against_the_previous_period(history):
    report = build(history, "summary", PERIOD, NOW)
    totals = {r["metric"]: r for r in report.sections[0].tables[0].rows}
    # 0.0025 + 0.002 + 0.00125 + 0.00125 + 0.001 = $0.008 against $0.0035: +128.6%.
    assert round(totals["Fee"]["this"], 10) == 0.008
    assert round(totals["Fee"]["previous"], 10) == 0.0035
    assert round(totals["Fee"]["change"], 4) == round(0.0045 / 0.0035, 4)
    assert (totals["Requests"]["this"], totals["Requests"]["previous"]) == (3, 1)
    assert totals["Success rate"]["this"] == pytest.approx(2 / 3)
    assert totals["Total tokens"]["this"] == 1000 + 200 + 500 + 1000 + 100
    # The same as the usage API for the same query.
    [api] = usage_rows(history, UsageQuery(PERIOD)).all()
    assert totals["Fee"]["this"] == api["fee_usd"] and totals["Requests"]["this"] == 3
    text = pdf_text(pdf(report))
    # One money format: two significant digits under a cent; a rate's change in points.
    assert totals["Success rate"]["change_kind"] == "pp"
    for shown in ("$0.0080", "$0.0035", "128.6%", "66.7%", "2,800", " pp"):
        assert shown in text, shown
    assert "2026-11-01 00:00+00:00 to 2026-11-03 00:00+00:00" in text


def test_cost_by_category_and_what_caching_saved(history):
    report = build(history, "cost", PERIOD, NOW)
    categories = {r["category"]: round(r["fee_usd"], 10)
                  for r in report.sections[1].tables[0].rows}
    # And their grand total: 0.00375 + 0.003 + 0.00125.
    assert categories == {"Input, text": 0.00375, "Output, text": 0.003,
                          "Input, cache read": 0.00125, "Total": 0.008}
    # Every table of amounts ends in its total: the period's three requests, $0.008.
    for table in report.sections[0].tables:
        total = table.rows[-1]
        assert (total[table.columns[0][0]], total["requests"], round(total["fee_usd"], 10)) \
            == ("Total", 3, 0.008), table.title
    # gpt-4o's input text cost $0.00375 for 1,500 tokens ($2.50/M): its 1,000 cache reads
    # would have cost $0.0025 and cost $0.00125, so caching saved $0.00125.
    assert "What cache reads saved against the model's input text price: $0.0013" in \
        report.sections[1].notes[0]
    book = openpyxl.load_workbook(io.BytesIO(workbook(report)))
    # Whole words within 31 characters; the numbers of page one's fee chart last.
    assert book.sheetnames == ["Report", "Fees by model, key and service",
                               "Fees by token category", "Chart data"]
    assert len(book["Report"]._charts) == 1
    cells = [[c.value for c in row] for row in book["Fees by token category"].iter_rows()]
    assert ["Input, text", 0.00375] in [[a, round(b, 10) if isinstance(b, float) else b]
                                       for a, b, *_ in cells]


def test_trend_and_detailed_are_real_dates_and_charts(history, tmp_path):
    trend = build(history, "trend", PERIOD, NOW)  # two days: hourly
    section = trend.sections[0]
    assert [c.title for c in section.charts] == ["Tokens per hour", "Fee per hour",
                                                 "Requests per hour", "Error rate",
                                                 "p95 latency"]
    p95 = section.charts[4]
    assert p95.series["gpt-4o"].count(500.0) == 2  # each request's 0.5 s, in ms
    book = openpyxl.load_workbook(io.BytesIO(workbook(trend)))
    sheet = book[book.sheetnames[1]]
    assert len(sheet._charts) == 5
    detailed = build(history, "detailed", PERIOD, NOW)
    book = openpyxl.load_workbook(io.BytesIO(workbook(detailed)))
    assert book.sheetnames == ["Report", "Per day, model and API key", "Chart data"]
    days = [row[0] for row in book[book.sheetnames[1]].iter_rows(min_row=5, values_only=True)]
    assert days[:3] == [datetime(2026, 11, 1), datetime(2026, 11, 2), datetime(2026, 11, 2)]


def test_the_pdf_opens_and_a_chart_page_is_drawn(history, tmp_path):
    data = pdf(build(history, "trend", PERIOD, NOW))
    (tmp_path / "r.pdf").write_bytes(data)
    info = subprocess.run([need_binary("pdfinfo"), str(tmp_path / "r.pdf")],
                          capture_output=True, text=True, check=True).stdout
    pages = int(next(line.split()[-1] for line in info.splitlines()
                     if line.startswith("Pages:")))
    assert pages >= 4  # the title, the table, the charts
    subprocess.run([need_binary("pdftoppm"), "-r", "40", "-f", "3", "-l", "3", "-png",
                    str(tmp_path / "r.pdf"), str(tmp_path / "page")], check=True)
    image = Image.open(next(tmp_path.glob("page*.png"))).convert("L")
    dark = sum(image.histogram()[:200])  # pixels darker than a light grey
    assert dark > 500  # lines, axes and labels, not a blank page
    assert f"Page {pages}" in pdf_text(data)


def test_report_from_the_command_line(history, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "exporter", "report", "--db", history.target,
                               *args], capture_output=True, text=True, cwd=tmp_path,
                              timeout=60)

    done = run("--from", "2026-11-01", "--to", "2026-11-03", "--type", "cost")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "llm-cost-report-2026-11-01-to-2026-11-03.pdf\n"
    assert (tmp_path / done.stdout.strip()).read_bytes().startswith(b"%PDF")
    done = run("--from", "2026-11-01", "--tz", "Mars/Olympus", "--format", "xlsx")
    assert (done.returncode, done.stderr.count("\n")) == (2, 1)
    assert done.stderr.startswith("--tz: ")


def test_the_outputs_extension_decides_the_format_and_a_contradiction_is_refused(
        history, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "exporter", "report", "--db", history.target,
                               "--from", "2026-11-01", "--to", "2026-11-03", *args],
                              capture_output=True, text=True, cwd=tmp_path, timeout=60)

    done = run("--output", "x.xlsx")
    assert (done.returncode, done.stdout) == (0, "x.xlsx\n"), done.stderr
    assert (tmp_path / "x.xlsx").read_bytes().startswith(b"PK")  # a workbook, not a PDF
    done = run("--format", "xlsx", "--output", "x.pdf")
    assert (done.returncode, done.stderr) == (2, "--output: x.pdf ends in .pdf and --format "
                                                 "is xlsx: make them agree, or leave --format "
                                                 "out\n")
    assert not (tmp_path / "x.pdf").exists()


def first_column(book) -> list:
    """The first table's first column on the first section's sheet, to its total."""
    rows = book[book.sheetnames[1]].iter_rows(min_row=5, values_only=True)
    return list(itertools.takewhile(lambda v: v != "Total", (row[0] for row in rows)))


def test_granularity_is_a_flag_and_too_many_buckets_a_one_line_error(history, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "exporter", "report", "--db", history.target,
                               "--type", "trend", *args], capture_output=True, text=True,
                              cwd=tmp_path, timeout=60)

    done = run("--from", "2026-11-01", "--to", "2026-11-03", "--granularity", "day",
               "--output", "t.xlsx")
    assert done.returncode == 0, done.stderr
    book = openpyxl.load_workbook(tmp_path / "t.xlsx")
    assert first_column(book) == [datetime(2026, 11, 1), datetime(2026, 11, 2)]  # not hours
    # A year of hours: 8,760 buckets (2026 has no 29 February).
    done = run("--from", "2026-01-01", "--to", "2027-01-01", "--granularity", "hour")
    assert (done.returncode, done.stderr) == (2, "--granularity: hour over this period is "
                                                 "8,760 buckets, past the 1,000 a report can "
                                                 "show: choose a coarser one\n")


async def test_the_admin_api_refuses_a_report_of_too_many_buckets(history, admin):
    client = await admin(CollectorRegistry(), db=history)
    async with client.get("/api/report", params={"from": "2026-01-01", "to": "2027-01-01",
                                                 "granularity": "hour"}) as r:
        assert r.status == 400 and (await r.json())["error"]["parameter"] == "granularity"
    async with client.get("/api/report", params={"from": "2026-11-01", "to": "2026-11-03",
                                                 "granularity": "week", "type": "trend",
                                                 "format": "xlsx"}) as r:
        assert r.status == 200
        book = openpyxl.load_workbook(io.BytesIO(await r.read()))
    # 2026-11-01 is a Sunday: its week began on Monday 26 October.
    assert first_column(book) == [datetime(2026, 10, 26), datetime(2026, 11, 2)]


def test_a_report_of_nothing_says_so_and_shows_no_false_zero(history, tmp_path):
    done = subprocess.run([sys.executable, "-m", "exporter", "report", "--db", history.target,
                           "--from", "2026-11-01", "--to", "2026-11-03", "--model", "nothing",
                           "--output", "empty.pdf"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert (done.returncode, done.stdout) == (0, "empty.pdf\n")
    assert done.stderr == ("report: no request matched the period and filters; empty.pdf "
                           "says so\n")
    text = pdf_text((tmp_path / "empty.pdf").read_bytes())
    assert "Nothing matched" in text and "No request matched this period" in text
    assert "0.0%" not in text  # a success rate of no requests is -, not 0.0%


async def test_the_admin_api_serves_reports(history, admin):
    client = await admin(CollectorRegistry(), db=history)
    period = {"from": "2026-11-01", "to": "2026-11-03", "tz": "UTC"}
    async with client.get("/api/report", params={**period, "format": "xlsx"}) as r:
        assert r.status == 200
        assert r.headers["Content-Disposition"] == (
            'attachment; filename="llm-summary-report-2026-11-01-to-2026-11-03.xlsx"')
        book = openpyxl.load_workbook(io.BytesIO(await r.read()))
    totals = {row[0]: row[1] for row in book["Totals"].iter_rows(min_row=4,
                                                                   values_only=True)}
    assert round(totals["Fee"], 10) == 0.008 and totals["Requests"] == 3
    async with client.get("/api/report", params={**period, "type": "cost"}) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "application/pdf"
        assert (await r.read()).startswith(b"%PDF")
    async with client.get("/api/report", params={**period, "type": "weekly"}) as r:
        assert r.status == 400 and (await r.json())["error"]["parameter"] == "type"
    # Every filter reaches the report's process, the status too: only the failure.
    async with client.get("/api/report", params={**period, "format": "xlsx",
                                                 "status": "error"}) as r:
        book = openpyxl.load_workbook(io.BytesIO(await r.read()))
    totals = {row[0]: row[1] for row in book["Totals"].iter_rows(min_row=4,
                                                                   values_only=True)}
    assert (totals["Requests"], totals["Fee"]) == (1, 0)


async def test_a_report_that_fails_is_answered_503_with_its_reason(admin, tmp_path):
    garbage = tmp_path / "not-a-history.db"
    garbage.write_bytes(b"this is no SQLite database" * 100)
    client = await admin(CollectorRegistry(), db=Database(str(garbage)))
    async with client.get("/api/report", params={"from": "2026-11-01"}) as r:
        assert r.status == 503
        message = (await r.json())["error"]["message"]
    assert message.startswith("the report failed: ") and "not a database" in message


@pytest.mark.parametrize("amount,shown", [
    (0, "$0.00"), (0.5, "$0.50"), (1234.5, "$1,234.50"), (0.0527, "$0.053"),
    (0.000444, "$0.00044"), (0.0019725, "$0.0020"), (-0.25, "$-0.25")])
def test_one_money_format_keeps_two_significant_digits_under_a_cent(amount, shown):
    assert usd(amount) == shown


def test_the_cost_report_explains_unpriced_requests_and_fees_with_no_tokens(db):
    """By hand: two requests of a model with no price; a fine-tuning job's 5,768 trained
    tokens of gpt-4o-mini at $3 per million, $0.017304, billed with no token of its own."""
    h = History(db, HistoryMetrics(CollectorRegistry()), linger=0)
    for i in range(2):
        r = record(f"2026-11-01T1{i}:00:00+00:00", "llama-local", "alice", text=40, output=9)
        r.fees, r.fee, r.unpriced = [], D(0), True
        h.put(r)
    training = RequestRecord("t#training", at("2026-11-02T09:00:00+00:00"), "openai",
                             "openai", "tuners", "fine_tuning",
                             model="gpt-4o-mini-2024-07-18", code=200, share=True)
    training.fees = [("input", "training", D(5768) * 3 / 1_000_000)]
    training.fee = D("0.017304")
    h.put(training)
    h.start()
    h.close()
    report = build(db, "cost", PERIOD, NOW)
    notes = report.sections[1].notes
    # Page one's fee holds the training's, billed to no request, alone on 2 November.
    second = Filters(at("2026-11-02T00:00:00+00:00"), at("2026-11-03T00:00:00+00:00"), UTC)
    fee, requests = build(db, "summary", second, NOW).headline.rows[:2]
    assert (round(fee["this"], 10), requests["this"]) == (0.017304, 0)
    assert "Unpriced requests (a model with no known price: they cost nothing here): 2: " \
           "llama-local 2." in notes[-2]
    assert notes[-1] == ("A fee with no tokens: gpt-4o-mini-2024-07-18 (fine_tuning), "
                         "$0.017: the training of fine-tuning jobs, billed by trained token "
                         "when a job succeeds.")
