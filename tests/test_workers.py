"""`serve --workers N`: shared ports, one consistent /metrics, nothing shared between gateways."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import sys
import time
from pathlib import Path

import aiohttp
from conftest import until, wait_ok
from upstream import json_file

from exporter.devtools.bench import family

ROOT = Path(__file__).parent.parent
CHAT = "/v1/chat/completions"


def children(pid: int) -> set[int]:
    """The worker processes of a supervisor."""
    return set(family(pid)) - {pid}


async def get(url: str) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        async with s.get(url) as r:
            return r.status, await r.text()


async def requests_total(admin: int) -> float:
    _, text = await get(f"http://127.0.0.1:{admin}/metrics")
    return sum(float(v) for v in re.findall(r"(?m)^llm_requests_total\{[^}]*\} (\S+)$", text))


async def send(listen: int, n: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        for _ in range(n):
            async with s.post(f"http://127.0.0.1:{listen}{CHAT}", json={"model": "gpt-4o"}) as r:
                assert r.status == 200
                await r.read()


async def start_gateway(upstream: str, listen: int, admin: int, cwd: Path):
    cwd.mkdir()
    log = open(cwd / "log.txt", "wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "serve", "--upstream", upstream, "--provider",
        "openai", "--listen", f"127.0.0.1:{listen}", "--admin-listen", f"127.0.0.1:{admin}",
        "--workers", "2", cwd=cwd, stderr=log, env={**os.environ, "PYTHONPATH": str(ROOT)})
    await until(lambda: len(children(proc.pid)) == 2)
    await wait_ok(f"http://127.0.0.1:{admin}/healthz", timeout=30)
    return proc


async def test_two_workers_one_consistent_metrics(aiohttp_server, replay, tmp_path,
                                                  unused_tcp_port_factory):
    replay.routes[CHAT] = json_file("openai_chat_cached.json")
    upstream = str((await aiohttp_server(replay.app())).make_url("")).rstrip("/")
    listen, admin, listen_b, admin_b = (unused_tcp_port_factory() for _ in range(4))
    a = await start_gateway(upstream, listen, admin, tmp_path / "a")
    b = await start_gateway(upstream, listen_b, admin_b, tmp_path / "b")
    try:
        workers = children(a.pid)
        pids = set()
        async with asyncio.timeout(30):  # a worker may still be starting: wait for both
            while pids != workers:  # each probe on a new connection: the kernel spreads them
                pids.add(int(re.search(r'"pid": (\d+)', (await get(
                    f"http://127.0.0.1:{admin}/healthz"))[1]).group(1)))
                assert pids <= workers  # only this gateway's workers answer its port

        await send(listen, 60)
        # Whichever worker answers, /metrics holds every worker's requests; gateway b none.
        assert [await requests_total(admin) for _ in range(10)] == [60] * 10
        assert await requests_total(admin_b) == 0

        # A killed worker loses the rows it still queues (up to the writer's 0.1 s linger):
        # kill one only once the first 60 rows are in the database.
        def rows() -> int:
            with sqlite3.connect(tmp_path / "a" / "llm-usage-history.db") as db:
                return db.execute("SELECT count(*) FROM requests").fetchone()[0]
        await until(lambda: rows() == 60)
        victim = next(iter(workers))
        os.kill(victim, signal.SIGKILL)  # a worker dies: it is replaced, its counts stay
        await until(lambda: len(children(a.pid)) == 2 and victim not in children(a.pid))
        assert [await requests_total(admin) for _ in range(10)] == [60] * 10
        await send(listen, 10)
        assert await requests_total(admin) == 70

        for proc in (a, b):
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            assert await a.wait() == 0 and await b.wait() == 0
    finally:
        for proc in (a, b):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    with sqlite3.connect(tmp_path / "a" / "llm-usage-history.db") as db:  # every worker's rows
        assert db.execute("SELECT count(*) FROM requests").fetchone() == (70,)
    shared = re.search(r"metrics files in (\S+)", (tmp_path / "a" / "log.txt").read_text())
    assert shared and not Path(shared.group(1)).exists()  # removed at exit


async def test_one_worker_probes_the_deployments_and_its_replacement_takes_over(
        aiohttp_server, replay, tmp_path, unused_tcp_port_factory):
    from aiohttp import web

    async def health(request, body):
        return web.Response(text="ok")

    replay.routes["/health"] = health
    upstream = str((await aiohttp_server(replay.app())).make_url("")).rstrip("/")
    listen, admin = unused_tcp_port_factory(), unused_tcp_port_factory()
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({
        "services": [], "listen": f"127.0.0.1:{listen}", "admin_listen": f"127.0.0.1:{admin}",
        "workers": 2, "deployments": [{"name": "llama", "model": "m", "base_url": upstream,
                                       "probe_interval_seconds": 0.05}]}))
    log = open(tmp_path / "log.txt", "wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "serve", "--config", str(config), cwd=tmp_path,
        stderr=log, env={**os.environ, "PYTHONPATH": str(ROOT)})

    def runs() -> list[tuple[float, float]]:
        try:
            with sqlite3.connect(tmp_path / "llm-usage-history.db") as db:
                return db.execute("SELECT started_at, ended_at FROM deployment_uptime "
                                  "ORDER BY started_at").fetchall()
        except sqlite3.Error:  # not created yet
            return []

    try:
        await until(lambda: len(children(proc.pid)) == 2)
        await wait_ok(f"http://127.0.0.1:{admin}/healthz", timeout=30)
        workers = children(proc.pid)
        pids = set()
        async with asyncio.timeout(30):  # both workers serve: each has started, prober or not
            while pids != workers:
                pids.add(int(re.search(r'"pid": (\d+)', (await get(
                    f"http://127.0.0.1:{admin}/healthz"))[1]).group(1)))
        ready = time.time()
        # Twenty probe intervals later, one run of uptime: a second prober would have begun
        # a second one.
        await until(lambda: runs() and runs()[-1][1] > ready + 1)
        assert len(runs()) == 1
        with sqlite3.connect(tmp_path / "llm-usage-history.db") as db:  # the lease's holder
            [(holder,)] = db.execute("SELECT holder FROM leases WHERE name = 'deployments'")
        prober = int(holder.split(":")[1])
        assert prober in workers
        # Killed outright, it cannot give its lease back: another worker takes it once it
        # expires (5 s), and a new run begins.
        os.kill(prober, signal.SIGKILL)
        await until(lambda: len(runs()) == 2 and runs()[-1][1] > runs()[-1][0])
        killed = time.time()
        await until(lambda: runs()[-1][1] > killed + 1)
        assert len(runs()) == 2
    finally:
        proc.terminate()
        await proc.wait()
        log.close()
