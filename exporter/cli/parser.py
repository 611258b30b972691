"""The command line's arguments: every subcommand and flag, checked as they are parsed.

A mistake in them is argparse's: one line naming the flag, exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__


def positive(kind):
    """An argparse type: a number of `kind` above 0."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


def history_flags(parser, filters) -> None:
    """Where the history is, the period and the label filters: export's and report's."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", metavar="FILE", help="read history.path (or history.url) "
                       "from this config")
    where.add_argument("--db", metavar="PATH|URL",
                       help="the history database: a SQLite file (default "
                       "llm-usage-history.db) or postgresql://USER@HOST:PORT/DB")
    parser.add_argument("--from", dest="from_", metavar="TIME",
                        help="start: ISO 8601 or Unix seconds (default: 24 hours before --to)")
    parser.add_argument("--to", metavar="TIME", help="end, excluded (default: now)")
    parser.add_argument("--tz", help="IANA time zone for days and times (default UTC)")
    helps = {"tag": "only requests with this tag, KEY:VALUE (or several, comma-separated, "
             "each to hold)", "request-id": "only this request id (one value: a client's "
             "own id may hold a comma)"}
    for label in filters:
        parser.add_argument(f"--{label}", help=helps.get(label) or f"only this "
                            f"{label.replace('-', '_')} (or a comma-separated list)")


class Parser(argparse.ArgumentParser):
    """argparse's parser, but a mistake is one line: what is wrong, and where help is."""

    argv: list[str] = []

    def parse_args(self, args=None, namespace=None):
        self.argv = list(sys.argv[1:] if args is None else args)  # for error()
        return super().parse_args(args, namespace)

    def error(self, message: str):
        # argparse reports an unknown flag of a command from the top parser: its help, the
        # command's, is the one that lists the flags.
        prog = self.prog
        if self._subparsers is not None and message.startswith("unrecognized arguments"):
            command = next((a for a in self.argv if a in self._commands()), None)
            prog = f"{prog} {command}" if command else prog
        self.exit(2, f"{self.prog}: {message} (see {prog} --help)\n")

    def _commands(self) -> set[str]:
        return {name for action in self._subparsers._group_actions
                for name in getattr(action, "choices", None) or ()}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="llm-usage-exporter",
        description="LLM API gateway that exports usage, fees and latency to Prometheus.")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    # Not required= here: argparse would then name a missing group before an unknown flag,
    # and `serve --upstrem URL` said "one of --config --upstream is required".
    source = serve.add_mutually_exclusive_group()
    source.add_argument("--config", metavar="FILE", help="YAML configuration file")
    source.add_argument("--upstream", metavar="URL",
                        help="a single upstream, e.g. https://api.openai.com")
    serve.add_argument("--provider", help="with --upstream: the provider label "
                       "(default: guessed from the URL's host)")
    serve.add_argument("--listen", metavar="HOST:PORT",
                       help="client traffic (default 127.0.0.1:8080)")
    serve.add_argument("--admin-listen", metavar="HOST:PORT",
                       help="/metrics and /healthz (default 127.0.0.1:9464)")
    serve.add_argument("--workers", type=positive(int), metavar="N",
                       help="processes sharing the ports (default: the config's workers, 1)")
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)

    check = sub.add_parser("check-config", help="print every problem in a config file")
    check.add_argument("file")

    prices = sub.add_parser("prices", help="print the price that would be applied to a model, "
                            "and where it comes from")
    prices.add_argument("model", nargs="?", help="model name as the upstream reports it")
    prices.add_argument("--provider", help="the service's provider label, e.g. anthropic "
                        "(default: the model's own provider, found by its name)")
    prices.add_argument("--service", help="with --config: price as this service does")
    prices.add_argument("--service-tier", help="the service tier the response reports, "
                        "e.g. priority or flex")
    prices.add_argument("--config", metavar="FILE", help="apply this config's pricing section "
                        "and price data")
    prices.add_argument("--at", metavar="TIME", help="the moment of the request, ISO 8601 "
                        "(default now): time-of-day and dated prices follow it")
    prices.add_argument("--batch", action="store_true", help="the batch APIs' prices")

    export = sub.add_parser("export", help="write usage aggregates or request rows from the "
                            "history database to a CSV, Excel or JSON file")
    history_flags(export, ("service", "provider", "model", "api-key", "operation",
                           "request-id", "project", "user", "tag"))
    export.add_argument("--kind", choices=("usage", "requests", "deployments"),
                        default="usage", help="aggregates (default), one row per request, "
                        "or the deployments' runtime, GPU hours and cost")
    export.add_argument("--group-by", help="comma-separated: model, api_key, service, "
                        "provider, project, user, tag:KEY")
    export.add_argument("--granularity", help="minute, 5m, hour, day, week (from Monday), "
                        "month or none (default)")
    export.add_argument("--order", help="tokens (default), fee or requests")
    export.add_argument("--limit", help="at most this many rows (usage: the top N groups)")
    export.add_argument("--status", help="success, error or an HTTP status code")
    export.add_argument("--format", choices=("csv", "xlsx", "json"), default="csv")
    export.add_argument("--output", metavar="FILE", help="default: standard output (not for "
                        "xlsx)")

    report = sub.add_parser("report", help="a summary, cost, trend or detailed report of the "
                            "history, as PDF or Excel")
    history_flags(report, ("service", "provider", "model", "api-key", "operation", "project",
                           "user", "tag"))
    report.add_argument("--type", choices=("summary", "cost", "trend", "detailed"),
                        default="summary", help="what the report holds (default summary)")
    report.add_argument("--format", choices=("pdf", "xlsx"),
                        help="pdf or xlsx (default: the --output's extension, else pdf)")
    report.add_argument("--output", metavar="FILE", help="default: llm-TYPE-report-FROM-to-"
                        "TO.FORMAT in this folder")
    report.add_argument("--granularity", choices=("hour", "day", "week", "month"),
                        help="the buckets of its charts and tables (default: by the period's "
                        "length, hours up to 2 days, days up to 62, weeks up to 190, then "
                        "months; days at least for detailed)")

    rec = sub.add_parser("reconcile", help="our tokens and fees beside the providers' own "
                         "usage and cost reports, per day, account, model and key")
    rec.add_argument("--config", metavar="FILE", required=True,
                     help="the gateway's config: its reconcile: accounts and history")
    rec.add_argument("--from", dest="from_", metavar="DATE",
                     help="first UTC day, YYYY-MM-DD (default: 6 days before --to)")
    rec.add_argument("--to", metavar="DATE", help="last UTC day, included (default: "
                     "yesterday)")
    rec.add_argument("--fetch", action="store_true", help="fetch the days from the "
                     "providers' admin APIs now, instead of using what the history holds")
    rec.add_argument("--format", choices=("table", "csv", "json"), default="table")

    bench = sub.add_parser("bench", help="measure the gateway against a simulated upstream "
                           "hit directly, in the same run")
    bench.add_argument("--duration", type=positive(float), default=5.0,
                       help="seconds per run (default 5)")
    bench.add_argument("--repetitions", type=positive(int), default=3,
                       help="runs per target and scenario, alternating (default 3)")
    bench.add_argument("--no-wrk", action="store_true",
                       help="use the built-in client even where wrk is installed")
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    bench.add_argument("--workers", type=positive(int), default=1, metavar="N",
                       help="gateway worker processes (default 1)")
    bench.add_argument("--no-pin", action="store_true",
                       help="leave every process on every core (to compare worker counts)")

    demo = sub.add_parser("demo", help="run the gateway in front of a simulated upstream "
                          "and send it a little traffic (no API key needed)")
    demo.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT")
    demo.add_argument("--admin-listen", default="127.0.0.1:9464", metavar="HOST:PORT")
    demo.add_argument("--rate", type=positive(float), default=2.0,
                      help="requests per second (default 2)")
    demo.add_argument("--requests", type=positive(int),
                      help="stop after this many requests (default: run until Ctrl-C)")
    demo.add_argument("--history", metavar="PATH|URL", help="keep the demo's request history "
                      "in this file, or in this PostgreSQL database (postgresql://USER@HOST:"
                      "PORT/DB, the password in PGPASSWORD) that several demos may share "
                      "(default: a temporary file, removed at the end)")

    keys = sub.add_parser("keys", help="managed keys: make a new client key")
    keys.add_argument("action", choices=("new",))
    keys.add_argument("name", help="the key's name: its `api_key` label")
    keys.add_argument("--services", help="comma-separated services the key may use "
                      "(default: every one)")
    keys.add_argument("--models", help="comma-separated models the key may ask for, * and ? "
                      "matching any text (default: every one)")

    parser.serve = serve  # main() names its missing --config or --upstream
    return parser
