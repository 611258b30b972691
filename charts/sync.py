"""Copy the rules, alerts and dashboards into the Helm chart, or check that its copies match.

Helm reads only files inside a chart's folder (`.Files.Get`), so the chart carries copies of
alerts/rules.yml, alerts/alerts.yml and grafana/dashboards/*.json; its PrometheusRule and
dashboard ConfigMaps are made from them at install. Run after changing any of them:

    .venv/bin/python charts/sync.py           # write the copies
    .venv/bin/python charts/sync.py --check   # exit 1 naming every copy that differs

tests/test_chart.py runs the check, so a copy cannot drift from its source.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = ROOT / "charts" / "llm-usage-exporter" / "files"


def sources() -> dict[Path, Path]:
    """Each copy in the chart, by its source in the repository."""
    pairs = {ROOT / "alerts" / name: FILES / "alerts" / name
             for name in ("rules.yml", "alerts.yml")}
    for dashboard in sorted((ROOT / "grafana" / "dashboards").glob("*.json")):
        pairs[dashboard] = FILES / "dashboards" / dashboard.name
    return pairs


def stale() -> list[str]:
    """The copies that differ from their source, or have none (a dashboard removed)."""
    pairs = sources()
    wrong = [str(copy.relative_to(ROOT)) for source, copy in pairs.items()
             if not copy.is_file() or copy.read_bytes() != source.read_bytes()]
    kept = set(pairs.values())
    wrong += [str(p.relative_to(ROOT)) for p in sorted(FILES.rglob("*"))
              if p.is_file() and p not in kept]
    return wrong


def write() -> None:
    kept = set()
    for source, copy in sources().items():
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(source.read_bytes())
        kept.add(copy)
    for p in FILES.rglob("*"):
        if p.is_file() and p not in kept:
            p.unlink()


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        wrong = stale()
        for name in wrong:
            print(f"{name}: differs from its source; run python charts/sync.py",
                  file=sys.stderr)
        return 1 if wrong else 0
    if argv:
        print("usage: python charts/sync.py [--check]", file=sys.stderr)
        return 2
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
