"""/metrics in the Prometheus text format 0.0.4, or OpenMetrics 1.0 with exemplars, fast.

prometheus-client's generate_latest took 185 ms for 11,000 series (40 models by 25 keys),
holding the interpreter lock the proxy needs: profiled, two thirds of it validated and
escaped the same label names again for every sample. Here label names are taken as
valid (prometheus-client checked them when each metric was made), values are escaped
only when they contain a character that needs it, and number formatting is
prometheus-client's own: the output is the same, byte for byte.

The text format is the default. OpenMetrics is served to a scraper that asks for it
(Prometheus does, unless told otherwise), because only OpenMetrics carries exemplars: the
request id of a request in the latency histograms, which links a spike on a dashboard to
the request behind it. Both are byte for byte what prometheus-client's own generate_latest
functions write (tested). No `_created` series are made (see metrics.py).
"""

from __future__ import annotations

from prometheus_client.utils import floatToGoString

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_TYPES = {"counter": "counter", "gauge": "gauge", "histogram": "histogram",
          "summary": "summary", "info": "gauge", "stateset": "gauge",
          "gaugehistogram": "histogram", "unknown": "untyped"}
_SUFFIX = {"counter": "_total", "info": "_info"}
_APART = ("_created", "_gsum", "_gcount")  # OpenMetrics samples: gauges of their own here


def _escape(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


_labels: dict[str, dict[tuple, str]] = {}  # per metric: labels -> their text


def _label_text(cache: dict, labels: dict) -> str:
    key = tuple(labels.items())
    text = cache.get(key)
    if text is None:
        if len(cache) > 100_000:  # label values are capped, but a collector's may not be
            cache.clear()
        text = cache[key] = ",".join([f'{k}="{_escape(v)}"' for k, v in sorted(labels.items())])
    return text


def _number(value) -> str:
    if value.__class__ is float and 0.0 <= value < 1e6:
        return repr(value)  # what floatToGoString returns for these, at a third of the cost
    return floatToGoString(value)


def render(registry) -> bytes:
    out: list[str] = []
    append = out.append
    for metric in registry.collect():
        base = metric.name
        name = base + _SUFFIX.get(metric.type, "")
        doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        append(f"# HELP {name} {doc}\n# TYPE {name} {_TYPES.get(metric.type, 'untyped')}\n")
        apart: dict[str, list[str]] = {}
        cache = _labels.setdefault(base, {})
        for s in metric.samples:
            if s.labels:
                line = f"{s.name}{{{_label_text(cache, s.labels)}}} {_number(s.value)}"
            else:
                line = f"{s.name} {_number(s.value)}"
            if s.timestamp is not None:
                line += f" {int(float(s.timestamp) * 1000):d}"
            suffix = s.name[len(base):]
            if suffix in _APART:
                apart.setdefault(suffix, []).append(line + "\n")
            else:
                append(line + "\n")
        for suffix, lines in apart.items():
            append(f"# HELP {base}{suffix} {doc}\n# TYPE {base}{suffix} gauge\n")
            out.extend(lines)
    return "".join(out).encode()


def wants_openmetrics(accept: str | None) -> bool:
    """Whether an Accept header asks for OpenMetrics (any version, any quality above 0)."""
    for part in (accept or "").split(","):
        kind, *params = part.split(";")
        if kind.strip() == "application/openmetrics-text" and not any(
                p.strip().replace(" ", "") in ("q=0", "q=0.0") for p in params):
            return True
    return False


def _exemplar(e) -> str:
    labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(e.labels.items()))
    text = f" # {{{labels}}} {floatToGoString(e.value)}"
    return text if e.timestamp is None else f"{text} {e.timestamp}"


def render_openmetrics(registry) -> bytes:
    """The same metrics in OpenMetrics 1.0, with exemplars, ending in # EOF."""
    out: list[str] = []
    append = out.append
    for metric in registry.collect():
        name = metric.name
        doc = _escape(metric.documentation)
        append(f"# HELP {name} {doc}\n# TYPE {name} {metric.type}\n")
        if metric.unit:
            append(f"# UNIT {name} {metric.unit}\n")
        cache = _labels.setdefault(name, {})
        for s in metric.samples:
            line = f"{s.name}{{{_label_text(cache, s.labels)}}}" if s.labels else s.name
            line += f" {_number(s.value)}"
            if s.timestamp is not None:
                line += f" {s.timestamp}"
            if s.exemplar:
                line += _exemplar(s.exemplar)
            append(line + "\n")
    append("# EOF\n")
    return "".join(out).encode()
