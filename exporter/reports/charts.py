"""A report's charts in a PDF: every series visible whatever its length (a marker on each
point; bars when there are too few points for a line), the time axis labelled as the
bucket is long, the y axis with its unit, the legend below the plot, never over it."""

from __future__ import annotations

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.charts.linecharts import HorizontalLineChart
from reportlab.graphics.shapes import Drawing, String
from reportlab.graphics.widgets.markers import makeMarker
from reportlab.lib import colors
from reportlab.lib.units import cm
from reportlab.pdfbase.pdfmetrics import stringWidth

from .content import Chart

PALETTE = [colors.HexColor(c) for c in ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                                         "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")]
FEW = 4  # points or fewer: bars, where a line would be a dot or a short stroke
LABELS = 14  # at most this many times under the axis
# The time under the axis, as long as its bucket: the hour needs its date too.
AXIS = {"hour": "%d %b %H:%M", "day": "%d %b %Y", "week": "%d %b %Y", "month": "%b %Y"}
PLOT, LINE = 4.6 * cm, 9  # the plot's height (two charts a page); a legend row's


def drawing(chart: Chart, width: float) -> Drawing:
    """The chart as a drawing `width` wide: title and unit, the plot, the legend below."""
    names = list(chart.series)
    rows = -(-len(names) // 3)  # three legend entries a row: a model's name is long
    legend_height = rows * LINE + 4
    bottom = legend_height + 1.4 * cm  # the rotated time labels sit above the legend
    d = Drawing(width, bottom + PLOT + 1 * cm)
    bars = chart.kind == "bar" or len(chart.x) <= FEW
    plot = VerticalBarChart() if bars else HorizontalLineChart()
    plot.x, plot.y, plot.width, plot.height = 1.8 * cm, bottom, width - 2.3 * cm, PLOT
    # None is a gap on a line (a rate where nothing was asked); a bar of it is no bar.
    plot.data = [[v if v is not None or not bars else 0 for v in chart.series[n]]
                 for n in names] or [[0] * max(len(chart.x), 1)]
    labels = [t.strftime(AXIS[chart.granularity]) for t in chart.x]
    step = -(-len(labels) // LABELS)
    plot.categoryAxis.categoryNames = [t if i % step == 0 else "" for i, t in enumerate(labels)]
    plot.categoryAxis.labels.angle, plot.categoryAxis.labels.fontSize = 30, 6
    plot.categoryAxis.labels.boxAnchor = "ne"
    plot.valueAxis.labels.fontSize = 7
    plot.valueAxis.valueMin = 0
    if all(v in (None, 0) for values in plot.data for v in values):
        plot.valueAxis.valueMax = 1  # an axis of nothing, not of 0 to 0
    for i in range(len(names)):
        if bars:
            plot.bars[i].fillColor = PALETTE[i]
            plot.bars[i].strokeColor = None
        else:
            plot.lines[i].strokeColor = PALETTE[i]
            plot.lines[i].symbol = makeMarker("FilledCircle", size=3, fillColor=PALETTE[i],
                                              strokeColor=PALETTE[i])
    if bars:
        stacked = chart.kind == "bar"
        if stacked:
            plot.categoryAxis.style = "stacked"
        # Bars at most 2.5 cm a group: one bucket's is not the whole plot's width.
        per, across = 1 if stacked else max(len(names), 1), plot.width / max(len(chart.x), 1)
        plot.barWidth, plot.barSpacing = 1, 0
        plot.groupSpacing = per * max(across / min(0.7 * across, 2.5 * cm) - 1, 0.1)
    d.add(plot)
    top = bottom + PLOT
    d.add(String(0, top + 0.6 * cm, chart.title, fontName="Helvetica-Bold", fontSize=10))
    d.add(String(0, top + 0.15 * cm, chart.unit, fontName="Helvetica", fontSize=7))
    if names:
        legend = Legend()
        legend.x, legend.y, legend.boxAnchor = 1.8 * cm, legend_height, "nw"
        legend.fontSize, legend.columnMaximum, legend.deltay = 7, rows, LINE
        legend.dx = legend.dy = 6
        legend.alignment = "right"  # the name right of its swatch
        legend.deltax = (width - 2.3 * cm) / 3
        legend.colorNamePairs = [(PALETTE[i], _fit(n, legend.deltax - 20))
                                 for i, n in enumerate(names)]
        d.add(legend)
    return d


def _fit(name: str, width: float) -> str:
    """A legend's name cut to its column (its end elided), so it never runs into the next."""
    if stringWidth(name, "Helvetica", 7) <= width:
        return name
    while name and stringWidth(name + "...", "Helvetica", 7) > width:
        name = name[:-1]
    return name + "..."
