"""The documentation's picture: page one of a summary report of a made-up month, drawn by
the report code itself and rendered by poppler's pdftoppm (docs/images/report.png).

    python -m exporter.devtools.picture [OUTPUT]
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry

from ..record import RequestRecord, Usage
from ..reports.pdf import pdf
from ..reports.sections import build
from ..store.database import Database
from ..store.query import Filters
from ..store.writer import History
from ..telemetry.background import HistoryMetrics

UTC = ZoneInfo("UTC")
OUTPUT = Path(__file__).resolve().parent.parent.parent / "docs" / "images" / "report.png"
# (model, USD per million input and output tokens, requests a day): list prices.
MODELS = [("gpt-4o", "2.5", "10", 90), ("gpt-4o-mini", "0.15", "0.6", 400),
          ("claude-sonnet-4-5", "3", "15", 120), ("claude-haiku-4-5", "1", "5", 150),
          ("gemini-2.5-pro", "1.25", "10", 40), ("gemini-2.5-flash", "0.3", "2.5", 200),
          ("o3", "2", "8", 25), ("gpt-4.1", "2", "8", 30)]
KEYS = ["search-team", "support-bot", "data-science", "marketing"]


def month(rng: random.Random, start: datetime, days: int, scale: float = 1.0):
    """A made-up month of traffic, growing through the month, 2% of it failing."""
    for day in range(days):
        for model, price_in, price_out, per_day in MODELS:
            for n in range(int(per_day * scale * (0.6 + day / days) * rng.uniform(0.8, 1.2) / 10)):
                when = start.timestamp() + day * 86400 + rng.uniform(0, 86400)
                r = RequestRecord(f"{model}-{day}-{n}", when, "openai", "openai",
                                  rng.choice(KEYS), "chat", model=model, code=200,
                                  duration=rng.uniform(0.4, 6))
                if rng.random() < 0.02:
                    r.code, r.error_type = 500, "upstream_error"
                else:
                    tokens_in, tokens_out = rng.randint(500, 6000), rng.randint(50, 900)
                    r.usage = Usage(input_text=tokens_in, output_text=tokens_out)
                    r.fees = [("input", "text", tokens_in * Decimal(price_in) / 10**6),
                              ("output", "text", tokens_out * Decimal(price_out) / 10**6)]
                    r.fee = sum((f for _, _, f in r.fees), Decimal(0))
                yield r


def main() -> int:
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        print("picture: pdftoppm is needed (apt-get install poppler-utils)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(str(Path(tmp) / "h.db"))
        history = History(db, HistoryMetrics(CollectorRegistry()), linger=0)
        october, november = datetime(2026, 10, 2, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
        rng = random.Random(27)
        for r in [*month(rng, october, 30, 0.8), *month(rng, november, 30)]:
            history.put(r)
        history.start()
        history.close()
        period = Filters(november.timestamp(), november.timestamp() + 30 * 86400, UTC)
        report = build(db, "summary", period, period.end + 86400)
        (Path(tmp) / "r.pdf").write_bytes(pdf(report))
        subprocess.run([pdftoppm, "-r", "60", "-f", "1", "-l", "1", "-png", "-singlefile",
                        str(Path(tmp) / "r.pdf"), str(output.with_suffix(""))], check=True)
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
