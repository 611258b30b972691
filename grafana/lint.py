"""The rules every generated dashboard keeps; `python -m grafana --check` runs them.

Each rule is a few lines over the dashboard's JSON, as Grafana will load it. Exclusions
carry their reason where they are made.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from exporter.record import ErrorType
from exporter.store.catalogue import every_metric

ROOT = Path(__file__).parent.parent
FILTERS = ("service", "provider", "model", "api_key", "project")
DATASOURCES = {"prometheus": {"${datasource}"},
               "yesoreyeram-infinity-datasource": {"${api}", "${alerts}"}}
# Grafana's own variables (global, and those of data links).
BUILTINS = {"__from", "__to", "__range", "__range_s", "__range_ms", "__rate_interval",
            "__interval", "__interval_ms", "__timezone", "__url_time_range", "__all",
            "__value", "__field", "__data", "__series", "__dashboard", "__org", "__user"}
# Windows a panel's PromQL may use: Grafana's, or the dashboard's granularity.
WINDOWS = {"$__rate_interval", "$__range", "$__interval", "$granularity"}
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|\$([A-Za-z_][A-Za-z0-9_]*)")
METRIC = re.compile(r"\b(?:[a-z_]+:)?llm_[a-z_]+(?::[a-z0-9_]+)?\b|\bALERTS\b")
ERROR_TYPE = re.compile(r'error_type\s*!?=~?\s*"([^"]*)"')
# Without a datasource query there is nothing to give a unit to: the alert list shows
# alert rules by name and state.
NO_UNIT = {"alertlist", "row"}


def number_panels(model):
    """Give every panel a stable id in layout order (the SDK leaves them unset)."""
    for n, panel in enumerate(model.panels or [], start=1):
        panel.id_val = n
    return model


def defined_metrics() -> set[str]:
    """Every series name the exporter writes and the recording rules record."""
    names = {"ALERTS"}
    for name, (kind, _, _) in every_metric().items():
        names.add(name)
        if kind == "histogram":
            names |= {name + s for s in ("_bucket", "_sum", "_count")}
    rules = yaml.safe_load((ROOT / "alerts" / "rules.yml").read_text())
    names |= {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    return names


def panels(d: dict) -> list[dict]:
    return [p for p in d.get("panels", [])]


def queries(panel: dict) -> list[str]:
    """The PromQL expressions of a panel's Prometheus targets."""
    return [t["expr"] for t in panel.get("targets", []) if "expr" in t]


def texts(obj) -> list[str]:
    """Every string in a JSON value: where variables may be referenced."""
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in texts(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in texts(v)]
    return []


def check(d: dict, metrics: set[str] | None = None) -> list[str]:
    """Every broken rule of one dashboard, as a line naming the panel."""
    metrics = defined_metrics() if metrics is None else metrics
    problems = []
    names = [v["name"] for v in d["templating"]["list"]]
    variables = {v["name"]: v for v in d["templating"]["list"]}
    if variables.get("datasource", {}).get("query") != "prometheus":
        problems.append("no `datasource` variable of type prometheus")
    for name in FILTERS:
        v = variables.get(name)
        if not (v and v.get("multi") and v.get("includeAll") and v.get("allValue") == ".*"):
            problems.append(f"variable {name}: missing, or not multi-value with All as .*")
    for v in d["templating"]["list"]:
        if v.get("type") == "datasource" and v.get("hide") != 2:
            problems.append(f"variable {v['name']}: a provisioned datasource, to hide")
    if len(names) != len(set(names)):
        problems.append("a variable is defined twice")
    if not d.get("uid") or not d.get("title") or not d.get("description"):
        problems.append("the dashboard needs a uid, a title and a description")
    if not d.get("links"):
        problems.append("no links to the other dashboards")
    if d.get("timepicker", {}).get("hidden"):
        problems.append("the time picker is hidden")
    problems += _grid(d)
    for p in panels(d):
        where = f"panel {p.get('title')!r}"
        kind = p.get("type")
        if not p.get("title"):
            problems.append(f"panel {p.get('id')}: no title")
        if kind == "row":
            continue
        if not p.get("description"):
            problems.append(f"{where}: no description")
        unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if kind not in NO_UNIT and not unit:
            problems.append(f"{where}: no unit")
        if kind in NO_UNIT:
            continue
        problems += _numbers(where, kind, p.get("fieldConfig", {}).get("defaults", {}))
        ds = p.get("datasource") or {}
        if ds.get("uid") not in DATASOURCES.get(ds.get("type"), ()):
            problems.append(f"{where}: datasource must be a dashboard variable, not {ds}")
        targets = p.get("targets") or []
        if not targets:
            problems.append(f"{where}: no query")
        for t in targets:
            if t.get("datasource") != ds:
                problems.append(f"{where}: query {t.get('refId')} has another datasource")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or None in refs:
            problems.append(f"{where}: every query needs its own refId")
        for expr in queries(p):
            for window in re.findall(r"\[([^\]:]+)\]", expr):
                if window not in WINDOWS:
                    problems.append(f"{where}: window [{window}]: use one of "
                                    f"{', '.join(sorted(WINDOWS))}")
            if re.search(r"\b(i?rate)\((?![^)]*\[\$__rate_interval\])", expr):
                problems.append(f"{where}: rate() over anything but $__rate_interval")
            for name in set(METRIC.findall(expr)) - metrics:
                problems.append(f"{where}: {name} is neither exported nor recorded")
            if re.search(r'error_type\s*!=\s*"none"', expr):
                problems.append(f"{where}: error_type!=\"none\" counts accounting_error "
                                "as a failure, as the success rates do not: !~ every success")
            for values in ERROR_TYPE.findall(expr):
                for value in set(values.split("|")) - set(ErrorType):
                    problems.append(f"{where}: error_type {value!r} is none the exporter "
                                    "gives")
    for text in texts({k: v for k, v in d.items() if k != "templating"}) + \
            texts(d["templating"]):
        for braced, plain in VARIABLE.findall(text):
            name = braced or plain
            if name not in names and name not in BUILTINS and not name.startswith("__"):
                problems.append(f"${name} is used but not defined")
    return sorted(set(problems))


def _numbers(where: str, kind: str, defaults: dict) -> list[str]:
    """How Grafana 12 renders a number: what would hide or round it away."""
    problems = []
    unit, decimals = defaults.get("unit"), defaults.get("decimals")
    if unit == "short" and decimals == 0:
        problems.append(f"{where}: unit short with 0 decimals shows 1,500 as 2 K: use locale")
    if unit == "currencyUSD" and decimals is not None:
        problems.append(f"{where}: fixed decimals show $0.000444 as $0.0004: leave them "
                        "automatic")
    if kind == "stat" and not defaults.get("noValue"):
        problems.append(f"{where}: a stat needs a noValue (-), not NaN or No data")
    return problems


def _grid(d: dict) -> list[str]:
    problems, taken = [], {}
    for p in panels(d):
        g = p.get("gridPos") or {}
        x, y, w, h = (g.get(k, -1) for k in ("x", "y", "w", "h"))
        title = p.get("title")
        if not (0 <= x and w > 0 and h > 0 and x + w <= 24 and y >= 0):
            problems.append(f"panel {title!r}: off the 24-column grid: {g}")
            continue
        for cx in range(x, x + w):
            for cy in range(y, y + h):
                if (cx, cy) in taken:
                    problems.append(f"panel {title!r} overlaps {taken[cx, cy]!r}")
                    break
                taken[cx, cy] = title
            else:
                continue
            break
    return problems
