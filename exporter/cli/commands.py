"""The commands that read rather than serve: prices, export; and the flags over a config."""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import sys
import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from ..accounting.pricing import Pricing, describe, pricing_for, warnings
from ..accounting.providers import GUESSED
from ..accounting.table import Table, TableError
from ..api.encode import encode
from ..config.checks import check_database_url, check_hostport
from ..config.load import key_warnings, load_config
from ..config.schema import ConfigError
from ..store.database import Database, reason, unreachable
from ..store.deployments import DEPLOYMENT_COLUMNS, deployment_rows
from ..store.query import BadParameter, Filters
from ..store.reads import REQUEST_COLUMNS, request_rows, usage_columns, usage_rows
from ..store.usage import UsageQuery


def config_problems(path: str, problems: list[str]) -> None:
    """Print a config file's problems, one a line, each after the file's name."""
    for problem in problems:  # a file that cannot be read is named already
        print(problem if problem.startswith(f"{path}: ") else f"{path}: {problem}",
              file=sys.stderr)


def load_with_pricing(path: str, unset: list[str] | None = None):
    """A config file and its pricing, or None after printing every problem of either."""
    try:
        config = load_config(path, unset=unset)
        return config, pricing_for(config)
    except ConfigError as e:
        config_problems(path, e.problems)
    except TableError as e:
        print(f"{path}: pricing_data: {e}", file=sys.stderr)
    return None


def check_config(path: str) -> int:
    """Print every problem of a config file (exit 1), or OK and its warnings."""
    unset: list[str] = []  # set where the gateway runs, not necessarily here
    loaded = load_with_pricing(path, unset)
    if loaded is None:
        return 1
    config, pricing = loaded
    for problem in unset:
        print(f"{path}: warning: {problem}: set it before `serve`", file=sys.stderr)
    if (problem := history_problem(config, create=False)) is not None:
        print(f"{path}: {problem}", file=sys.stderr)
        return 1
    for warning in warnings(config, pricing.table) + key_warnings(config):
        print(f"{path}: warning: {warning}", file=sys.stderr)
    print(f"{path}: OK")
    return 0


DEFAULT_HISTORY = "llm-usage-history.db"  # history.path's default


def history_problem(config, create: bool = True, env=os.environ) -> str | None:
    """Why the config's history cannot be used, as `history.KEY: what is wrong`, or None.
    With `create`, it is made or brought up to date (and a server connected to): so
    `serve` stops at once, on one line, rather than failing at its first request."""
    history = config.history
    if not history.enabled:
        return None
    if history.url:
        if not create:
            return None  # a server to reach from where the gateway runs, not from here
        db = Database.of(history, env)
        try:
            db.migrate(ZoneInfo(config.timezone))
        except db.Error as e:
            return f"history.url: {unreachable(history.url, e)}"
        return None
    path = os.path.abspath(history.path)
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        return f"history.path: {history.path}: its folder {folder} does not exist"
    if not os.access(folder, os.W_OK) or os.path.exists(path) and not os.access(path, os.W_OK):
        return f"history.path: {history.path}: not writable by this user"
    if create:
        db = Database(path)
        try:
            db.migrate(ZoneInfo(config.timezone))
        except (db.Error, OSError) as e:
            return f"history.path: {history.path}: {e}"
    return None


def config_warnings(config) -> list[str]:
    """A config's pricing and key warnings (TableError: its pricing_data cannot be read)."""
    return warnings(config, Table(config.pricing_data)) + key_warnings(config)


def show_prices(args) -> int:
    config, pricing = None, Pricing()
    if args.config:
        # Prices need none of the config's secrets: variables set only where the gateway
        # runs are no problem here, as for check-config.
        loaded = load_with_pricing(args.config, unset=[])
        if loaded is None:
            return 2
        config, pricing = loaded
    # Without a provider, as the gateway prices a guessed label: by the model's own name.
    service, provider = "-", args.provider or GUESSED
    if args.service:
        match = [s for s in config.services if s.name == args.service] if config else []
        if not match:
            print(f"--service: no service named {args.service!r}"
                  f"{' in ' + args.config if config else ' (give --config)'}", file=sys.stderr)
            return 2
        service, provider = match[0].name, match[0].provider
    if not args.model:
        print(f"price table: {pricing.table.name} (never fetched)")
        for i, o in enumerate(pricing.overrides):
            prices = ", ".join(f"{name} {value}" for name, value in (
                ("input", o.input), ("output", o.output), ("training", o.training))
                if value is not None)
            print(f"pricing[{i}]: {o.model} (service {o.service or 'any'}): {prices} USD per "
                  "1M tokens")
        print("name a model to see its prices: llm-usage-exporter prices gpt-4o")
        return 0
    try:
        at = datetime.fromisoformat(args.at.replace("Z", "+00:00")) if args.at else None
    except ValueError:
        print(f"--at: {args.at!r} is not ISO 8601 (e.g. 2026-12-01T17:00:00Z)", file=sys.stderr)
        return 2
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    mode = pricing.mode(service, provider)
    sheet = pricing.sheet(service, provider, args.model, args.service_tier, at=at,
                          batch=args.batch)
    # Overrides of one service's prices that did not apply without --service: said.
    scoped = [f"pricing[{i}] prices {o.model} for the service {o.service} only: pass "
              f"--service {o.service} to see its prices" for i, o in enumerate(pricing.overrides)
              if o.service and not args.service and fnmatch.fnmatchcase(args.model, o.model)]
    if sheet is None:
        for line in scoped:
            print(line, file=sys.stderr)
        hint = "" if args.provider or args.service else \
            " If a provider sells it under this name, pass --provider NAME."
        print(f"no price for {args.model} (provider {provider}: {mode.reason}): its requests "
              "are counted in llm_unpriced_requests_total and cost nothing. Add it under "
              f"`pricing:` in the config.{hint}", file=sys.stderr)
        return 1
    source = f"table provider {sheet.provider}" if sheet.provider else "the config"
    print(f"{args.model} (provider {provider}, service tier {args.service_tier or 'default'}"
          f"{', batch' if args.batch else ''}): priced as {sheet.model} by {source} "
          f"({mode.reason})")
    print("\n".join(describe(sheet)))
    for line in scoped:
        print(line)
    return 0


def history_file(args) -> tuple[Database | None, int]:
    """The history database of --db (a path or a PostgreSQL URL) or --config (or the
    default), brought up to date; or None after saying what is wrong on one line, with the
    exit status: 2 for a mistake, 1 for a server that cannot be reached."""
    target = args.db or DEFAULT_HISTORY
    if args.config:
        try:
            # The history's place only: the config's other secrets need not be set here.
            config = load_config(args.config, unset=[])
        except ConfigError as e:
            config_problems(args.config, e.problems)
            return None, 2
        db = Database.of(config.history)
        target = db.target
    elif args.db and "://" in args.db:  # a URL: PostgreSQL's, or named as wrong
        if problem := check_database_url(args.db):
            print(f"--db: {problem}", file=sys.stderr)
            return None, 2
        db = Database(args.db)
    else:
        db = Database(target)
    if not db.exists():
        where = (f"--db: no file {target}" if args.db else
                 f"{args.config}: its history.path {target} does not exist (yet: the gateway "
                 "creates it with its first request)" if args.config else
                 f"no history database {target} in this folder: pass --config FILE (the "
                 "gateway's config, for its history.path) or --db PATH (or a PostgreSQL URL)")
        print(where, file=sys.stderr)
        return None, 2
    try:
        db.migrate()
    except db.Error as e:
        if db.postgresql:  # a server that cannot be reached: nothing to read
            print(f"{'--db' if args.db else args.config}: {unreachable(target, e)}",
                  file=sys.stderr)
            return None, 1
        # SQLite read-only, say: a query that needs a newer column says so
    return db, 0


def history_params(args, more=()) -> dict:
    """The usage API's parameters from the history flags given (history_flags)."""
    names = ("from", "to", "tz", "service", "provider", "model", "api_key", "project", "user",
             "tag", *more)
    return {name: value for name in names
            if (value := getattr(args, "from_" if name == "from" else name)) is not None}


def export_history(args) -> int:
    db, status = history_file(args)
    if db is None:
        return status
    params = history_params(args, ("group_by", "granularity", "order", "limit", "operation",
                                   "request_id", "status"))
    if args.format == "xlsx" and not args.output:
        print("--output: an Excel file cannot go to standard output", file=sys.stderr)
        return 2
    def write() -> int:
        if args.kind == "usage":
            q = UsageQuery.parse(params, time.time())
            rows, columns = usage_rows(db, q), usage_columns(q)
        elif args.kind == "deployments":
            rows = deployment_rows(db, Filters.parse(params, time.time(), frozenset(params)))
            columns = DEPLOYMENT_COLUMNS
        else:
            if "limit" in params and not params["limit"].isdigit():
                raise BadParameter("limit", f"{params['limit']!r} is not a whole number")
            filters = Filters.parse(params, time.time(), frozenset(params))
            rows = request_rows(db, filters, int(params.get("limit", 0)) or None, None)
            columns = REQUEST_COLUMNS
        out = open(args.output, "wb") if args.output else sys.stdout.buffer
        try:
            for chunk in encode(args.format, rows, columns, name=args.kind):
                out.write(chunk)
        finally:
            if args.output:
                out.close()
        if args.output:  # standard output holds the rows themselves: nothing said there
            print(f"wrote {rows.count:,} row{'s' if rows.count != 1 else ''} to {args.output}")
        return 0

    return reading(db, write)


def reading(db: Database, work) -> int:
    """Run `work()` over the history: a bad flag is one line and exit 2, a history that
    cannot be read one line and exit 1."""
    try:
        return work()
    except BadParameter as e:
        print(f"--{e.name.replace('_', '-')}: {str(e).split(': ', 1)[1]}", file=sys.stderr)
        return 2
    except db.Error as e:
        print(f"{db}: {reason(e)}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `export ... | head`: main() ends it quietly
        raise
    except OSError as e:  # the output file cannot be written
        print(f"{e.filename}: {e.strerror}" if e.filename else str(e), file=sys.stderr)
        return 1


def with_overrides(config, overrides: dict):
    """Apply --listen and --admin-listen over a config file's values, checked alike."""
    problems = [f"--{k.replace('_', '-')}: {message}" for k, v in overrides.items()
                if (message := check_hostport(v))]
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(config, **overrides)
