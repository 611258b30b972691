"""`reconcile`: our figures beside the providers' own, per day, account, model and key."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import sys
import time

from ..reconcile.compare import Row, compare, ordered
from ..reconcile.job import fetch_account
from ..reconcile.keys import tails
from ..reconcile.providers import days_between
from ..store.reconcile import fetched_days, ours, theirs
from .commands import config_problems, history_file, reading

# The table's columns: (heading, the row's columns, ours then theirs where two).
TABLE = (("day", ("day",)), ("account", ("account",)), ("model", ("model",)),
         ("api_key", ("api_key",)), ("requests", ("requests", "provider_requests")),
         ("input uncached", ("input_uncached_tokens", "provider_input_uncached_tokens")),
         ("cache read", ("cache_read_tokens", "provider_cache_read_tokens")),
         ("cache write", ("cache_write_tokens", "provider_cache_write_tokens")),
         ("output", ("output_tokens", "provider_output_tokens")),
         ("fee USD", ("fee_usd", "provider_fee_usd")), ("drift USD", ("drift_usd",)),
         ("drift", ("drift_share",)), ("likely cause", ("likely_cause",)))


def _day(text: str | None, flag: str, default: dt.date) -> dt.date:
    if text is None:
        return default
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{flag}: {text!r} is not a day, YYYY-MM-DD") from None


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.8f}".rstrip("0").rstrip(".") if value else "0"
    return str(value)


def table(rows: list[Row]) -> str:
    """Aligned columns, ours/theirs in one cell; the drift share as a percentage."""
    lines = [[heading for heading, _ in TABLE]]
    for row in rows:
        d = row.as_dict()
        cells = []
        for heading, names in TABLE:
            if heading == "drift":
                share = d["drift_share"]
                cells.append("-" if share is None else f"{share * 100:+.1f}%")
            else:
                cells.append("/".join(_cell(d[n]) for n in names))
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(TABLE))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines) + "\n"


def encode(rows: list[Row], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([r.as_dict() for r in rows], indent=1) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        dicts = [r.as_dict() for r in rows]
        writer.writerow(list(Row.__dataclass_fields__))
        writer.writerows([["" if v is None else v for v in d.values()] for d in dicts])
        return out.getvalue()
    return table(rows)


def reconcile(args, env=os.environ, now: float | None = None) -> int:
    """Print the comparison of the days --from..--to (default the last 7 whole UTC days);
    with --fetch, fetch them from the providers first."""
    from ..config.load import load_config
    from ..config.schema import ConfigError
    now = time.time() if now is None else now
    try:
        config = load_config(args.config, env, unset=[])
        yesterday = dt.datetime.fromtimestamp(now, dt.UTC).date() - dt.timedelta(days=1)
        last = _day(args.to, "--to", yesterday)
        first = _day(args.from_, "--from", last - dt.timedelta(days=6))
    except ConfigError as e:
        config_problems(args.config, e.problems)
        return 2
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    if first > last:
        print(f"--from: {first} is after --to {last}", file=sys.stderr)
        return 2
    if not config.reconcile:
        print(f"{args.config}: no reconcile: accounts to compare with (see "
              "docs/reconciliation.md)", file=sys.stderr)
        return 2
    args.db = None
    db, status = history_file(args)
    if db is None:
        return status
    days = days_between(first.isoformat(), last.isoformat())

    def work() -> int:
        failed = False
        if args.fetch:
            for a in config.reconcile:
                got = fetch_account(db, a, env, now=now, days=days,
                                    tails=tails(config.api_keys, env))
                if got is not None and got.failed:
                    failed = True
                    print(f"reconcile: account {a.name}: {len(got.failed)} of {len(days)} "
                          f"days not fetched ({', '.join(sorted(set(got.failed.values())))})"
                          f": {got.problem}", file=sys.stderr)
        blocks = []
        for a in config.reconcile:
            # A day not fetched (yet, or failed) has none of their side: not compared.
            fetched = fetched_days(db, a.name, days[0], days[-1])
            if missing := [d for d in days if d not in fetched]:
                print(f"reconcile: account {a.name}: {', '.join(missing)} not fetched from "
                      "the provider (not yet, or the fetch failed): not compared; --fetch "
                      "fetches them now", file=sys.stderr)
            usage, fees = theirs(db, a.name, days[0], days[-1])
            blocks += compare(a.name, a.provider, [f for f in ours(
                db, a.services, days[0], days[-1]) if f.day in fetched], usage, fees)
        sys.stdout.write(encode(ordered(blocks), args.format))
        if not blocks:
            print(f"reconcile: neither side has figures of {days[0]} to {days[-1]}: the "
                  "gateway fetches the providers' daily, or pass --fetch", file=sys.stderr)
        return 1 if failed else 0

    return reading(db, work)
