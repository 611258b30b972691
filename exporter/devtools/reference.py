"""The reference pages made from the code, so they cannot drift from it:
docs/reference/configuration.md from the key table (config/table.py's doc lines),
docs/reference/metrics.md from the metric definitions (store/catalogue.py lists them), and
docs/runbook.md from alerts/runbook.md (which the alerts' runbook_url names).

    python -m exporter.devtools.reference      # writes them; tests/test_site.py checks them
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..config.schema import REQUIRED, documented_keys
from ..config.table import Config
from ..store.catalogue import every_metric

ROOT = Path(__file__).resolve().parent.parent.parent
DOCS = ROOT / "docs"
NOTE = ("<!-- Made by `python -m exporter.devtools.reference` from the code: edit the code, "
        "not this page. -->\n\n")


def configuration() -> str:
    """Every config key with its default and its doc line, in the table's order."""
    rows = [f"| `{path}` | {_default(default)} | {_cell(doc)} |"
            for path, default, doc in documented_keys(Config)]
    return (f"{NOTE}# Configuration keys\n\nEvery key of the YAML file, as "
            "`check-config` reads it: its default, and what it does. "
            "A key under `name[]` belongs to each item of the list `name`. See "
            "[Configuration](../configuration.md) for how the file is read and reloaded.\n\n"
            "| key | default | meaning |\n|---|---|---|\n" + "\n".join(rows) + "\n")


def _default(value) -> str:
    if value == REQUIRED:
        return "required"
    if value in (None, (), ""):
        return "" if value == "" else "none"
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def metrics() -> str:
    rows = [f"| `{name}` | {kind} | {', '.join(labels)} | {_cell(doc)} |"
            for name, (kind, labels, doc) in every_metric().items()]
    return (f"{NOTE}# Metrics\n\nEvery series `/metrics` exposes, with its type, labels "
            "and HELP text. Names and labels are the public API: they do not change without "
            "a deprecation period. [Metrics and labels](../metrics.md) explains each label's "
            "values and how the counters behave.\n\n"
            "| metric | type | labels | meaning |\n|---|---|---|---|\n"
            + "\n".join(rows) + "\n")


def runbook() -> str:
    return NOTE.replace("the code", "alerts/runbook.md") \
        + (ROOT / "alerts" / "runbook.md").read_text()


PAGES = {"reference/configuration.md": configuration, "reference/metrics.md": metrics,
         "runbook.md": runbook}


def main() -> int:
    (DOCS / "reference").mkdir(parents=True, exist_ok=True)
    for name, make in PAGES.items():
        (DOCS / name).write_text(make())
        print(DOCS / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
