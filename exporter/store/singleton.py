"""Jobs that one process of a fleet runs at a time: the deployments' prober and the report
schedule. Every process tries for the job's lease each second; the holder runs the job,
and when it stops (SIGTERM gives the lease back at once; a process killed outright lets it
expire after `TTL` seconds), another process takes it at its next try.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .database import Database, reason
from .ledger import Lease

log = logging.getLogger(__name__)
TTL = 5.0  # seconds a lease outlives its last renewal: a dead holder's job moves this fast
RENEW = 1.0  # seconds between tries; well inside TTL, so a slow round trip never loses it


class Singleton:
    """Run `job.run()` (a coroutine that runs until cancelled) while this process holds
    the lease `name`; cancel it the moment the lease is lost or cannot be renewed in time."""

    def __init__(self, db: Database, name: str, job, *, ttl: float = TTL,
                 renew: float = RENEW, clock=time.monotonic):
        self.lease = Lease(db, name, ttl)
        self.name, self.job, self.ttl, self.renew, self.clock = name, job, ttl, renew, clock
        self.task: asyncio.Task | None = None

    async def run(self) -> None:
        held_until = 0.0  # by this process's clock: the last renewal + TTL, less a margin
        failing = False
        asking: asyncio.Future | None = None  # a renewal under way, in a thread
        try:
            while True:
                if asking is None:
                    asked = self.clock()
                    asking = asyncio.ensure_future(asyncio.to_thread(self.lease.hold))
                # A renewal that hangs (a server gone silent) is not waited for: the lease
                # runs out by this clock all the same, and the job stops with it.
                await asyncio.wait([asking], timeout=self.renew)
                if asking.done():
                    try:
                        held = asking.result()
                        held_until = asked + self.ttl - self.renew if held else 0.0
                        if failing:
                            log.info("%s: the history answers again", self.name)
                        failing = False
                    except Exception as e:  # the database is down: it lasts its TTL
                        if not failing:
                            log.warning("%s: cannot reach the history to hold its lease "
                                        "(%s)", self.name, reason(e))
                        failing = True
                    asking = None
                running = self.task is not None and not self.task.done()
                if self.clock() < held_until and not running:
                    log.info("%s: this process runs it now", self.name)
                    self.task = asyncio.create_task(self.job.run())
                elif self.clock() >= held_until and running:
                    log.warning("%s: its lease is lost; another process may run it", self.name)
                    await self._stop()
                if asking is None:
                    await asyncio.sleep(self.renew)
        finally:
            await self._stop()
            if held_until:
                try:
                    await asyncio.wait_for(asyncio.to_thread(self.lease.release), self.ttl)
                except Exception:  # it expires by itself
                    pass

    async def _stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None
