"""`serve --workers N`: shared ports, one consistent /metrics, nothing shared between gateways."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import re
import signal
import sqlite3
import struct
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import prometheus_client.metrics
import pytest
from conftest import stop, until, wait_ok
from prometheus_client import CollectorRegistry, values
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString
from upstream import json_file, sse_file

from exporter.devtools.bench import family
from exporter.telemetry.exemplars import (
    ExemplarFile,
    ExemplarHistogram,
    WorkersCollector,
    read_exemplars,
)
from exporter.telemetry.exposition import render, render_openmetrics
from exporter.telemetry.metrics import DURATION_BUCKETS, TTFT_BUCKETS

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
        # Whichever worker answers, /metrics holds every worker's requests (once a scrape
        # has read the new series at 0: metrics.py); gateway b none.
        await until_async(lambda: requests_total(admin), 60)
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
        await until_async(lambda: requests_total(admin), 70)  # the new worker's series too

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


def worker(pid: int, directory: Path, monkeypatch) -> ExemplarFile:
    """Act as worker `pid` from now on: series made next keep their counts in
    prometheus-client's histogram_<pid>.db, their exemplars in exemplars_<pid>.bin."""
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue(lambda: pid))
    return ExemplarFile(str(directory), pid)


def latency(exemplars: ExemplarFile):
    return ExemplarHistogram("latency_seconds", "Latency.", ["model"], registry=None,
                             buckets=(0.01, 0.1, 1), exemplars=exemplars).labels("m")


def scraped_exemplars(text: str) -> dict[tuple, tuple[str, float, float]]:
    """(sample name, labels) -> (request_id, value, timestamp) in an OpenMetrics scrape."""
    found = {}
    for metric in text_string_to_metric_families(text):  # raises on invalid OpenMetrics
        for s in metric.samples:
            if s.exemplar is not None:
                e = s.exemplar
                found[s.name, tuple(sorted(s.labels.items()))] = (
                    e.labels["request_id"], e.value, float(e.timestamp))
    return found


def test_each_bucket_shows_the_newest_exemplar_of_any_worker(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    clock = itertools.count(1764000001)  # a second per observation: their order is known
    monkeypatch.setattr(prometheus_client.metrics, "time",
                        SimpleNamespace(time=lambda: next(clock)))
    one = latency(worker(101, tmp_path, monkeypatch))
    two = latency(worker(102, tmp_path, monkeypatch))
    one.observe(0.05, {"request_id": "a"})  # at 1764000001 (each series' creation takes one)
    two.observe(0.07, {"request_id": "b"})  # the same bucket, later, in the other worker
    one.observe(0.5, {"request_id": "c"})
    two.observe(5, {"request_id": "d"})
    one.observe(0.005)  # no exemplar: its bucket has none
    registry = CollectorRegistry()
    WorkersCollector(registry, str(tmp_path))
    series = (("model", "m"),)
    assert scraped_exemplars(render_openmetrics(registry).decode()) == {
        ("latency_seconds_bucket", (("le", "0.1"), *series)): ("b", 0.07, 1764000004),
        ("latency_seconds_bucket", (("le", "1.0"), *series)): ("c", 0.5, 1764000005),
        ("latency_seconds_bucket", (("le", "+Inf"), *series)): ("d", 5.0, 1764000006)}
    # The counts are both workers' (prometheus-client's own merge); the text format has no
    # exemplars.
    assert registry.get_sample_value("latency_seconds_count", {"model": "m"}) == 5
    assert " # {" not in render(registry).decode()


def test_exemplar_file_grows_and_a_slot_being_written_is_left_out(tmp_path):
    file = ExemplarFile(str(tmp_path), 7)
    for n in range(400):  # past the first 64 KiB: the file is mapped again, larger
        file.slot("grown_bucket", {"n": str(n), "le": "1.0"}).write(
            Exemplar({"request_id": f"r{n}"}, 0.5, 1764000000.0 + n))
    assert os.path.getsize(file.path) > 1 << 16
    found = read_exemplars([file.path])
    assert {e.labels["request_id"] for e in found.values()} == {f"r{n}" for n in range(400)}
    # A writer stopped mid-write (sequence number odd): the slot waits for the next scrape.
    slot = file.slot("grown_bucket", {"n": "0", "le": "1.0"})
    slot.write(Exemplar({"request_id": "new"}, 0.25, 1764001000.0))
    file.m[slot.pos:slot.pos + 8] = struct.pack("<Q", slot.seq + 1)
    assert ("grown_bucket", (("le", "1.0"), ("n", "0"))) not in read_exemplars([file.path])
    # Settled, but its body seen half old, half new (stores seen out of order, as a weakly
    # ordered CPU may show them): its CRC-32 does not match, and it is left out too.
    file.m[slot.pos:slot.pos + 8] = struct.pack("<Q", slot.seq)
    assert ("grown_bucket", (("le", "1.0"), ("n", "0"))) in read_exemplars([file.path])
    file.m[slot.pos + 12:slot.pos + 20] = struct.pack("<d", 0.125)  # the value, torn
    assert ("grown_bucket", (("le", "1.0"), ("n", "0"))) not in read_exemplars([file.path])
    # Another process with this pid (a replacement worker) carries on with the same slots.
    again = ExemplarFile(str(tmp_path), 7)
    again.slot("grown_bucket", {"n": "0", "le": "1.0"}).write(
        Exemplar({"request_id": "later"}, 0.75, 1764002000.0))
    assert read_exemplars([again.path])[
        "grown_bucket", (("le", "1.0"), ("n", "0"))].labels == {"request_id": "later"}
    assert len(read_exemplars([again.path])) == 400


@pytest.mark.e2e
async def test_exemplars_of_both_workers_in_every_scrape(aiohttp_server, replay, tmp_path,
                                                         unused_tcp_port_factory):
    plain = json_file("openai_chat_cached.json")
    streamed = sse_file("openai_chat_stream.sse", "openai_chat_stream.no_usage.sse")

    async def chat(request, body):
        return await (streamed if json.loads(body).get("stream") else plain)(request, body)

    replay.routes[CHAT] = chat
    upstream = str((await aiohttp_server(replay.app())).make_url("")).rstrip("/")
    listen, admin = unused_tcp_port_factory(), unused_tcp_port_factory()
    proc = await start_gateway(upstream, listen, admin, tmp_path / "gw")
    log = tmp_path / "gw" / "log.txt"
    await until(lambda: "metrics files in" in log.read_text())
    shared = Path(re.search(r"metrics files in (\S+)", log.read_text()).group(1))
    workers = children(proc.pid)
    order: list[str] = []  # request ids, in the order they were sent and observed

    async def request(rid: str, stream: bool) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
            async with s.post(f"http://127.0.0.1:{listen}{CHAT}", headers={"X-Request-ID": rid},
                              json={"model": "gpt-4o", "stream": stream, "messages": []}) as r:
                assert r.status == 200
                await r.read()
        order.append(rid)

    def served_by(rid: str) -> int | None:
        """The worker holding `rid` as an exemplar in its own file: the one that served it."""
        for pid in workers:
            if rid in {e.labels["request_id"]
                       for e in read_exemplars([shared / f"exemplars_{pid}.bin"]).values()}:
                return pid
        return None

    async def send(rid: str, stream: bool) -> int:
        await request(rid, stream)  # on a new connection: the kernel picks the worker
        await until(lambda: served_by(rid) is not None)  # observed after the last byte
        return served_by(rid)

    try:
        # One request not streamed: its worker holds the only exemplars of that series.
        first = await send("plain-0", False)
        # Streams until the other worker serves one: it then holds the newest of the
        # streamed series, so each scrape must show exemplars written by both workers.
        async with asyncio.timeout(30):
            for n in itertools.count():
                if await send(f"stream-{n}", True) != first:
                    break
        valid = list(order)
        # Ids that cannot be exemplars: not ASCII, too long. Newest of all, they replace none.
        for rid in ("caf\u00e9-1", "x" * 65):
            await request(rid, True)
        await until_async(lambda: requests_total(admin), len(order))  # all observed
        await until(lambda: history_durations(tmp_path / "gw", valid) is not None)
        durations = history_durations(tmp_path / "gw", valid)
        # Worked out by hand from the history: the last valid id to fall in each bucket.
        expected = {}
        for rid in valid:
            duration_ms, ttft_ms = durations[rid]
            stream = "true" if ttft_ms is not None else "false"
            expected["llm_request_duration_seconds_bucket", stream,
                     bucket(duration_ms, DURATION_BUCKETS)] = (rid, duration_ms)
            if ttft_ms is not None:
                expected["llm_time_to_first_token_seconds_bucket", None,
                         bucket(ttft_ms, TTFT_BUCKETS)] = (rid, ttft_ms)
        for _ in range(6):  # each on a new connection: whichever worker answers
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) \
                    as s, s.get(f"http://127.0.0.1:{admin}/metrics",
                                headers={"Accept": "application/openmetrics-text"}) as r:
                found = scraped_exemplars(await r.text())
            assert {(name, dict(labels).get("stream"), dict(labels)["le"]): (rid, value * 1000)
                    for (name, labels), (rid, value, _) in found.items()} == expected
            _, text = await get(f"http://127.0.0.1:{admin}/metrics")
            assert "llm_request_duration_seconds_bucket{" in text and " # {" not in text
    finally:
        await stop(proc)


def history_durations(cwd: Path, ids: list[str]) -> dict[str, tuple] | None:
    """request id -> (duration_ms, ttft_ms) from a gateway's history, once it has them all."""
    try:
        with sqlite3.connect(cwd / "llm-usage-history.db") as db:
            rows = db.execute("SELECT request_id, duration_ms, ttft_ms FROM requests WHERE "
                              f"request_id IN ({','.join('?' * len(ids))})", ids).fetchall()
    except sqlite3.Error:  # not made yet
        return None
    return {rid: (duration, ttft) for rid, duration, ttft in rows} if len(rows) == len(ids) \
        else None


async def until_async(value, expected, timeout: float = 30.0) -> None:
    """Poll `await value()` until it equals `expected`, under a deadline."""
    async with asyncio.timeout(timeout):
        while await value() != expected:
            await asyncio.sleep(0.02)


def bucket(ms: float, bounds) -> str:
    """The `le` of the bucket a value in milliseconds falls in."""
    return floatToGoString(next((b for b in bounds if ms / 1000 <= b), math.inf))
