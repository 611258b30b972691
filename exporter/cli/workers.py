"""`serve --workers N`: several gateway processes on the same ports, one consistent /metrics.

The supervisor gives each gateway instance its own, fresh directory for prometheus-client's
multiprocess files, so two gateways on one host never share or wipe each other's counters;
a worker that dies is marked dead (its live gauges drop out, its counters stay, so totals
never go backwards) and replaced. Every worker writes to the one history database (made
ready by `serve` before the workers start), where the jobs that one process runs at a time
hold their leases.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from prometheus_client import multiprocess

from ..config.table import Config

log = logging.getLogger(__name__)
# An error exit this soon after start means the worker cannot start (a port taken, say):
# restarting it would loop. Death by a signal (kill -9, the OOM killer) is always replaced.
QUICK_DEATH = 5.0


def run_workers(argv: list[str], n: int, config: Config) -> int:
    """Run n `serve --worker` processes until SIGTERM or SIGINT; restart any that die."""
    shared = tempfile.mkdtemp(prefix="llm-usage-exporter-metrics-")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": shared}
    command = [sys.executable, "-m", "exporter", *argv, "--worker"]
    procs: dict[int, float] = {}
    # Without a history to hold a lease in, one named worker probes the deployments: each
    # probing would count the same GPU time again.
    prober: int | None = None
    stopping = False
    status = 0

    def spawn(probe: bool = False) -> None:
        nonlocal prober
        pid = subprocess.Popen(command, env={**env, "LLM_USAGE_EXPORTER_PROBER": "1"}
                               if probe else env).pid
        procs[pid] = time.monotonic()
        if probe:
            prober = pid

    def tell_all(signum) -> None:
        for pid in procs:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True
        tell_all(signal.SIGTERM)

    def hangup(signum, frame) -> None:  # each worker reloads its own configuration
        tell_all(signal.SIGHUP)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, hangup)
    log.info("starting %d workers; metrics files in %s", n, shared)
    try:
        for i in range(n):
            spawn(probe=i == 0)
        while procs:
            pid, status_word = os.wait()
            code = os.waitstatus_to_exitcode(status_word)  # negative: killed by that signal
            started = procs.pop(pid, None)
            if started is None:
                continue
            multiprocess.mark_process_dead(pid, shared)
            if stopping:  # a worker still starting dies of the SIGTERM itself: that is fine
                status = status or (1 if code > 0 else 0)
            elif code > 0 and time.monotonic() - started < QUICK_DEATH:
                log.error("worker %d exited at start (status %d): stopping", pid, code)
                status = 1
                stop(None, None)
            else:
                log.warning("worker %d exited (status %d): starting another", pid, code)
                spawn(probe=pid == prober)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    return status
