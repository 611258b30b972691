"""A report as an Excel workbook: a sheet per section, real numbers and dates, native charts.

XlsxWriter writes the workbook (charts, number formats, dates as Excel dates), in memory
until the file is closed: a report is a few thousand rows at most.
"""

from __future__ import annotations

import io
from datetime import datetime

import xlsxwriter

from .content import TIMES, Chart, Report, Table

FORMATS = {"int": "#,##0", "usd": "$#,##0.00####", "pct": "0.0%", "change": "+0.0%;-0.0%;0.0%",
           "pp": "+0.0\" pp\";-0.0\" pp\"", "ms": "#,##0.0 \"ms\"", "hour": "yyyy-mm-dd hh:mm",
           "day": "yyyy-mm-dd", "week": "yyyy-mm-dd", "month": "yyyy-mm"}


def workbook(report: Report) -> bytes:
    out = io.BytesIO()
    book = xlsxwriter.Workbook(out, {"in_memory": True, "strings_to_numbers": False})
    bold = book.add_format({"bold": True})
    title = book.add_format({"bold": True, "font_size": 14})
    formats = {kind: book.add_format({"num_format": f}) for kind, f in FORMATS.items()}
    about = book.add_worksheet("Report")
    sheets = [book.add_worksheet(_sheet_name(s.title, book)) for s in report.sections]
    # What the charts draw, as numbers, on a sheet of their own after the sections'.
    data = book.add_worksheet("Chart data")
    used = [0]  # next free column of the chart data
    about.set_column(0, 0, 22)
    about.set_column(1, 3, 18)
    about.write(0, 0, report.title, title)
    for i, (name, value) in enumerate(report.describe(), start=2):
        about.write(i, 0, name, bold)
        about.write(i, 1, value)
    # Page one's figures, the forecast and the fee chart, as the PDF's.
    row = _table(about, len(report.describe()) + 3, report.headline, bold, formats)
    if report.forecast is not None:
        about.write(row, 0, "Month-end forecast at the pace so far", bold)
        about.write(row, 1, report.forecast, formats["usd"])
        row += 1
    about.insert_chart(row + 1, 0, _chart(book, data, report.fee, used, formats),
                       {"x_scale": 2, "y_scale": 1.4})
    for section, sheet in zip(report.sections, sheets, strict=True):
        sheet.write(0, 0, section.title, title)
        row = 2
        for table in section.tables:
            row = _table(sheet, row, table, bold, formats) + 1
        for note in section.notes:
            sheet.write(row, 0, note)
            row += 1
        for n, chart in enumerate(section.charts):
            sheet.insert_chart(row + 1 + n * 22, 0, _chart(book, data, chart, used, formats),
                               {"x_scale": 2, "y_scale": 1.4})
    book.close()
    return out.getvalue()


def _sheet_name(title: str, book) -> str:
    """A section's title within Excel's 31 characters, cut between words, never within."""
    words, name = title.replace(":", "").replace("/", " ").split(), ""
    for word in words:
        if len(f"{name} {word}".strip()) > 31:
            break
        name = f"{name} {word}".strip()
    name = name.rstrip(",;") or title[:31]
    taken = {s.name for s in book.worksheets()}
    return name if name not in taken else f"{name[:28]} {len(taken)}"


def cell(value, kind: str):
    """A table's value as Excel stores it: dates from ISO text, naive in the report's zone
    (a total row's label stays text)."""
    if kind in TIMES and isinstance(value, str) and value != "Total":
        return datetime.fromisoformat(value).replace(tzinfo=None)
    return value


def _table(sheet, row: int, table: Table, bold, formats) -> int:
    sheet.write(row, 0, table.title, bold)
    row += 1
    for c, (_, header, kind) in enumerate(table.columns):
        sheet.write(row, c, header, bold)
        sheet.set_column(c, c, 22 if kind in ("text", *TIMES) else 16)
    for r in table.rows:
        row += 1
        for c, (key, _, kind) in enumerate(table.columns):
            kind = table.kind(r, kind, key)
            value = cell(r.get(key), kind)
            if value is None:  # nothing to compute it from: -, never 0 (a total: blank)
                if kind != "text" and r.get(table.columns[0][0]) != "Total":
                    sheet.write(row, c, "-")
                continue
            sheet.write(row, c, value, formats.get(kind))
    return row + 1


def _chart(book, data, chart: Chart, used: list[int], formats):
    """A native chart of `chart`, its numbers written to the chart data sheet."""
    first = used[0]
    data.write(0, first, chart.title)
    for i, x in enumerate(chart.x, start=1):
        data.write_datetime(i, first, x.replace(tzinfo=None), formats[chart.granularity])
    made = book.add_chart({"type": "line" if chart.kind == "line" else "column",
                           **({"subtype": "stacked"} if chart.kind == "bar" else {})})
    # Excel refuses a chart of no series: a report of nothing draws a flat one.
    drawn = chart.series or {"no requests": [0.0] * len(chart.x)}
    for n, (name, values) in enumerate(drawn.items(), start=1):
        col = first + n
        data.write(0, col, name)
        for i, v in enumerate(values, start=1):
            if v is not None:
                data.write_number(i, col, v)
        made.add_series({"name": ["Chart data", 0, col],
                         "categories": ["Chart data", 1, first, len(chart.x), first],
                         "values": ["Chart data", 1, col, len(chart.x), col]})
    used[0] = first + len(drawn) + 2
    made.set_title({"name": chart.title})
    made.set_x_axis({"name": chart.granularity, "date_axis": True,
                     "num_format": FORMATS[chart.granularity]})
    made.set_y_axis({"name": chart.unit})
    made.set_legend({"position": "bottom"})
    return made
