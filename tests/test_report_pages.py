"""Every report type drawn from a month of several models and keys and from one hour, each
page rendered: what a reader must find on the page (every column header, every model, the
hand-computed totals on page one) found there by pdftotext, nothing drawn past the page's
edge, and every series of every chart visible."""

from __future__ import annotations

import re
import subprocess
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import need_binary
from PIL import Image
from prometheus_client import CollectorRegistry
from reportlab.graphics import renderPDF
from test_reports import record

from exporter.reports.charts import PALETTE, drawing
from exporter.reports.data import OTHER
from exporter.reports.pdf import PAGE, pdf
from exporter.reports.sections import build
from exporter.store.database import Database
from exporter.store.query import Filters
from exporter.store.writer import History
from exporter.telemetry.background import HistoryMetrics

UTC = ZoneInfo("UTC")
# Ten models (the charts draw seven and "other"), four keys, long names among them.
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5-20250929", "claude-haiku-4-5",
          "gemini-2.5-pro", "gemini-2.5-flash", "o3", "gpt-4.1",
          "us.anthropic.claude-3-7-sonnet-20250219-v1:0", "text-embedding-3-small"]
KEYS = ["search-team", "support-bot", "data-science-batch-jobs", "marketing"]
NOVEMBER = Filters(datetime(2026, 11, 1, tzinfo=UTC).timestamp(),
                   datetime(2026, 12, 1, tzinfo=UTC).timestamp(), UTC)
HOUR = Filters(datetime(2026, 10, 20, 10, tzinfo=UTC).timestamp(),
               datetime(2026, 10, 20, 11, tzinfo=UTC).timestamp(), UTC)
NOW = datetime(2026, 12, 6, tzinfo=UTC).timestamp()


def month() -> list:
    """Model m (0 to 9) on day d of November unless 3 divides d + m: 20 days of each, 200
    requests of 1,000 x (m + 1) input and 200 output tokens, at gpt-4o's prices ($2.50 and
    $10 per million): $0.0025 x (m + 1) + $0.002 each; 20 x ($0.0025 x 55 + 10 x $0.002) =
    $3.15 and 20 x (55,000 + 2,000) = 1,140,000 tokens; and 4 failures (no tokens): 204
    requests, 98.0% successful. The previous 30 days: 100 requests of 1,000 and 200 tokens
    ($0.0045) on 15 October and the hour's 12 on 20 October: $0.504 and 134,400 tokens,
    so +525.0% and +748.2%. Each model's latency its own: 0.5 s + 0.1 s x m."""
    rows = []
    for d in range(1, 31):
        for m, model in enumerate(MODELS):
            if (d + m) % 3:
                when = datetime(2026, 11, d, (d * m) % 24, m, tzinfo=UTC)
                rows.append(record(when.isoformat(), model, KEYS[(d + m) % 4],
                                   text=1000 * (m + 1), output=200))
                rows[-1].duration = 0.5 + 0.1 * m
    rows += [record(f"2026-11-{d:02}T08:00:00+00:00", "gpt-4o", "marketing", code=500)
             for d in (3, 9, 17, 25)]
    rows += [record(f"2026-10-15T{h % 24:02}:{h // 24:02}:00+00:00", "gpt-4o", "search-team",
                    text=1000, output=200) for h in range(100)]
    # The hour: 12 requests of three models, one of them once only.
    rows += [record((datetime(2026, 10, 20, 10, tzinfo=UTC) + timedelta(minutes=5 * i))
                    .isoformat(), MODELS[0 if i < 6 else 1 if i < 11 else 2], KEYS[i % 2],
                    text=1000, output=200) for i in range(12)]
    return rows


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Database:
    db = Database(str(tmp_path_factory.mktemp("pages") / "h.db"))
    h = History(db, HistoryMetrics(CollectorRegistry()), linger=0)
    for i, r in enumerate(month()):
        r.request_id = f"r{i}"
        h.put(r)
    h.start()
    h.close()
    return db


TWO_DAYS = Filters(NOVEMBER.start + 86400, NOVEMBER.start + 3 * 86400, UTC)  # hourly
FIXTURES = {"month": NOVEMBER, "two days": TWO_DAYS, "hour": HOUR}


def words(data: bytes, page: int | None = None) -> list[tuple[str, float, float]]:
    """Every word pdftotext finds on the page, with its left and right edge in points."""
    pages = ["-f", str(page), "-l", str(page)] if page else []
    html = subprocess.run([need_binary("pdftotext"), "-bbox", *pages, "-", "-"], input=data,
                          capture_output=True, check=True).stdout.decode()
    return [(w, float(a), float(b)) for a, b, w in re.findall(
        r'<word xMin="([\d.]+)" yMin="[\d.]+" xMax="([\d.]+)" yMax="[\d.]+">([^<]*)</word>',
        html)]


@pytest.mark.parametrize("kind", ["summary", "cost", "trend", "detailed"])
@pytest.mark.parametrize("fixture", list(FIXTURES))
def test_every_header_and_model_is_on_the_page(history, kind, fixture, tmp_path):
    filters = FIXTURES[fixture]
    report = build(history, kind, filters, NOW)
    data = pdf(report)
    (tmp_path / "r.pdf").write_bytes(data)
    subprocess.run([need_binary("pdftoppm"), "-r", "12", "-png", str(tmp_path / "r.pdf"),
                    str(tmp_path / "page")], check=True)
    pages = len(list(tmp_path.glob("page*.png")))
    # Each page renders; a trend of two days was 14 pages: now page one, its two tables
    # of 48 hours and its five charts two to a page. The detailed month is its 204 rows.
    assert 2 <= pages <= {"summary": 4, "cost": 3, "trend": 6, "detailed": 8}[kind], pages
    found = words(data)
    # Nothing past the margins (1.5 cm, 42.5 points), where the page cuts it off.
    outside = [(w, a, b) for w, a, b in found if a < 40 or b > PAGE[0] - 40]
    assert not outside, outside[:5]
    text = {w for w, _, _ in found}
    for section in report.sections:
        for table in section.tables:
            for _, header, _ in table.columns:
                assert set(header.split()) <= text, (table.title, header)
    # Each model the period used, in a table or named in the note of what "other" holds.
    used = {r.model for r in month() if filters.start <= r.started < filters.end}
    names = " ".join(w for w, _, _ in found)
    missing = [m for m in used if m not in text and m + "," not in text and m + "." not in text]
    assert not missing, (missing, names[:2000])


def test_a_table_too_wide_for_the_page_is_cut_into_parts_repeating_its_keys(history):
    from exporter.reports.content import Section, Table
    wide = Table("Wide", [("day", "Day", "day"), ("model", "Model", "text"),
                          *((f"c{i}", f"Column {i}", "int") for i in range(20))],
                 [{"day": "2026-11-01T00:00:00+00:00", "model": "gpt-4o",
                   **{f"c{i}": 123_456_789 for i in range(20)}}])
    report = build(history, "summary", NOVEMBER, NOW)
    report.sections = [Section("Wide", [wide])]
    found = words(pdf(report), page=2)
    assert not [w for w, a, b in found if a < 40 or b > PAGE[0] - 40]
    text = " ".join(w for w, _, _ in found)
    # Twenty 11-character figures (55 points each) do not fit 770 points with the keys:
    # two parts, each with the day and the model, every column and figure in one of them.
    assert "Wide (1 of 2: Column 0 to Column" in text and "Wide (2 of 2:" in text
    assert text.count("gpt-4o") == 2 and text.count("2026-11-01") == 2
    assert text.count("123,456,789") == 20
    assert all(f"Column {i}" in text for i in range(20))


def test_page_one_is_the_answer_worked_out_by_hand(history):
    """month()'s docstring: $3.15, 204 requests, 1,140,000 tokens, 98.0% successful,
    against $0.504, 112 requests, 134,400 tokens and 100% in the previous 30 days."""
    first = page_text(pdf(build(history, "summary", NOVEMBER, NOW)))
    boxes = ["Fee", "$3.15", "previous period $0.50, change +525.0%",
             "Requests", "204", "previous period 112, change +82.1%",
             "Total tokens", "1,140,000", "previous period 134,400, change +748.2%",
             "Success rate", "98.0%", "previous period 100.0%, change -2.0 pp"]
    assert [line for line in first if line in boxes] == boxes[0::3] + boxes[1::3] + boxes[2::3]
    assert "Fee per day, by model" in first
    assert "Period: 2026-11-01 00:00+00:00 to 2026-12-01 00:00+00:00 (end excluded)" in first
    assert not [line for line in first if "forecast" in line]  # November is over by now
    # On 16 November, halfway: each model's 10 requests of days 1 to 15 (and 2 failures),
    # $1.575 of the month's $3.15, so the month is on course for $3.15.
    halfway = datetime(2026, 11, 16, tzinfo=UTC).timestamp()
    first = page_text(pdf(build(history, "cost", Filters(NOVEMBER.start, halfway, UTC),
                                halfway)))
    assert "102" in first and "Month-end forecast at the pace so far: $3.15." in first
    # The usage API's forecast, by the same rule: on the month's first day, the month so far.
    from exporter.store.forecast import month_forecast
    for now in (halfway, NOVEMBER.start + 12 * 3600):
        period = Filters(NOVEMBER.start, now, UTC)
        assert build(history, "cost", period, now).forecast == pytest.approx(
            month_forecast(history, period, now)["forecast_fee_usd"], abs=1e-9)
    first_day = build(history, "cost", Filters(NOVEMBER.start, NOVEMBER.start + 12 * 3600, UTC),
                      NOVEMBER.start + 12 * 3600)
    assert first_day.forecast == first_day.headline.rows[0]["this"]


def page_text(data: bytes) -> list[str]:
    """Page one's lines as pdftotext reads them (each box of the headline on its own)."""
    done = subprocess.run([need_binary("pdftotext"), "-f", "1", "-l", "1", "-", "-"],
                          input=data, capture_output=True, check=True)
    return [line for line in done.stdout.decode().splitlines() if line]


def visible(chart, tmp_path) -> dict[str, int]:
    """Pixels of each series' colour inside the plot (not the legend's swatches), the chart
    drawn to a PDF on its own and rendered by pdftoppm at 100 dpi."""
    d = drawing(chart, PAGE[0] - 85)
    plot = next(c for c in d.contents if hasattr(c, "valueAxis"))
    (tmp_path / "chart.pdf").write_bytes(renderPDF.drawToString(d))
    subprocess.run([need_binary("pdftoppm"), "-r", "100", "-png", "-singlefile",
                    str(tmp_path / "chart.pdf"), str(tmp_path / "chart")], check=True)
    image = Image.open(tmp_path / "chart.png").convert("RGB")
    scale = image.height / d.height
    top, bottom = int((d.height - plot.y - plot.height) * scale), int((d.height - plot.y) * scale)
    raw = image.crop((0, top, image.width, bottom)).tobytes()
    pixels = [tuple(raw[i:i + 3]) for i in range(0, len(raw), 3)]
    out = {}
    for i, name in enumerate(chart.series):
        want = tuple(int(c * 255) for c in PALETTE[i].rgb())
        out[name] = sum(1 for p in pixels
                        if all(abs(a - b) < 40 for a, b in zip(p, want, strict=True)))
    return out


@pytest.mark.parametrize("fixture", list(FIXTURES))
def test_every_series_of_every_chart_is_drawn(history, fixture, tmp_path):
    report = build(history, "trend", FIXTURES[fixture], NOW)
    charts = [report.fee, *report.sections[-1].charts]
    for chart in charts:
        assert len(chart.series) <= 8, chart.title
        drawn = visible(chart, tmp_path)
        # A series with anything to show (a value not 0 nor none) has marks in the plot;
        # of series equal at every point (one request a day each), the last drawn covers
        # the others, and must show.
        shown = {tuple(values): n for n, values in chart.series.items() if any(values)}
        shown = set(shown.values())
        assert all(drawn[n] >= 6 for n in shown), (chart.title, drawn)
    # The axis covers the whole period, empty buckets too: 30 days, 48 hours, one hour.
    assert len(report.fee.x) == {"month": 30, "two days": 48, "hour": 1}[fixture]
    if fixture == "month":  # seven models and the other three together
        assert list(report.fee.series)[-1] == OTHER and len(report.fee.series) == 8


@pytest.mark.parametrize("kind,start,end,given,step,buckets", [
    ("trend", "2026-11-01", "2026-11-03", None, "hour", 48),
    ("trend", "2026-11-01", "2026-12-01", None, "day", 30),
    ("detailed", "2026-11-01", "2026-11-02", None, "day", 1),  # never hours: rows by key
    ("trend", "2026-06-01", "2026-12-01", None, "week", 27),  # 1 June 2026 is a Monday
    ("trend", "2025-12-01", "2026-12-01", None, "month", 12),  # a year: twelve months
    ("detailed", "2025-12-01", "2026-12-01", "week", "week", 53),  # as asked
])
def test_a_long_period_has_coarser_buckets_unless_asked(history, kind, start, end, given,
                                                        step, buckets):
    filters = Filters(datetime.fromisoformat(start + "T00:00:00+00:00").timestamp(),
                      datetime.fromisoformat(end + "T00:00:00+00:00").timestamp(), UTC)
    report = build(history, kind, filters, NOW, given)
    assert (report.fee.granularity, len(report.fee.x)) == (step, buckets)
