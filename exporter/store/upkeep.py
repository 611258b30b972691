"""The history's upkeep, hourly, by one process of a fleet at a time (its lease): the days
to come made ready (PostgreSQL's partitions), and what is past the retention deleted. In
a thread, on a connection of its own: its statements may wait on other sessions, the
writer and the event loop never do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from zoneinfo import ZoneInfo

from .batches import prune
from .database import Database, reason

log = logging.getLogger(__name__)
EVERY, RETRY = 3600.0, 60.0  # seconds between rounds; after a round that failed


class Upkeep:
    def __init__(self, db: Database, retention_days: float | None, tz: ZoneInfo,
                 clock=time.time):
        self.db, self.retention_days, self.tz, self.clock = db, retention_days, tz, clock

    async def run(self) -> None:
        """A round now, then every hour (a minute after a round that failed), until
        cancelled."""
        while True:
            try:
                await asyncio.to_thread(self.once)
                wait = EVERY
            except Exception as e:  # the database down, say: the next round tries again
                log.warning("history upkeep: %s; trying again in a minute", reason(e))
                wait = RETRY
            await asyncio.sleep(wait)

    def once(self) -> None:
        """One round: the coming days made ready, then the retention."""
        conn = self.db.dedicated()
        try:
            conn.dialect.prepare(conn, self.clock())
            if self.retention_days:
                prune(conn, self.clock(), self.retention_days, self.tz)
        finally:
            conn.close()
