"""Leases: a job that one process of a fleet runs at a time, on both engines."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from conftest import until

from exporter.store import postgresql
from exporter.store.database import Database
from exporter.store.ledger import JobLedger, Lease
from exporter.store.singleton import Singleton


def test_one_holder_at_a_time_until_it_lets_go_or_lapses(db):
    db.migrate()
    a, b = Lease(db, "prober", ttl=0.5), Lease(db, "prober", ttl=0.5)
    assert (a.hold(), b.hold(), a.hold()) == (True, False, True)  # a renews; b waits
    assert a.holder_now() == a.holder and Lease(db, "reports", ttl=0.5).hold()  # one per job
    a.release()  # given back: taken at the next try
    assert (b.hold(), a.hold()) == (True, False)
    assert b.holder_now() == b.holder


async def test_a_lapsed_lease_moves_to_the_next_process_that_asks(db):
    db.migrate()
    a, b = Lease(db, "prober", ttl=0.3), Lease(db, "prober", ttl=0.3)
    assert a.hold()
    await until(b.hold, timeout=10)  # a stopped renewing: its lease lapses by the database's clock
    assert not a.hold()


class Job:
    def __init__(self):
        self.running = asyncio.Event()
        self.runs = 0

    async def run(self):
        self.runs += 1
        self.running.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.running.clear()


async def test_the_job_runs_only_where_the_lease_is_held(db):
    db.migrate()
    first, second = Job(), Job()
    one = Singleton(db, "prober", first, ttl=1.0, renew=0.05)
    two = Singleton(db, "prober", second, ttl=1.0, renew=0.05)
    tasks = [asyncio.create_task(one.run())]
    await asyncio.wait_for(first.running.wait(), 10)
    tries = []
    hold = two.lease.hold
    two.lease.hold = lambda: tries.append(1) or hold()
    tasks.append(asyncio.create_task(two.run()))
    await until(lambda: len(tries) >= 6)  # six tries of the second: none may start its job
    assert (first.running.is_set(), second.runs) == (True, 0)
    tasks[0].cancel()  # a process that stops gives the lease back: the other takes it
    await asyncio.gather(tasks[0], return_exceptions=True)
    assert not first.running.is_set()
    await asyncio.wait_for(second.running.wait(), 10)
    tasks[1].cancel()
    await asyncio.gather(tasks[1], return_exceptions=True)
    assert (first.runs, second.runs) == (1, 1)


def test_readers_never_take_the_connections_claims_and_leases_need(postgres_server,
                                                                   monkeypatch):
    """Exports hold their connection as long as they take: however many run, a lease's
    renewal and a batch's claim still find one."""
    monkeypatch.setattr(postgresql, "POOL_WAIT", 0.2)
    db = Database(postgres_server.create_database("pool"), pooled=True)
    db.migrate()
    try:
        with contextlib.ExitStack() as readers:
            for _ in range(postgresql.API_READERS):
                readers.enter_context(db.connect(reader=True))
            with pytest.raises(db.Error, match="busy"):  # one reader more is told, soon
                readers.enter_context(db.connect(reader=True))
            assert Lease(db, "prober", ttl=5).hold()
            assert JobLedger(db).claim("batch_1", 1.0)
    finally:
        db.close()
