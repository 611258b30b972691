"""The commands that read rather than serve: prices, export; and the flags over a config."""

from __future__ import annotations

import dataclasses
import sqlite3
import sys
import time

from ..accounting.pricing import TABLE, Pricing, describe
from ..config.load import load_config
from ..config.schema import ConfigError
from ..config.table import check_hostport
from ..history.export import REQUEST_COLUMNS, encode, request_rows, usage_columns, usage_rows
from ..history.query import BadParameter, Filters, UsageQuery


def show_prices(args) -> int:
    overrides, provider, service = (), args.provider, args.service or "-"
    if args.config:
        try:
            config = load_config(args.config)
        except ConfigError as e:
            for problem in e.problems:
                print(f"{args.config}: {problem}", file=sys.stderr)
            return 2
        overrides = config.pricing
        if args.service:
            match = [s for s in config.services if s.name == args.service]
            if not match:
                print(f"no service named {args.service!r} in {args.config}", file=sys.stderr)
                return 2
            provider = match[0].provider
    if not args.model:
        print(f"price table: {TABLE} (bundled, never fetched)")
        for i, o in enumerate(overrides):
            print(f"pricing[{i}]: {o.model} (service {o.service or 'any'}): input {o.input}, "
                  f"output {o.output} USD per 1M tokens")
        print("name a model to see its prices: llm-usage-exporter prices gpt-4o")
        return 0
    sheet = Pricing(overrides).sheet(service, provider, args.model, args.service_tier)
    if sheet is None:
        print(f"no price for {args.model} (provider {provider}): its requests are counted in "
              "llm_unpriced_requests_total and cost nothing. Add it under `pricing:` in the "
              "config.", file=sys.stderr)
        return 1
    print(f"{args.model} (provider {provider}, service tier {args.service_tier or 'default'}): "
          f"priced as {sheet.model}")
    print("\n".join(describe(sheet)))
    return 0


def export_history(args) -> int:
    path = args.db or "llm-usage-history.db"
    if args.config:
        try:
            path = load_config(args.config).history.path
        except ConfigError as e:
            print("\n".join(f"{args.config}: {p}" for p in e.problems), file=sys.stderr)
            return 2
    params = {k: v for k, v in {
        "from": args.from_, "to": args.to, "tz": args.tz, "group_by": args.group_by,
        "granularity": args.granularity, "order": args.order, "limit": args.limit,
        "service": args.service, "provider": args.provider, "model": args.model,
        "api_key": args.api_key, "operation": args.operation, "request_id": args.request_id,
        "status": args.status}.items() if v is not None}
    if args.format == "xlsx" and not args.output:
        print("--output: an Excel file cannot go to standard output", file=sys.stderr)
        return 2
    try:
        if args.kind == "usage":
            q = UsageQuery.parse(params, time.time())
            rows, columns = usage_rows(path, q), usage_columns(q)
        else:
            if "limit" in params and not params["limit"].isdigit():
                raise BadParameter("limit", f"{params['limit']!r} is not a whole number")
            filters = Filters.parse(params, time.time())
            rows = request_rows(path, filters, int(params.get("limit", 0)) or None, None)
            columns = REQUEST_COLUMNS
        out = open(args.output, "wb") if args.output else sys.stdout.buffer
        try:
            for chunk in encode(args.format, rows, columns):
                out.write(chunk)
        finally:
            if args.output:
                out.close()
    except BadParameter as e:
        print(f"--{e.name.replace('_', '-')}: {str(e).split(': ', 1)[1]}", file=sys.stderr)
        return 2
    except sqlite3.Error as e:
        print(f"{path}: {e}", file=sys.stderr)
        return 1
    return 0


def with_overrides(config, overrides: dict):
    """Apply --listen and --admin-listen over a config file's values, checked alike."""
    problems = [f"--{k.replace('_', '-')}: {message}" for k, v in overrides.items()
                if (message := check_hostport(v))]
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(config, **overrides)
