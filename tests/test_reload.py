"""SIGHUP: prices, keys and budgets read again by every worker; a bad file changes nothing.
And the log: one JSON object per line, with the request id, never a key."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
import yaml
from conftest import until, until_async
from test_workers import children
from upstream import json_file

from exporter.telemetry.logs import JsonFormatter, TextFormatter, log_request

ROOT = Path(__file__).parent.parent
CHAT = "/v1/chat/completions"
ALICE, BOB = "sk-alice-reload-0123456789", "sk-bob-reload-0123456789"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def log_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


async def ask(listen: int, key: str) -> int:
    """Send one chat request on a new connection (the kernel spreads them over workers)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        async with s.post(f"http://127.0.0.1:{listen}{CHAT}", json={"model": "gpt-4o"},
                          headers={"Authorization": f"Bearer {key}"}) as r:
            await r.read()
            return r.status


async def metrics(admin: int) -> str:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        async with s.get(f"http://127.0.0.1:{admin}/metrics") as r:
            return await r.text()


async def cost_is(admin: int, expected: float) -> bool:
    """Whether /metrics shows this cost: a new series' counts come a scrape after it."""
    text = await metrics(admin)
    found = sum(float(v) for v in re.findall(r"(?m)^llm_cost_usd_total\{[^}]*\} (\S+)$",
                                             text))
    return round(found, 9) == round(expected, 9)


async def test_sighup_reloads_every_worker_and_a_bad_file_keeps_the_running_config(
        aiohttp_server, replay, tmp_path, unused_tcp_port_factory):
    replay.routes[CHAT] = json_file("openai_chat_cached.json")
    upstream = str((await aiohttp_server(replay.app())).make_url("")).rstrip("/")
    listen, admin = unused_tcp_port_factory(), unused_tcp_port_factory()
    config = {"services": [{"name": "openai", "base_url": upstream}],
              "listen": f"127.0.0.1:{listen}", "admin_listen": f"127.0.0.1:{admin}",
              "workers": 2, "log_format": "json", "require_api_key": True,
              "api_keys": [{"name": "alice", "sha256": sha(ALICE)}],
              "pricing": [{"model": "gpt-4o*", "input": 1, "output": 1}]}
    path, log = tmp_path / "config.yaml", tmp_path / "log.txt"
    path.write_text(yaml.safe_dump(config))
    with open(log, "wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "exporter", "serve", "--config", str(path), cwd=tmp_path,
            stderr=stderr, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        await until(lambda: len(children(proc.pid)) == 2
                    and sum("proxy on" in line["message"] for line in log_lines(log)) == 2)
        assert await ask(listen, ALICE) == 200
        assert await ask(listen, BOB) == 401
        # 1,117 prompt tokens (1,024 cached, at the input price) and 46 output at $1/M.
        await until_async(lambda: cost_is(admin, 0.001163))

        config["api_keys"].append({"name": "bob", "sha256": sha(BOB)})
        config["pricing"] = [{"model": "gpt-4o*", "input": 2, "output": 4}]
        config["limits"] = {"max_models": 10}
        config["budgets"] = [{"api_key": "bob", "daily": 5}]
        path.write_text(yaml.safe_dump(config))
        os.kill(proc.pid, signal.SIGHUP)
        await until(lambda: sum(line["message"] == "reload: prices, API keys and budgets "
                                "applied" for line in log_lines(log)) == 2)
        assert sum(line["message"] == "reload: limits changed: applied at the next restart"
                   for line in log_lines(log)) == 2
        for _ in range(6):  # whichever worker answers
            assert await ask(listen, BOB) == 200
        for _ in range(4):  # whichever worker answers the scrape
            assert 'llm_budget_usd{api_key="bob",period="day"} 5.0' in await metrics(admin)
        # Six more at 1,117 x $2/M + 46 x $4/M = $0.002418 each.
        await until_async(lambda: cost_is(admin, 0.001163 + 6 * 0.002418))

        path.write_text("services: [\n")  # a bad file: refused, the running config stays
        os.kill(proc.pid, signal.SIGHUP)
        await until(lambda: sum(line["message"] == "reload: refused; the running "
                                "configuration stays" for line in log_lines(log)) == 2)
        assert any(line["level"] == "error" and "not valid YAML" in line["message"]
                   for line in log_lines(log))
        for _ in range(4):
            assert await ask(listen, BOB) == 200
        assert len(children(proc.pid)) == 2
    finally:
        proc.terminate()
        await proc.wait()
    lines = log_lines(log)  # every line of every process, JSON
    shapes = {("level", "logger", "message", "time"),
              ("level", "logger", "message", "request_id", "time")}
    assert [line for line in lines if tuple(sorted(line)) not in shapes] == []
    assert ALICE not in log.read_text() and BOB not in log.read_text()


def logger(formatter) -> tuple[logging.Logger, io.StringIO]:
    """A logger of the test's own, writing through `formatter` (the root's is pytest's)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    log = logging.Logger("llm_usage_exporter")
    log.addHandler(handler)
    return log, out


def test_a_json_log_event_is_one_line_with_its_request_id_and_no_key():
    log, out = logger(JsonFormatter())
    try:
        raise ValueError("upstream said: invalid key sk-proj-abcdefghijklmnop\nsecond line")
    except ValueError:  # a request id that was no UTF-8 (read with surrogateescape)
        log_request(log, logging.ERROR, "r-\udcff-1", "failed inside the gateway",
                    exc_info=True)
    text = out.getvalue()
    line = json.loads(text)
    assert text.count("\n") == 1
    assert (line["level"], line["logger"], line["request_id"], line["message"]) == (
        "error", "llm_usage_exporter", "r-\ufffd-1",
        "request r-\ufffd-1 failed inside the gateway")
    assert "Traceback" in line["exception"] and "sk-proj-***" in line["exception"]
    assert "abcdefghijklmnop" not in text


def test_a_text_log_event_is_one_line_too():
    log, out = logger(TextFormatter())
    try:
        raise ValueError("Bearer abcdefghijklmnop\nmore")
    except ValueError:
        log.exception("a failure")
    text = out.getvalue()
    assert text.count("\n") == 1 and "\\nTraceback" in text and "Bearer ***" in text
    assert " ERROR llm_usage_exporter: a failure\\n" in text
