"""A report as a PDF: a title page, tables that break across pages with their header
repeated, line and bar charts with axes, units and legends, and page numbers.

ReportLab draws it all (its charts are its own, so no plotting library or system package
is needed); fonts are the PDF standard ones.
"""

from __future__ import annotations

import io

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.charts.linecharts import HorizontalLineChart
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.platypus import (
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    TableStyle,
)
from reportlab.platypus import Table as Grid

from .data import Chart, Report, Table, usd

PALETTE = [colors.HexColor(c) for c in ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                                         "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")]
PAGE = landscape(A4)


def pdf(report: Report) -> bytes:
    out = io.BytesIO()
    styles = getSampleStyleSheet()
    doc = SimpleDocTemplate(out, pagesize=PAGE, title=report.title,
                            author=f"llm-usage-exporter {report.version}",
                            leftMargin=1.5 * cm, rightMargin=1.5 * cm,
                            topMargin=1.5 * cm, bottomMargin=1.5 * cm)
    story = [Spacer(1, 4 * cm), Paragraph(report.title, styles["Title"]), Spacer(1, cm)]
    for name, value in report.describe():
        story.append(Paragraph(f"<b>{name}:</b> {_escape(value)}", styles["Normal"]))
    for section in report.sections:
        story += [PageBreak(), Paragraph(_escape(section.title), styles["Heading1"])]
        for table in section.tables:
            story += [Paragraph(_escape(table.title), styles["Heading3"]), _grid(table),
                      Spacer(1, 0.5 * cm)]
        for note in section.notes:
            story.append(Paragraph(_escape(note), styles["Normal"]))
        for chart in section.charts:
            story += [Spacer(1, 0.5 * cm), _chart(chart, doc.width)]
    doc.build(story, onFirstPage=_page_number, onLaterPages=_page_number)
    return out.getvalue()


def _escape(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _page_number(canvas, doc) -> None:
    canvas.saveState()
    canvas.setFont("Helvetica", 8)
    canvas.drawRightString(PAGE[0] - 1.5 * cm, 0.8 * cm, f"Page {doc.page}")
    canvas.restoreState()


def text(value, kind: str) -> str:
    """A table value as the PDF shows it: - for a figure with nothing to compute it from
    (a success rate without requests), never 0."""
    if value is None:
        return "" if kind == "text" else "-"
    if kind == "int":
        return f"{value:,.0f}"
    if kind == "usd":
        return usd(value)
    if kind == "pct":
        return f"{value:.1%}"
    if kind == "pp":  # a change of a rate, in percentage points
        return f"{value * 100:+.1f} pp"
    if kind == "ms":
        return f"{value:,.1f} ms"
    if kind == "time":
        return str(value)[:16].replace("T", " ")
    return str(value)


def _grid(table: Table) -> Grid:
    header = [c[1] for c in table.columns]
    body = [[text(r.get(key), table.kind(r, kind, key))
             for key, _, kind in table.columns] for r in table.rows]
    grid = Grid([header] + (body or [["(none)"] + [""] * (len(header) - 1)]), repeatRows=1)
    grid.setStyle(TableStyle([
        ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8), ("FONT", (0, 1), (-1, -1), "Helvetica", 8),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8e8")),
        ("ALIGN", (1, 0), (-1, -1), "RIGHT"), ("GRID", (0, 0), (-1, -1), 0.25, colors.grey)]))
    return grid


def _chart(chart: Chart, width: float) -> Drawing:
    """A line or (stacked) bar chart, its y axis named by its unit, a legend below."""
    height = 7 * cm
    d = Drawing(width, height + 2.5 * cm)
    plot = HorizontalLineChart() if chart.kind == "line" else VerticalBarChart()
    plot.x, plot.y, plot.width, plot.height = 1.8 * cm, 2.2 * cm, width - 2.5 * cm, height
    # The largest series, as many as there are colours: a chart of 40 lines is unreadable.
    names = sorted(chart.series, key=lambda n: -sum(v or 0 for v in chart.series[n]))[
        :len(PALETTE)]
    plot.data = [[v if v is not None else 0 for v in chart.series[n]] for n in names] \
        or [[0] * max(len(chart.x), 1)]
    labels = [x.strftime("%m-%d %H:%M" if _hourly(chart) else "%Y-%m-%d") for x in chart.x]
    step = max(len(labels) // 12, 1)  # at most a dozen labels under the axis
    plot.categoryAxis.categoryNames = [t if i % step == 0 else "" for i, t in enumerate(labels)]
    plot.categoryAxis.labels.angle, plot.categoryAxis.labels.fontSize = 30, 6
    plot.categoryAxis.labels.boxAnchor = "ne"
    plot.valueAxis.labels.fontSize = 7
    plot.valueAxis.valueMin = 0
    for i in range(len(names)):
        if chart.kind == "line":
            plot.lines[i].strokeColor = PALETTE[i]
        else:
            plot.bars[i].fillColor = PALETTE[i]
    if chart.kind == "bar":
        plot.categoryAxis.style = "stacked"
    d.add(plot)
    d.add(String(0, height + 2.4 * cm, chart.title, fontName="Helvetica-Bold", fontSize=10))
    d.add(String(0, height + 2.4 * cm - 14, f"y: {chart.unit}", fontName="Helvetica",
                 fontSize=7))
    legend = Legend()
    legend.x, legend.y = 1.8 * cm, 0.35 * cm
    legend.fontSize, legend.columnMaximum = 7, 2
    legend.alignment = "right"
    legend.colorNamePairs = [(PALETTE[i], n) for i, n in enumerate(names)]
    d.add(legend)
    return d


def _hourly(chart: Chart) -> bool:
    return len(chart.x) > 1 and (chart.x[1] - chart.x[0]).total_seconds() < 86400
