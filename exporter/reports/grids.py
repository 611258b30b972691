"""A report's tables in a PDF: each column as wide as its content, headers wrapped, and a
table too wide for the page cut into parts that each repeat the columns naming a row."""

from __future__ import annotations

from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import cm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.platypus import CondPageBreak, Flowable, Paragraph, Spacer, TableStyle
from reportlab.platypus import Table as Grid

from .content import TIMES, Table

FONT, BOLD, SIZE = "Helvetica", "Helvetica-Bold", 8
PAD = 4  # points each side of a cell, ReportLab's default padding less one
WRAP = 8 * cm  # a name wider than this (a Bedrock profile id is 6.4 cm) wraps
HEADER = ParagraphStyle("header", fontName=BOLD, fontSize=SIZE, leading=SIZE + 1.5)
NUMBER = ParagraphStyle("number", parent=HEADER, alignment=TA_RIGHT)
CELL = ParagraphStyle("cell", fontName=FONT, fontSize=SIZE, leading=SIZE + 1.5)
TITLE = ParagraphStyle("table", fontName=BOLD, fontSize=10, leading=13, spaceBefore=6,
                       spaceAfter=4)
START = 3 * cm  # a table starts on the next page unless its title and a few rows fit here


def grids(table: Table, width: float) -> list[Flowable]:
    """The table's title and grid, or its parts, each within `width`."""
    header = [c[1] for c in table.columns]
    body = [[table.text(r, key, kind) for key, _, kind in table.columns] for r in table.rows]
    widths = [_width(h, [row[i] for row in body], kind == "text")
              for i, (h, (_, _, kind)) in enumerate(zip(header, table.columns, strict=True))]
    keys = table.keys()
    parts = _parts(widths, keys, width)
    out: list[Flowable] = []
    for n, columns in enumerate(parts, start=1):
        title = table.title if len(parts) == 1 else \
            f"{table.title} ({n} of {len(parts)}: {header[columns[keys]]} to {header[columns[-1]]})"
        out += [CondPageBreak(START), Paragraph(escape(title), TITLE),
                _grid(table, [header[i] for i in columns],
                      [[row[i] for i in columns] for row in body],
                      [widths[i] for i in columns], [table.columns[i][2] for i in columns]),
                Spacer(1, 0.4 * cm)]
    return out


def _width(header: str, cells: list[str], wraps: bool) -> float:
    """A column's width: its widest cell (a name at most WRAP), or its header's longest
    word (a header wraps between words)."""
    widest = max((stringWidth(c, FONT, SIZE) for c in cells), default=0)
    word = max((stringWidth(w, BOLD, SIZE) for w in header.split()), default=0)
    return max(min(widest, WRAP) if wraps else widest, word) + 2 * PAD + 1


def _parts(widths: list[float], keys: int, width: float) -> list[list[int]]:
    """Column indexes of each part: the key columns, then as many others as fit."""
    parts: list[list[int]] = []
    for i in range(keys, len(widths)):
        if not parts or sum(widths[j] for j in parts[-1]) + widths[i] > width:
            parts.append(list(range(keys)))
        parts[-1].append(i)
    return parts or [list(range(len(widths)))]


def _grid(table: Table, header: list[str], body: list[list[str]], widths: list[float],
          kinds: list[str]) -> Grid:
    wrap = [k == "text" for k in kinds]
    right = [k not in ("text", *TIMES) for k in kinds]  # numbers: right-aligned
    rows = [[Paragraph(escape(h), NUMBER if r else HEADER)
             for h, r in zip(header, right, strict=True)]] + [
        [Paragraph(escape(c), CELL) if w and stringWidth(c, FONT, SIZE) > WRAP else c
         for c, w in zip(row, wrap, strict=True)] for row in body]
    if not body:
        rows.append(["(none)"] + [""] * (len(header) - 1))
    grid = Grid(rows, colWidths=widths, repeatRows=1, hAlign="LEFT")
    style = [("FONT", (0, 1), (-1, -1), FONT, SIZE),
             ("LEFTPADDING", (0, 0), (-1, -1), PAD), ("RIGHTPADDING", (0, 0), (-1, -1), PAD),
             ("VALIGN", (0, 0), (-1, 0), "BOTTOM"),
             ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8e8")),
             ("GRID", (0, 0), (-1, -1), 0.25, colors.grey)]
    style += [("ALIGN", (i, 0), (i, -1), "RIGHT") for i, r in enumerate(right) if r]
    if table.rows and table.rows[-1].get(table.columns[0][0]) == "Total":
        style += [("FONT", (0, -1), (-1, -1), BOLD, SIZE),
                  ("LINEABOVE", (0, -1), (-1, -1), 1, colors.black)]
    grid.setStyle(TableStyle(style))
    return grid


def escape(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
