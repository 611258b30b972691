"""`python -m grafana [--check]`: write the dashboards, or check the committed ones."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from . import deployments, details, lint, overview, performance, rankings, requests, spend

DASHBOARDS = Path(__file__).parent / "dashboards"
# In the order of the docs' pages (docs/dashboards.md); the file name is the dashboard's uid.
MODULES = (overview, rankings, details, performance, spend, requests, deployments)


def generate() -> dict[str, str]:
    """Every dashboard's JSON text, by file name."""
    out = {}
    for module in MODULES:
        model = lint.number_panels(module.build().build())
        text = JSONEncoder(sort_keys=True, indent=2).encode(model) + "\n"
        out[f"{module.UID}.json"] = text
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grafana", description=__doc__)
    parser.add_argument("--check", action="store_true",
                        help="fail when the committed JSON differs from the generated, or a "
                        "dashboard breaks a lint rule; write nothing")
    args = parser.parse_args(argv)
    generated = generate()
    problems = [f"{name}: {p}" for name, text in generated.items()
                for p in lint.check(json.loads(text))]
    if args.check:
        committed = {p.name for p in DASHBOARDS.glob("*.json")}
        for name, text in generated.items():
            path = DASHBOARDS / name
            if not path.exists() or path.read_text() != text:
                problems.append(f"{name}: differs from what the code generates "
                                "(run python -m grafana)")
        problems += [f"{name}: no code generates it" for name in committed - set(generated)]
    else:
        DASHBOARDS.mkdir(exist_ok=True)
        for stale in DASHBOARDS.glob("*.json"):
            if stale.name not in generated:
                stale.unlink()
        for name, text in generated.items():
            (DASHBOARDS / name).write_text(text)
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
