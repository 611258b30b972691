from __future__ import annotations

import asyncio
import itertools
import math
import os
import re
import shutil
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from upstream import Replay

from exporter.app import create_admin, create_proxy
from exporter.config.load import parse_config
from exporter.devtools import postgres
from exporter.store.database import Database

ROOT = Path(__file__).parent.parent
# The README and every page of the documentation site: what a user reads.
DOC_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def docs_text() -> str:
    """The README and the site's pages as one text."""
    return "\n".join(page.read_text() for page in DOC_PAGES)


def doc_blocks(language: str) -> list[tuple[str, str]]:
    """(page, block) of every fenced block of `language` in the README and the docs."""
    return [(page.name, body) for page in DOC_PAGES
            for body in re.findall(rf"```{language}\n(.*?)```", page.read_text(), re.S)]


def need_binary(name: str) -> str:
    """Return a binary's path; skip without it locally, fail without it in CI."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI but is not installed")
        pytest.skip(f"{name} is not installed")
    return path


def need_postgres() -> None:
    """Skip without Debian's PostgreSQL server locally; fail without it in CI."""
    if postgres.bindir() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL's initdb and pg_ctl are required in CI (apt-get install "
                        "postgresql)")
        pytest.skip("PostgreSQL's server (initdb, pg_ctl) is not installed")


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL server for the whole run, in a temporary folder."""
    need_postgres()
    server = postgres.Server()
    server.start()
    yield server
    server.stop()


_databases = itertools.count()


def database_name(prefix: str = "t") -> str:
    """A name no other database of the session's server has."""
    return f"{prefix}{next(_databases)}"


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request) -> str:
    """The history's engine: every history test runs on both."""
    return request.param


@pytest.fixture
def new_db(engine, tmp_path, request):
    """Make empty history databases of the test's engine: `new_db()` is a Database (a
    SQLite file in the test's folder, or a database of its own on the session's server)."""
    made = []

    def make() -> Database:
        if engine == "sqlite":
            db = Database(str(tmp_path / f"h{len(made) or ''}.db"))
        else:
            server = request.getfixturevalue("postgres_server")
            db = Database(server.create_database(database_name()))
        made.append(db)
        return db

    yield make
    for db in made:
        db.close()


@pytest.fixture
def db(new_db) -> Database:
    """An empty history database of the test's engine."""
    return new_db()


def read_rows(db: Database, table: str = "requests", order: str | None = None) -> list[dict]:
    """Every row of a table, as dicts: the requests in the order written."""
    order = order or db.dialect.rowid
    with db.connect() as conn:
        stream = conn.stream(f"SELECT * FROM {table} ORDER BY {order}", [], 100_000)
        names = next(stream)
        return [dict(zip(names, r, strict=True)) for batch in stream for r in batch]


async def wait_ok(url: str, timeout: float = 60) -> None:
    """Poll a URL of a process the test started until it answers 200, under a deadline."""
    import aiohttp
    async with asyncio.timeout(timeout):
        while True:
            try:
                async with aiohttp.ClientSession() as s, s.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)


async def until(condition, timeout: float = 30.0) -> None:
    """Poll `condition()` (a process's, a thread's state) until it holds, under a deadline."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def until_async(condition, timeout: float = 30.0) -> None:
    """Poll an async `condition()` until it holds, under a deadline."""
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.05)


async def start(*args, cwd=None, log=None, env=None):
    """Start a process of the test's; its standard error goes to the file `log`, if given
    (a pipe nobody reads would fill up and stall a chatty process)."""
    stderr = open(log, "wb") if log else asyncio.subprocess.PIPE
    try:
        return await asyncio.create_subprocess_exec(*args, cwd=cwd, env=env,
                                                    stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=stderr)
    finally:
        if log:
            stderr.close()


async def stop(proc) -> None:
    """Stop it as SIGTERM would, or kill it after 30 s."""
    if proc.returncode is None:
        proc.terminate()
        try:
            async with asyncio.timeout(30):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


class Records(list):
    """Every RequestRecord the gateway finished, with a way to wait for the next ones."""

    def __init__(self):
        super().__init__()
        self.changed = asyncio.Event()

    def __call__(self, record):
        self.append(record)
        self.changed.set()

    async def wait(self, n: int = 1, timeout: float = 10.0):
        async with asyncio.timeout(timeout):
            while len(self) < n:
                self.changed.clear()
                await self.changed.wait()
        return self[n - 1]


class Gateway:
    def __init__(self, listener, registry, records, replay):
        self.listener, self.registry, self.records, self.replay = (listener, registry, records,
                                                                   replay)
        self.url = f"http://127.0.0.1:{listener.port}"

    def value(self, name: str, **labels) -> float:
        """A metric's value for these labels, summed over the labels not named (project and
        tag labels the test does not care about)."""
        return self.total(name, **labels)

    def collect(self):
        """The registry's metrics, as a scrape reads them: held increments counted."""
        self.listener.proxy.metrics.holds.release(math.inf)
        return self.registry.collect()

    def by_category(self, name: str, **match) -> dict:
        """{(direction, token_type): value} of a metric, over the samples matching `match`."""
        out = {}
        for metric in self.collect():
            for s in metric.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in match.items()):
                    key = (s.labels["direction"], s.labels["token_type"])
                    out[key] = out.get(key, 0) + s.value
        return out

    def total(self, name: str, **match) -> float:
        """Sum every sample of a metric whose labels include `match`."""
        total = 0.0
        for metric in self.collect():
            for s in metric.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in match.items()):
                    total += s.value
        return total


@pytest.fixture
def replay():
    return Replay()


@pytest.fixture
async def gateway(aiohttp_server, replay):
    """Start the replay upstream and a gateway in front of it; config keys may be overridden."""
    upstream = await aiohttp_server(replay.app())
    base = str(upstream.make_url("")).rstrip("/")

    async def make(services=None, env=None, history=None, **config) -> Gateway:
        data = {"services": services or [
            {"name": "openai", "base_url": base, "provider": "openai"},
            {"name": "anthropic", "base_url": base, "provider": "anthropic"}], **config}
        env = env or {}
        cfg = parse_config(data, env)
        registry = CollectorRegistry()
        listener = create_proxy(cfg, registry=registry, history=history, env=env)
        records = Records()
        listener.proxy.sinks.append(records)
        await listener.start("127.0.0.1", 0)
        started.append(listener)
        return Gateway(listener, registry, records, replay)

    started = []
    make.upstream_url = base
    yield make
    for listener in started:
        await listener.cleanup()


@pytest.fixture
async def admin():
    """Start an admin listener (create_admin's arguments) and return a client session to it."""
    import aiohttp
    opened = []

    async def make(registry, **kwargs) -> aiohttp.ClientSession:
        listener = create_admin(registry, **kwargs)
        await listener.start("127.0.0.1", 0)
        session = aiohttp.ClientSession(base_url=f"http://127.0.0.1:{listener.port}")
        opened.append((listener, session))
        return session

    yield make
    for listener, session in opened:
        await session.close()
        await listener.cleanup()
