"""Command line: argparse -> load the config -> build the app -> run."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from ..accounting.pricing import pricing_for
from ..accounting.table import Table, TableError
from ..config.load import load_config, single_upstream
from ..config.schema import ConfigError
from ..gateway.aws import NoCredentials
from ..telemetry.logs import setup_logging
from ..wire.server import ListenError
from .commands import (
    check_config,
    config_warnings,
    export_history,
    history_problem,
    show_prices,
    with_overrides,
)
from .parser import build_parser


def run_loop(coro):
    """Run the gateway on uvloop where it is installed (about 5% more requests per second
    than asyncio's own loop, measured at concurrency 32), else on asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv=None) -> int:
    """Run a command; a user's mistake is one line on stderr and exit 2, a failure to do
    what was asked one line and exit 1: never a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(parser, args, argv)
    except ListenError as e:
        print(f"llm-usage-exporter {args.command}: cannot listen on {e}", file=sys.stderr)
        return 1
    except NoCredentials as e:  # a service signs with the gateway's AWS credentials
        print(f"llm-usage-exporter {args.command}: aws_credentials: gateway: {e}",
              file=sys.stderr)
        return 1
    except BrokenPipeError:  # `export ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a process ended by SIGPIPE


def _run(parser, args, argv) -> int:
    if args.command == "check-config":
        return check_config(args.file)
    if args.command == "prices":
        return show_prices(args)
    if args.command == "export":
        return export_history(args)
    if args.command == "report":
        from .report import make_report
        return make_report(args)
    if args.command == "reconcile":
        from .reconcile import reconcile
        return reconcile(args)
    if args.command == "keys":
        from .keys import new_key
        return new_key(args.name, args.services, args.models)
    if args.command == "bench":
        from ..devtools.bench import main as bench_main
        return bench_main(args.duration, args.repetitions, not args.no_wrk, args.json,
                          args.workers, not args.no_pin)
    if args.command == "demo":
        from ..devtools.demo import run_demo
        return run_loop(run_demo(args.listen, args.admin_listen, args.rate, args.requests,
                                 args.history))
    if not (args.config or args.upstream):
        parser.serve.error("give --config FILE (several services) or --upstream URL (one)")
    return serve(args, argv)


# Config keys a flag sets: a problem with one names the flag the user wrote.
_FLAGS = {"services[0].base_url": "--upstream", "services[0].provider": "--provider",
          "listen": "--listen", "admin_listen": "--admin-listen"}


def _flag_named(problem: str, args) -> str:
    """A config problem, named by the flag that set the key where one did."""
    path, _, message = problem.partition(": ")
    flag = _FLAGS.get(path)
    given = flag and (args.upstream if flag == "--upstream" else
                      getattr(args, flag[2:].replace("-", "_"), None))
    return f"{flag}: {message}" if given else f"config: {problem}"


def serve(args, argv) -> int:
    load = None
    try:
        if args.config:
            overrides = {k: v for k, v in (("listen", args.listen),
                                           ("admin_listen", args.admin_listen)) if v}

            def load():
                config = load_config(args.config)
                return with_overrides(config, overrides) if overrides else config
            config = load()
        else:
            provider = args.provider or Table().guess(args.upstream)
            config = single_upstream(args.upstream, provider=provider, listen=args.listen,
                                     admin_listen=args.admin_listen)
    except ConfigError as e:
        for problem in e.problems:
            print(_flag_named(problem, args), file=sys.stderr)
        return 2
    setup_logging(config.log_level, config.log_format)
    if not args.config and not args.provider and not args.worker:
        # A guess prices the traffic (self-hosted: nothing; a cloud's: its table): say it.
        mode = pricing_for(config).mode(config.services[0].name, config.services[0].provider)
        logging.getLogger("exporter.config").info(
            "--upstream %s: provider %s guessed from the host (%s); --provider NAME sets it",
            args.upstream, config.services[0].provider, mode.reason)
    try:
        for warning in config_warnings(config):
            logging.getLogger("exporter.config").warning("config: %s", warning)
    except TableError as e:
        print(f"config: pricing_data: {e}", file=sys.stderr)
        return 2
    if (problem := history_problem(config)) is not None:
        print(f"config: {problem}", file=sys.stderr)
        return 1
    workers = args.workers or config.workers
    if workers > 1 and not args.worker:
        from .workers import run_workers
        return run_workers(sys.argv[1:] if argv is None else list(argv), workers, config)
    from ..app import serve as run
    run_loop(run(config, worker=args.worker, load=load))
    return 0
