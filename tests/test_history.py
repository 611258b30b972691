"""The request history: exact rows, nothing lost on close, never in the proxy's way."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from conftest import need_binary, read_rows
from prometheus_client import CollectorRegistry
from upstream import json_file, sse_file, status

from exporter.record import RequestRecord, Usage
from exporter.store.database import Database
from exporter.store.upkeep import Upkeep
from exporter.store.writer import History
from exporter.telemetry.background import HistoryMetrics

CHAT = "/v1/chat/completions"
ROOT = Path(__file__).parent.parent
KEY = "sk-history-test-key"
UTC = ZoneInfo("UTC")


def history_at(db, registry=None, **kw):
    h = History(db, HistoryMetrics(registry or CollectorRegistry()), **kw)
    h.start()
    return h


async def test_rows_of_mixed_requests_are_exact(gateway, replay, db):
    history = history_at(db)
    replay.routes[CHAT] = sse_file("openai_chat_stream.sse", "openai_chat_stream.no_usage.sse")
    replay.routes["/v1/messages"] = json_file("anthropic_message.json")
    replay.routes["/v1/embeddings"] = status(429, {"error": {"message": "slow down"}})
    gw = await gateway(history=history)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as s:
        await (await s.post(gw.url + CHAT, json={"model": "gpt-4o-mini", "stream": True},
                            headers={"X-Request-ID": "r-stream"})).read()
        await (await s.post(gw.url + "/anthropic/v1/messages", json={"model": "c"},
                            headers={"X-Request-ID": "r-cached"})).read()
        await (await s.post(gw.url + "/v1/embeddings", json={"model": "e", "input": "x"},
                            headers={"X-Request-ID": "r-failed"})).read()
    await gw.records.wait(3)
    await asyncio.to_thread(history.close)
    got = {r["request_id"]: r for r in read_rows(db)}
    assert set(got) == {"r-stream", "r-cached", "r-failed"}
    s, c, f = got["r-stream"], got["r-cached"], got["r-failed"]
    assert (s["model"], s["stream"], s["status"], s["error_type"], s["operation"]) == (
        "gpt-4o-mini-2024-07-18", 1, 200, "none", "chat")
    assert (s["input_text"], s["input_cache_read"], s["output_text"]) == (512, 1536, 3)
    assert s["fee_usd"] == 0.0001938  # (512 x 0.15 + 1536 x 0.075 + 3 x 0.60) / 1M, exact
    assert s["ttft_ms"] > 0 and s["duration_ms"] >= s["ttft_ms"]
    assert s["api_key"].startswith("key-") and KEY not in str(got)
    assert (c["input_text"], c["input_cache_read"], c["input_cache_write_5m"],
            c["input_cache_write_1h"], c["output_text"]) == (50, 10000, 2000, 500, 320)
    assert c["fee_usd"] == 0.01845 and c["ttft_ms"] is None and c["stream"] == 0
    assert (f["status"], f["error_type"], f["fee_usd"], f["output_text"]) == (
        429, "rate_limited", 0.0, 0)
    assert f["error_message"] == "slow down"  # the upstream's own reason
    assert s["error_message"] is None


async def test_estimated_row_of_a_client_that_went_away(gateway, replay, db):
    history = history_at(db)
    replay.routes[CHAT] = sse_file("openai_chat_stream.sse", "openai_chat_stream.no_usage.sse",
                                   gate=asyncio.Event(), after=2)
    gw = await gateway(history=history)
    async with aiohttp.ClientSession() as s:
        r = await s.post(gw.url + CHAT, json={"model": "m", "stream": True, "messages": [
            {"role": "user", "content": "Say hello"}]})
        await r.content.readuntil(b"Hello")
        r.close()
    await gw.records.wait(1)
    await asyncio.to_thread(history.close)
    [row] = read_rows(db)
    # "Say hello": 9 chars -> 3 tokens; "Hello": 5 chars -> 2 tokens, both estimated.
    assert (row["status"], row["error_type"]) == (499, "client_disconnect")
    assert (row["input_text"], row["estimated_input"], row["output_text"],
            row["estimated_output"]) == (3, 3, 2, 2)


def record(i: int, started: float = 1_700_000_000.0) -> RequestRecord:
    return RequestRecord(f"id-{i}", started, "s", "openai", "key-1", "chat", model="m",
                         code=200, usage=Usage(input_text=i))


def test_close_writes_everything_queued(db):
    history = history_at(db, batch_size=64)
    for i in range(5000):
        history.put(record(i))
    history.close()
    got = read_rows(db)
    assert len(got) == 5000 and sum(r["input_text"] for r in got) == sum(range(5000))


def test_full_queue_drops_and_counts(db):
    registry = CollectorRegistry()
    history = History(db, HistoryMetrics(registry), queue_size=2)
    for i in range(5):  # the writer is not started: nothing drains the queue
        history.put(record(i))
    assert registry.get_sample_value("llm_history_dropped_total") == 3
    assert registry.get_sample_value("llm_history_queue_size") == 2
    history.close()  # a full queue and no writer: no wait


def test_a_record_after_the_writer_stopped_is_counted_as_dropped(db):
    registry = CollectorRegistry()
    history = history_at(db, registry)
    history.put(record(1))
    history.close()
    history.put(record(2))  # a handler that finished after the shutdown's grace
    assert registry.get_sample_value("llm_history_dropped_total") == 1
    assert [r["request_id"] for r in read_rows(db)] == ["id-1"]


def test_retention_deletes_old_rows(db):
    now = 1_800_000_000.0
    history = history_at(db)
    history.put(record(1, started=now - 31 * 86400))
    history.put(record(2, started=now - 29 * 86400))
    history.close()
    Upkeep(db, 30, UTC, clock=lambda: now).once()
    assert [r["request_id"] for r in read_rows(db)] == ["id-2"]
    with db.connect() as conn:  # the rows' count follows, without a count(*)
        assert conn.one("SELECT value FROM counters WHERE name = 'requests'")[0] == 1


def test_retention_on_postgresql_drops_whole_days(postgres_server):
    """A day's partition goes once the whole day is past the retention: no DELETE, so no
    bloat. A row of the day the cutoff falls in stays until that day is wholly past."""
    db = Database(postgres_server.create_database("retention"))
    day = 86400
    now = 20_000 * day + 6 * 3600  # 06:00 UTC
    history = history_at(db)
    for i, started in enumerate((now - 3 * day, now - 2 * day - 3600, now - day)):
        history.put(record(i, started=started))
    history.close()
    Upkeep(db, 2, UTC, clock=lambda: now).once()
    # The cutoff is 06:00 two days ago: the day before it goes whole; the row at 05:00 of
    # the cutoff's own day stays, as does yesterday's. Today's table and the next two
    # days' are made before their rows come; no detached table is left.
    assert [r["request_id"] for r in read_rows(db)] == ["id-1", "id-2"]
    with db.connect() as conn:
        days = sorted(name for (name,) in conn.all(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'requests'::regclass"))
        assert days == [f"requests_d{d}" for d in (19998, 19999, 20000, 20001, 20002)]
        assert conn.one("SELECT count(*) FROM pg_class WHERE relname ~ '^requests_d'"
                        " AND relkind = 'r'")[0] == 5
        assert conn.one("SELECT value FROM counters WHERE name = 'requests'")[0] == 2


@pytest.fixture(params=["missing directory", "read-only file"])
def unwritable(request, tmp_path):
    """A database the writer cannot write: as root, only an immutable file refuses."""
    if request.param == "missing directory":
        yield Database(str(tmp_path / "missing-dir" / "h.db"))
        return
    path = tmp_path / "h.db"
    history_at(Database(str(path))).close()  # a real database, migrated, then immutable
    chattr = need_binary("chattr")
    if subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("this filesystem cannot make a file immutable")
    try:
        yield Database(str(path))
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


async def test_unwritable_database_never_stops_the_proxy(gateway, replay, unwritable, caplog):
    """Rows wait for a database that cannot be written; at shutdown, after a grace, the
    ones it never took are counted as dropped: one error for the outage, one for the loss."""
    registry = CollectorRegistry()
    history = history_at(unwritable, registry, stop_grace=0.5)
    replay.routes[CHAT] = json_file("openai_chat_cached.json")
    gw = await gateway(history=history)
    async with aiohttp.ClientSession() as s:
        for _ in range(3):
            async with s.post(gw.url + CHAT, json={"model": "gpt-4o"}) as r:
                assert r.status == 200
    await gw.records.wait(3)
    await asyncio.to_thread(history.close)
    assert registry.get_sample_value("llm_history_write_errors_total") >= 1
    assert registry.get_sample_value("llm_history_dropped_total") == 3
    assert registry.get_sample_value("llm_history_queue_size") == 0
    errors = [r.message for r in caplog.records if r.levelno == logging.ERROR
              and "history" in r.message]
    assert len(errors) == 2, errors
    assert "cannot write to" in errors[0]
    assert "3 rows could not be written" in errors[1]


async def test_sigterm_with_requests_in_flight_loses_no_row(aiohttp_server, replay, tmp_path,
                                                            unused_tcp_port_factory, db):
    """Five streams are mid-flight when the gateway gets SIGTERM: all five finish, and all
    five rows are in the database when the process exits."""
    gate = asyncio.Event()
    replay.routes[CHAT] = sse_file("openai_chat_stream.sse", "openai_chat_stream.no_usage.sse",
                                   gate=gate, after=2)
    upstream = await aiohttp_server(replay.app())
    listen, admin = unused_tcp_port_factory(), unused_tcp_port_factory()
    config = tmp_path / "config.yaml"
    config.write_text(f"""
listen: 127.0.0.1:{listen}
admin_listen: 127.0.0.1:{admin}
history: {{{'url' if db.postgresql else 'path'}: "{db.target}"}}
services: [{{name: openai, base_url: "{str(upstream.make_url('')).rstrip('/')}"}}]
""")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "serve", "--config", str(config), cwd=ROOT,
        stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(30):
            while b"proxy on" not in await proc.stderr.readline():
                pass
            async with aiohttp.ClientSession() as s:
                responses = [await s.post(f"http://127.0.0.1:{listen}{CHAT}", json={
                    "model": "gpt-4o-mini", "stream": True}) for _ in range(5)]
                for r in responses:  # every stream is under way
                    await r.content.readuntil(b"Hello")
                proc.send_signal(signal.SIGTERM)
                while b"shutting down" not in await proc.stderr.readline():
                    pass
                gate.set()  # only now can the streams end
                bodies = [await r.read() for r in responses]
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
    assert all(b.endswith(b"data: [DONE]\n\n") for b in bodies)
    got = read_rows(db)
    assert [(r["status"], r["error_type"], r["output_text"]) for r in got] == [
        (200, "none", 3)] * 5


def test_partitions_come_and_go_without_blocking_the_table(postgres_server):
    """An export keeps its cursor open: a new day's partition is made, and rows written,
    without waiting for it (a wait would end in lock_timeout's error); the retention's
    detaching waits for it alone, while rows are written and read."""
    import threading
    import uuid

    from exporter.store.batches import write_batch
    from exporter.store.rows import row
    db = Database(postgres_server.create_database("partitions"))
    db.migrate()
    day = 86400
    now = 20_100 * day + 3600
    writer = db.dedicated()

    def write(i: int, started: float) -> None:
        write_batch(writer, uuid.uuid4().hex, [row(record(i, started=started))], [], UTC, now)

    write(1, now - 40 * day)  # a day past a 30-day retention
    write(2, now)
    with db.connect() as reader:
        stream = reader.stream("SELECT * FROM requests", [], 1)
        next(stream), next(stream)  # the export is under way: its cursor holds the table
        write(3, now + day)  # tomorrow: its partition is made and attached meanwhile
        upkeep = threading.Thread(target=Upkeep(db, 30, UTC, clock=lambda: now).once)
        upkeep.start()  # detaching the old day waits for the export...
        write(4, now + 60)  # ...and blocks nobody meanwhile
        with db.connect() as other:
            assert other.one("SELECT count(*) FROM requests")[0] >= 3
        assert upkeep.is_alive()
        stream.close()  # the export ends
    upkeep.join(30)
    assert not upkeep.is_alive()
    writer.close()
    assert sorted(r["request_id"] for r in read_rows(db)) == ["id-2", "id-3", "id-4"]
