"""The pieces every dashboard is made of, typed, on Grafana's own builder (the SDK).

Where the SDK has no typed builder (the alert list panel, the Infinity datasource's
queries) a small builder of our own stands in, so no dashboard module writes raw
dictionaries of panel JSON.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

# The SDK's v1 dashboard classes warn at import that a v2 exists. v1 is the JSON that
# file provisioning loads (schemaVersion 42, Grafana 12): the warning is not ours to act on.
warnings.filterwarnings("ignore", message="Prefer using dashboardv2", category=DeprecationWarning)

from grafana_foundation_sdk.builders import (  # noqa: E402
    bargauge,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import common as cb  # noqa: E402
from grafana_foundation_sdk.builders import dashboard as dash  # noqa: E402
from grafana_foundation_sdk.cog import builder as cogbuilder  # noqa: E402
from grafana_foundation_sdk.cog import variants as cogvariants  # noqa: E402
from grafana_foundation_sdk.models import common as cm  # noqa: E402
from grafana_foundation_sdk.models import dashboard as dm  # noqa: E402
from grafana_foundation_sdk.models.prometheus import PromQueryFormat  # noqa: E402

from exporter.record import SUCCESSES  # noqa: E402

TAG = "llm-usage-exporter"
FOLDER = "LLM usage"
PROMETHEUS = cm.DataSourceRef(type_val="prometheus", uid="${datasource}")
INFINITY_TYPE = "yesoreyeram-infinity-datasource"
API = cm.DataSourceRef(type_val=INFINITY_TYPE, uid="${api}")
ALERTS_API = cm.DataSourceRef(type_val=INFINITY_TYPE, uid="${alerts}")
# The uids of the provisioned datasources (grafana/provisioning/datasources/).
PROMETHEUS_UID, API_UID = "llm-prometheus", "llm-usage-api"
ALERTMANAGER_UID, ALERTS_API_UID = "llm-alertmanager", "llm-alertmanager-api"

# Label matchers of the dashboard variables. Histograms carry no api_key or project label,
# and the gateway's overhead and in-flight gauge only the service: each metric gets the
# matchers its labels allow.
BY_KEY = ('service=~"$service",provider=~"$provider",model=~"$model",api_key=~"$api_key",'
          'project=~"$project"')
BY_MODEL = 'service=~"$service",provider=~"$provider",model=~"$model"'
BY_SERVICE = 'service=~"$service"'
# A success is what the client got as one (record.SUCCESSES: an answer whose bill failed
# is one), as the alerts' recording rules judge it too.
SUCCEEDED = f'error_type=~"{"|".join(SUCCESSES)}"'
FAILED = f'error_type!~"{"|".join(SUCCESSES)}"'

# Usage API parameters that narrow it as the variables narrow PromQL. A variable's All is
# its all value .*, which the API reads as no filter; ${var:csv} lists several values.
API_FILTERS = (("service", "${service:csv}"), ("provider", "${provider:csv}"),
               ("model", "${model:csv}"), ("api_key", "${api_key:csv}"),
               ("project", "${project:csv}"))
API_RANGE = (("from", "${__from}"), ("to", "${__to}"), ("tz", "${__timezone}"))
FILTERS = tuple(name for name, _ in API_FILTERS)  # the variables every dashboard filters by


# --- variables ----------------------------------------------------------------------------

def filter_variable(name: str, label: str, matchers: str, metric: str = "llm_requests_total",
                    all_value: str | None = ".*") -> dash.QueryVariable:
    """A multi-value label filter with All, its values from the series the others leave.
    All is `all_value`, or, with None, Grafana's list of every value the query found."""
    query = f"label_values({metric}{{{matchers}}}, {name})" if matchers \
        else f"label_values({metric}, {name})"
    v = (dash.QueryVariable(name).label(label).datasource(PROMETHEUS)
         .query(query).definition(query)
         .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
         .sort(dm.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
         .multi(True).include_all(True)
         .current(dm.VariableOption(text=["All"], value=["$__all"])))
    return v.all_value(all_value) if all_value is not None else v


def common_variables() -> list:
    """datasource, service, provider, model, api_key and project: on every dashboard."""
    return [
        dash.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
        .current(dm.VariableOption(text="Prometheus", value=PROMETHEUS_UID))
        .hide(dm.VariableHide.HIDE_VARIABLE),  # provisioned: nothing to choose
        filter_variable("service", "Service", ""),
        filter_variable("provider", "Provider", 'service=~"$service"'),
        filter_variable("model", "Model", 'service=~"$service",provider=~"$provider"'),
        filter_variable("api_key", "API key", BY_MODEL),
        filter_variable("project", "Project", BY_MODEL + ',api_key=~"$api_key"'),
    ]


# The operation (the kind of model: chat, embeddings, images, audio, ...): a filter of the
# dashboards read from the ledger only, as llm_tokens_total and llm_cost_usd_total carry
# no operation label.
OPERATION = ("operation", "${operation:csv}")


def operation_variable() -> dash.QueryVariable:
    return filter_variable("operation", "Operation", BY_MODEL + ',api_key=~"$api_key"')


def api_variable() -> dash.DatasourceVariable:
    """The Infinity datasource that reads the gateway's usage API."""
    return (dash.DatasourceVariable("api").label("Usage API").type(INFINITY_TYPE)
            .current(dm.VariableOption(text="LLM usage API", value=API_UID))
            .hide(dm.VariableHide.HIDE_VARIABLE))


def alerts_variable() -> dash.DatasourceVariable:
    """The Infinity datasource that reads Alertmanager's API."""
    return (dash.DatasourceVariable("alerts").label("Alertmanager API").type(INFINITY_TYPE)
            .current(dm.VariableOption(text="Alertmanager API", value=ALERTS_API_UID))
            .hide(dm.VariableHide.HIDE_VARIABLE))


def custom_variable(name: str, label: str, options: list[tuple[str, str]],
                    default: str) -> dash.CustomVariable:
    """A fixed choice; options are (text, value)."""
    text = dict((v, t) for t, v in options)[default]
    return (dash.CustomVariable(name).label(label)
            .values(",".join(f"{t} : {v}" if t != v else v for t, v in options))
            .current(dm.VariableOption(text=text, value=default)))


# A trend's bucket: the step of its queries, whose minimum interval is the granularity
# chosen, and the window of increase(). Over a range with more buckets than the panel can
# draw, Grafana widens the step, and the window follows it: no sample is left out. The
# negative offset labels a bucket by its start, as the usage API's tables do: the point at
# 10:00 holds 10:00 to 11:00, not 09:00 to 10:00.
BUCKET = "[$__interval] offset -$__interval"


def previous(selector: str) -> str:
    """The total increase of `selector` in the bucket one range earlier, labelled by its
    start as BUCKET is: (t - range, t - range + interval]. An offset of range - interval
    cannot be written, and a subquery's steps fall on UTC multiples where Grafana's fall on
    the dashboard zone's: so it is (t - range, t] less (t - range + interval, t + interval]
    plus (t, t + interval], windows Grafana's own steps bound."""
    return (f"clamp_min(sum(increase({selector}[$__range])) "
            f"- sum(increase({selector}[$__range] offset -$__interval)) "
            f"+ sum(increase({selector}{BUCKET})), 0)")


def granularity_variable() -> dash.CustomVariable:
    # The trend bucket (BUCKET) and the usage API's buckets.
    return custom_variable("granularity", "Granularity",
                           [(g, g) for g in ("1m", "5m", "1h", "1d")], "1h")


def gateway_url_variable() -> dash.TextBoxVariable:
    # Download links are opened by the viewer's browser, so they need the admin listener's
    # address as the browser reaches it (docker-compose.yml publishes it on 9464).
    return (dash.TextBoxVariable("gateway_url").label("Usage API URL (downloads)")
            .default_value("http://localhost:9464")
            .description("The gateway's admin address as your browser reaches it, for the "
                         "panels' CSV and Excel links. They cannot pass an admin token and "
                         "need the admin port reachable from your browser; a panel's menu, "
                         "Inspect > Data > Download CSV, always works, through Grafana."))


def tag_variable() -> dash.TextBoxVariable:
    # A tag key (attribution: X-LLM-Tags), for the breakdowns by its values.
    return dash.TextBoxVariable("tag_key").label("Tag").default_value("feature")


# --- panels -------------------------------------------------------------------------------

def promql(expr: str, legend: str = "__auto", ref: str = "A", *, instant: bool = False,
           table_format: bool = False, interval: str | None = None,
           exemplar: bool = False) -> prometheus.Dataquery:
    q = (prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref)
         .datasource(PROMETHEUS).exemplar(exemplar))
    q = q.instant() if instant else q.range()
    if table_format:
        q = q.format(PromQueryFormat.TABLE)
    if interval:
        q = q.interval(interval)
    return q


def _common(panel, title: str, description: str, unit: str, w: int, h: int):
    return panel.title(title).description(description).unit(unit).span(w).height(h)


def _stat(p: stat.Panel, decimals: int | None, calc: str = "lastNotNull") -> stat.Panel:
    # "-", not "No data", where nothing was counted (an idle model's success rate).
    p = (p.reduce_options(cb.ReduceDataOptions().calcs([calc]).values(False))
         .graph_mode(cm.BigValueGraphMode.NONE).color_mode(cm.BigValueColorMode.NONE)
         .no_value("-"))
    return p.decimals(decimals) if decimals is not None else p


def stat_panel(title: str, description: str, unit: str, expr: str, *, w: int = 4,
               h: int = 4, decimals: int | None = None) -> stat.Panel:
    """One number over the dashboard's range, from Prometheus."""
    p = _common(stat.Panel(), title, description, unit, w, h).datasource(PROMETHEUS)
    return _stat(p.with_target(promql(expr, instant=True)), decimals)


# The current month so far and its month-end forecast (/api/forecast): the viewer's
# calendar month, whatever the dashboard's range.
FORECAST = ("/api/forecast", (("tz", "${__timezone}"), *API_FILTERS))


def ledger_stat(title: str, description: str, unit: str, fields: list[str], *, w: int = 4,
                h: int = 4, decimals: int | None = None,
                source: tuple = ("/api/usage", (*API_RANGE, *API_FILTERS, ("format", "json")))
                ) -> stat.Panel:
    """One total over the dashboard's range and filters from the request history (the
    usage API's one row, or the sum of the rows of `source`): a field of it, or the sum
    of several."""
    path, params = source
    query = InfinityQuery(path, params, [Column(f, f) for f in fields])
    p = _common(stat.Panel(), title, description, unit, w, h).datasource(API)
    p = p.with_target(query)
    if len(fields) > 1:
        p = p.with_transformation(dm.DataTransformerConfig(id_val="calculateField", options={
            "mode": "reduceRow", "reduce": {"reducer": "sum", "include": fields},
            "alias": title, "replaceFields": True}))
    return _stat(p, decimals, "sum")


def trend_panel(title: str, description: str, unit: str, targets, *, w: int = 12,
                h: int = 8, bars: bool = False, stacked: bool = False,
                many: bool = False) -> timeseries.Panel:
    """A time series with max, min and mean in a table legend; `many` series (a top N of
    up to 50): names only, in a list on the right, so the plot keeps its height."""
    p = _common(timeseries.Panel(), title, description, unit, w, h).datasource(PROMETHEUS)
    for t in targets:
        p = p.with_target(t)
    legend = cb.VizLegendOptions().show_legend(True)
    if many:
        legend = legend.display_mode(cm.LegendDisplayMode.LIST) \
            .placement(cm.LegendPlacement.RIGHT)
    else:
        legend = legend.display_mode(cm.LegendDisplayMode.TABLE) \
            .placement(cm.LegendPlacement.BOTTOM).calcs(["max", "min", "mean"])
    p = (p.legend(legend)
         .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI)
                  .sort(cm.SortOrder.DESCENDING))
         .fill_opacity(10).line_width(1))
    if bars:
        p = p.draw_style(cm.GraphDrawStyle.BARS).fill_opacity(80)
    if stacked:
        p = p.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
    return p


DASHED = dm.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]})


def previous_period(p: timeseries.Panel, ref: str) -> timeseries.Panel:
    """Draw the previous period's query (refId `ref`) dashed and grey."""
    return p.override_by_query(ref, [
        DASHED, dm.DynamicConfigValue(id_val="color", value={"mode": "fixed",
                                                             "fixedColor": "gray"})])


def ledger_bars(title: str, description: str, unit: str, query: InfinityQuery, *,
                w: int = 6, h: int = 8) -> bargauge.Panel:
    """Horizontal bars of a usage API ranking, one per row, in the API's order."""
    p = _common(bargauge.Panel(), title, description, unit, w, h).datasource(API)
    return (p.with_target(query).orientation(cm.VizOrientation.HORIZONTAL)
            .display_mode(cm.BarGaugeDisplayMode.BASIC)
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(True)))


def ledger_trend(title: str, description: str, unit: str, field: str, by: str, *,
                 w: int = 8, h: int = 8) -> timeseries.Panel:
    """Bars per calendar day of the viewer's time zone from the request history (the usage
    API by day and `by`, one series per value), stacked."""
    query = InfinityQuery("/api/usage", [
        ("group_by", by), ("granularity", "day"), ("order", "fee"), *API_RANGE,
        *API_FILTERS, ("format", "json")],
        [Column("time", "Time", kind="timestamp"), Column(by, by, kind="string"),
         Column(field, title, unit)])
    p = _common(timeseries.Panel(), title, description, unit, w, h).datasource(API)
    # The API's rows are long (a day, a value, a figure): a series per value to stack.
    p = p.with_target(query).with_transformation(dm.DataTransformerConfig(
        id_val="prepareTimeSeries", options={"format": "multi"}))
    return (p.legend(cb.VizLegendOptions().show_legend(True)
                     .display_mode(cm.LegendDisplayMode.LIST)
                     .placement(cm.LegendPlacement.BOTTOM))
            .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI)
                     .sort(cm.SortOrder.DESCENDING))
            .draw_style(cm.GraphDrawStyle.BARS).fill_opacity(80).line_width(1)
            .stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL)))


def gauge_panel(title: str, description: str, unit: str, expr: str, legend: str, *,
                w: int = 8, h: int = 8, ceiling: float = 1.0) -> bargauge.Panel:
    """Bars against a limit: green, amber from 80% of it, red at it."""
    p = _common(bargauge.Panel(), title, description, unit, w, h).datasource(PROMETHEUS)
    return (p.with_target(promql(expr, legend, instant=True))
            .orientation(cm.VizOrientation.HORIZONTAL)
            .display_mode(cm.BarGaugeDisplayMode.GRADIENT).min(0).max(ceiling)
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
            .thresholds(dash.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps([
                dm.Threshold(value=None, color="green"),
                dm.Threshold(value=0.8 * ceiling, color="orange"),
                dm.Threshold(value=ceiling, color="red")])))


@dataclass(frozen=True)
class Column:
    """A column of a table: its source field, header, unit and, for Infinity, its type."""

    field: str
    header: str
    unit: str = "none"
    kind: str = "number"  # Infinity: string, number, timestamp


def table_panel(title: str, description: str, columns: list[Column], targets, *, w: int = 24,
                h: int = 10, datasource=PROMETHEUS, merge: bool = False) -> table.Panel:
    """A table whose columns are named and united one by one."""
    p = _common(table.Panel(), title, description, "none", w, h).datasource(datasource)
    for t in targets:
        p = p.with_target(t)
    if merge:  # several instant queries, one value column each, joined on their labels
        p = p.with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
    keep = {c.field: i for i, c in enumerate(columns)}
    p = p.with_transformation(dm.DataTransformerConfig(id_val="organize", options={
        "excludeByName": {"Time": True},
        "indexByName": keep,
        "renameByName": {c.field: c.header for c in columns}}))
    for c in columns:
        if c.unit != "none":
            p = p.override_by_name(c.header, [dm.DynamicConfigValue(id_val="unit",
                                                                    value=c.unit)])
    return p.filterable(True).footer(cb.TableFooterOptions().show(False))


# --- what the SDK has no builder for --------------------------------------------------------

class _Query(cogvariants.Dataquery):
    def __init__(self, payload: dict):
        self.payload = payload

    def to_json(self) -> dict[str, object]:
        return self.payload


class InfinityQuery(cogbuilder.Builder[_Query]):
    """A query of the Infinity datasource against the gateway's usage API, as a table."""

    def __init__(self, path: str, params, columns: list[Column], ref: str = "A", *,
                 root: str = "data", datasource=API):
        self.path, self.params, self.columns, self.ref = path, list(params), columns, ref
        self.root, self.datasource = root, datasource

    def url(self) -> str:
        """The query's URL, parameters included (also what its download links use)."""
        return self.path + "?" + "&".join(f"{k}={v}" for k, v in self.params)

    def build(self) -> _Query:
        return _Query({
            "refId": self.ref, "datasource": self.datasource.to_json(), "type": "json",
            "source": "url",
            "parser": "backend", "format": "table", "url": self.path,
            "url_options": {"method": "GET", "data": "",
                            "params": [{"key": k, "value": v} for k, v in self.params]},
            "root_selector": self.root,
            "columns": [{"selector": c.field, "text": c.header, "type": c.kind}
                        for c in self.columns]})


def api_table(title: str, description: str, query: InfinityQuery, *, w: int = 24,
              h: int = 10) -> table.Panel:
    p = _common(table.Panel(), title, description, "none", w, h).datasource(query.datasource)
    p = p.with_target(query)
    for c in query.columns:
        if c.unit != "none":
            p = p.override_by_name(c.header, [dm.DynamicConfigValue(id_val="unit",
                                                                    value=c.unit)])
    return p.filterable(True)


class AlertList(cogbuilder.Builder[dm.Panel]):
    """Grafana's alert list panel: the rules of the Prometheus datasource, firing first.

    It lists rules, not Alertmanager's notifications: no panel can query an Alertmanager
    datasource (Grafana's Alerting pages use the provisioned one, silences included).
    """

    def __init__(self, title: str, description: str, *, w: int = 12, h: int = 8):
        self.panel = (dash.Panel().type("alertlist").title(title).description(description)
                      .span(w).height(h).options({
                          "viewMode": "list", "groupMode": "default", "groupBy": [],
                          "maxItems": 20, "sortOrder": 3, "dashboardAlerts": False,
                          "alertName": "", "alertInstanceLabelFilter": "",
                          "datasource": "Prometheus", "folder": None,
                          "showInactiveAlerts": False,
                          "stateFilter": {"firing": True, "pending": True, "noData": False,
                                          "normal": False, "error": True}}))

    def build(self) -> dm.Panel:
        return self.panel.build()


# --- dashboards ---------------------------------------------------------------------------

def browser_url(query: InfinityQuery) -> str:
    """The query's URL as the viewer's browser opens it, at the gateway's admin address.

    Infinity encodes a query's parameters itself; a link's are written into the URL, so
    single values that may hold any character are percent-encoded. (Lists stay ${var:csv}:
    a multi-value variable percent-encoded would be its glob, {a,b}.)
    """
    return "${gateway_url}" + query.url().replace(
        "${__timezone}", "${__timezone:percentencode}").replace(
        "${request_id}", "${request_id:percentencode}")


def download_links(query: InfinityQuery) -> list:
    """Links to the CSV and Excel export of exactly what a usage API panel shows."""
    url = browser_url(query)
    return [dash.DashboardLink(f"Download {name}").url(url.replace("format=json",
                                                                    f"format={fmt}"))
            .target_blank(True).placement(None)
            for name, fmt in (("CSV", "csv"), ("Excel", "xlsx"))]


HISTORY_UID = "llm-requests"  # the request history dashboard (requests.py)


def history_link(keep: tuple[str, ...] = FILTERS, **fields: str) -> list:
    """A data link from a row or bar to the request history of what it shows: each
    variable of it (model=...) set from a field of the row; the time range and the
    dashboard's other filters (`keep`, those the history has too) kept as they are."""
    values = "&".join([*(f'var-{var}=${{__data.fields["{field}"]}}'
                         for var, field in fields.items()),
                       *(f"${{{var}:queryparam}}" for var in keep if var not in fields)])
    return [dash.DashboardLink("Requests of this row in the request history")
            .url(f"/d/{HISTORY_UID}?${{__url_time_range}}&{values}")
            .target_blank(False).placement(None)]


REPORTS = (("summary", "pdf", "Summary report (PDF)"), ("cost", "pdf", "Cost report (PDF)"),
           ("trend", "pdf", "Trend report (PDF)"),
           ("detailed", "xlsx", "Detailed report (Excel)"))


def report_links() -> list:
    """The reports of the dashboard's range and filters (/api/report), drawn on demand."""
    return [dash.DashboardLink(title).type(dm.DashboardLinkType.LINK)
            .url(browser_url(InfinityQuery("/api/report", [
                ("type", kind), ("format", fmt), *API_RANGE, *API_FILTERS], [])))
            .target_blank(True)
            .icon("doc").placement(None)
            .tooltip("Drawn by the gateway for the range and filters shown: a year's "
                     "detailed report takes half a minute")
            for kind, fmt, title in REPORTS]


def month_by_day_link(uid: str) -> dash.DashboardLink:
    """One click to the current month so far, a bar per day."""
    return (dash.DashboardLink("This month by day").type(dm.DashboardLinkType.LINK)
            .url(f"/d/{uid}?from=now%2FM&to=now&var-granularity=1d").icon("dashboard")
            .placement(None)
            .tooltip("The calendar month so far, in days"))


def dashboard(uid: str, title: str, description: str, variables: list,
              rows: list[tuple[str, list]], links=()) -> dash.Dashboard:
    """A dashboard of titled rows, linked to the others by their shared tag, and to
    `links` of its own."""
    d = (dash.Dashboard(title).uid(uid).description(description).tags([TAG])
         .time("now-24h", "now").refresh("1m").timezone(cm.TimeZoneBrowser)
         .tooltip(dm.DashboardCursorSync.CROSSHAIR).editable()
         .link(dash.DashboardLink("LLM usage").type(dm.DashboardLinkType.DASHBOARDS)
               .tags([TAG]).as_dropdown(True).include_vars(True).keep_time(True)
               .placement(None))
         .annotation(dash.AnnotationQuery().name("Annotations & Alerts").built_in(1)
                     .enable(True).hide(True).icon_color("rgba(0, 211, 255, 1)")
                     .type("dashboard").placement(None)
                     .datasource(cm.DataSourceRef(type_val="grafana", uid="-- Grafana --")))
         .variables(variables))
    for link in links:
        d = d.link(link)
    for title_, panels in rows:
        d = d.with_row(dash.Row(title_))
        for panel in panels:
            d = d.with_panel(panel)
    return d
