"""A report as a PDF: page one is the answer (the period and filters, the headline figures
against the previous period, the month-end forecast, the fee over the period), then the
sections: tables within the page (grids.py), charts (charts.py), notes, page numbers.

ReportLab draws it all (its charts are its own, so no plotting library or system package
is needed); fonts are the PDF standard ones.
"""

from __future__ import annotations

import io

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.platypus import (
    CondPageBreak,
    Flowable,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    TableStyle,
)
from reportlab.platypus import Table as Grid

from .charts import drawing
from .content import Report, Table, text, usd
from .grids import escape, grids

PAGE = landscape(A4)
MARGIN = 1.5 * cm
STYLES = getSampleStyleSheet()
SECTION = ParagraphStyle("section", parent=STYLES["Heading1"], keepWithNext=1)
FIGURE = ParagraphStyle("figure", fontName="Helvetica-Bold", fontSize=18, leading=22)
SMALL = ParagraphStyle("small", fontName="Helvetica", fontSize=8, leading=10,
                       textColor=colors.HexColor("#444444"))


def pdf(report: Report) -> bytes:
    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=PAGE, title=report.title,
                            author=f"llm-usage-exporter {report.version}",
                            leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN,
                            bottomMargin=MARGIN)
    story = page_one(report, doc.width)
    for n, section in enumerate(report.sections):
        # Each section on a page of its own unless the last one left room for a start.
        story += [PageBreak() if n == 0 else CondPageBreak(9 * cm),
                  Paragraph(escape(section.title), SECTION)]
        for table in section.tables:
            story += grids(table, doc.width)
        for note in section.notes:
            story.append(Paragraph(escape(note), STYLES["Normal"]))
        for chart in section.charts:
            story += [Spacer(1, 0.4 * cm), drawing(chart, doc.width)]
    doc.build(story, onFirstPage=_page_number, onLaterPages=_page_number)
    return out.getvalue()


def page_one(report: Report, width: float) -> list[Flowable]:
    """The title, the period and filters, four headline figures, the forecast, the fee."""
    facts = "<br/>".join(f"<b>{name}:</b> {escape(value)}"
                         for name, value in report.describe())
    story: list[Flowable] = [Paragraph(report.title, STYLES["Title"]),
                             Paragraph(facts, STYLES["Normal"]), Spacer(1, 0.4 * cm),
                             _headline(report.headline, width)]
    if report.forecast is not None:
        story.append(Paragraph(f"Month-end forecast at the pace so far: "
                               f"<b>{usd(report.forecast)}</b>.", STYLES["Normal"]))
    return story + [Spacer(1, 0.3 * cm), drawing(report.fee, width)]


def _headline(table: Table, width: float) -> Grid:
    """A box per figure: its name, its value large, the previous period's and the change."""
    cells = []
    for r in table.rows:
        kind = r["kind"]
        change = text(r.get("change"), r["change_kind"])
        cells.append([Paragraph(escape(r["metric"]), SMALL),
                      Paragraph(escape(text(r["this"], kind)), FIGURE),
                      Paragraph(escape(f"previous period {text(r['previous'], kind)}, "
                                        f"change {change}"), SMALL)])
    grid = Grid([cells], colWidths=[width / len(cells)] * len(cells))
    grid.setStyle(TableStyle([("BOX", (0, 0), (-1, -1), 0.5, colors.grey),
                              ("INNERGRID", (0, 0), (-1, -1), 0.5, colors.grey),
                              ("VALIGN", (0, 0), (-1, -1), "TOP"),
                              ("TOPPADDING", (0, 0), (-1, -1), 6),
                              ("BOTTOMPADDING", (0, 0), (-1, -1), 8)]))
    return grid


def _page_number(canvas, doc) -> None:
    canvas.saveState()
    canvas.setFont("Helvetica", 8)
    canvas.drawRightString(PAGE[0] - MARGIN, 0.8 * cm, f"Page {doc.page}")
    canvas.restoreState()
