"""When a scrape last read the metrics, so a counter's new series is seen at 0 first.

A counter series that appears with its first increment already in it loses that increment
to increase() and rate(): they see a series starting at 3, not a rise from 0 to 3, so the
first request of every new model, key and project went uncounted on the dashboards. The
gateway therefore makes a new series at 0 and holds its increments (metrics.py) until a
scrape that began after it was made has read it; then they count. A held increment waits
one scrape interval at most, plus up to a second (the release runs every second).

With several Prometheus servers scraping one gateway (an HA pair), the first of them reads
the 0; the other may not, as before. With --workers, a scrape is answered by any worker:
each writes the start of the last scrape it answered to a file of its own in
PROMETHEUS_MULTIPROC_DIR (replaced whole, never read half written), and every worker
releases by the latest of them. Times are time.monotonic(), one clock for every process on
the host.
"""

from __future__ import annotations

import asyncio
import glob
import os
import struct
import time

_TIME = struct.Struct("<d")
RELEASE_SECONDS = 1.0  # how often held increments are let through


class Scrapes:
    """The start of the latest scrape answered, by this process or (`folder`) any worker."""

    def __init__(self, folder: str | None = None):
        self.folder = folder
        self.latest = 0.0  # this process's

    def answered(self, started: float) -> None:
        """A scrape that began at `started` (time.monotonic()) has been answered."""
        if started <= self.latest:
            return
        self.latest = started
        if self.folder is not None:
            path = os.path.join(self.folder, f"scraped_{os.getpid()}.bin")
            with open(path + ".tmp", "wb") as f:
                f.write(_TIME.pack(started))
            os.replace(path + ".tmp", path)

    def last(self) -> float:
        """The start of the latest scrape answered by any of them."""
        latest = self.latest
        if self.folder is not None:
            for path in glob.glob(os.path.join(self.folder, "scraped_*.bin")):
                try:
                    with open(path, "rb") as f:
                        latest = max(latest, _TIME.unpack(f.read(_TIME.size))[0])
                except (OSError, struct.error):  # a worker's file half made: next time
                    continue
        return latest


class Held:
    """A counter's series that no scrape has read yet: its increments wait for one."""

    __slots__ = ("child", "born", "amount")

    def __init__(self, child, born: float):
        self.child, self.born, self.amount = child, born, 0.0

    def inc(self, amount: float = 1) -> None:
        self.amount += amount


class Holds:
    """The new series of some counters, in `children` (metric and labels -> child), held
    until a scrape has read them at 0. Used from the event loop only."""

    def __init__(self, scrapes: Scrapes, children: dict):
        self.scrapes, self.children = scrapes, children
        self.young: list[tuple] = []  # the keys of the children held

    def hold(self, key: tuple, child) -> Held:
        """Hold a series just made (at 0) until a scrape has read it."""
        self.young.append(key)
        return Held(child, time.monotonic())

    def release(self, scraped: float | None = None) -> None:
        """Let the held increments count of every series a scrape that began after it was
        made has read; `scraped`: that scrape's start (by default the latest scrape's;
        math.inf releases all, at shutdown)."""
        if not self.young:
            return
        scraped = self.scrapes.last() if scraped is None else scraped
        young = []
        for key in self.young:
            held = self.children[key]
            if held.born < scraped:
                if held.amount:
                    held.child.inc(held.amount)
                self.children[key] = held.child
            else:
                young.append(key)
        self.young = young

    async def releasing(self) -> None:
        """Release every second, until cancelled."""
        while True:
            await asyncio.sleep(RELEASE_SECONDS)
            self.release()
