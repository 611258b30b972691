"""A fleet: two real `serve` processes on one real PostgreSQL history.

Either replica answers for both; an enforced budget holds across them; one of them probes
the deployments, and the other takes over when it stops; SIGTERM of one in the middle of a
burst loses no row of what it answered.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
import time
from decimal import Decimal as D
from pathlib import Path

import aiohttp
import pytest
from admin_apis import FakeAdmin
from conftest import database_name, read_rows, start, stop, until, until_async, wait_ok
from prometheus_client.parser import text_string_to_metric_families
from upstream import json_file

from exporter.devtools.postgres import PASSWORD, PASSWORD_ROLE
from exporter.store.database import Database
from exporter.store.reconcile import fetch_states

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).parent.parent
CHAT = "/v1/chat/completions"
TEAM_KEY = "sk-fleet-team-key"
OPENAI_ADMIN = "sk-admin-fleet-0123456789"
# openai_chat_cached.json at gpt-4o's prices ($2.50 input, $1.25 cache read, $10 output per
# million): 93 uncached and 1,024 cached prompt tokens, 46 completion tokens.
FEE = (93 * D("2.50") + 1024 * D("1.25") + 46 * D("10")) / 1_000_000
assert FEE == D("0.0019725")


class Replica:
    def __init__(self, proc, port: int, admin: int):
        self.proc, self.port, self.admin = proc, port, admin
        self.url, self.api = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}"

    async def ask(self, session, request_id: str, **headers: str) -> int:
        async with session.post(self.url + CHAT, json={"model": "gpt-4o", "messages": []},
                                headers={"Authorization": f"Bearer {TEAM_KEY}",
                                         "X-Request-ID": request_id, **headers}) as r:
            await r.read()
            return r.status

    async def get_json(self, path: str, **params) -> dict:
        async with aiohttp.ClientSession() as s, s.get(self.api + path, params=params) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def metrics(self) -> dict:
        """{(name, sorted labels): value} of its /metrics."""
        async with aiohttp.ClientSession() as s, s.get(self.api + "/metrics") as r:
            text = await r.text()
        return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples}


@pytest.fixture
async def fleet(postgres_server, aiohttp_server, replay, tmp_path, unused_tcp_port_factory):
    """Start replicas of one config (budget, deployment) on a database of their own, as a
    role that must give its password (read from history.password_env)."""
    url = postgres_server.create_database(database_name("fleet"), owner=PASSWORD_ROLE)
    replay.routes[CHAT] = json_file("openai_chat_cached.json")

    async def health(request, body):
        from aiohttp import web
        return web.Response(text="ok")

    replay.routes["/health"] = health
    upstream = str((await aiohttp_server(replay.app())).make_url("")).rstrip("/")
    env = {**os.environ, "FLEET_DB_PASSWORD": PASSWORD, "TEAM_KEY": TEAM_KEY,
           "OPENAI_ADMIN_KEY": OPENAI_ADMIN}
    started = []

    async def replica(budget: float = 1000.0, others=(), **more) -> Replica:
        port, admin = unused_tcp_port_factory(), unused_tcp_port_factory()
        config = tmp_path / f"replica{len(started)}.yaml"
        config.write_text(json.dumps({
            "listen": f"127.0.0.1:{port}", "admin_listen": f"127.0.0.1:{admin}",
            "history": {"url": url, "password_env": "FLEET_DB_PASSWORD"},
            "services": [{"name": "openai", "base_url": upstream, "provider": "openai"}],
            "api_keys": [{"name": "team", "key_env": "TEAM_KEY"}],
            "budgets": [{"api_key": "team", "daily": budget, "enforce": True}, *others],
            "deployments": [{"name": "llama", "model": "llama-3.1-8b", "base_url": upstream,
                             "probe_interval_seconds": 0.1}], **more}))
        log = tmp_path / f"replica{len(started)}.log"
        proc = await start(sys.executable, "-m", "exporter", "serve", "--config", str(config),
                           cwd=ROOT, log=log, env=env)
        r = Replica(proc, port, admin)
        r.log = log
        started.append(r)
        await wait_ok(r.api + "/healthz")
        return r

    replica.db = Database(url.replace(f"{PASSWORD_ROLE}@", "postgres@"))
    yield replica
    for r in started:
        await stop(r.proc)
    replica.db.close()


async def test_either_replica_answers_for_both(fleet):
    a, b = await fleet(), await fleet()
    async with aiohttp.ClientSession() as s:
        statuses = [await r.ask(s, f"{name}-{i}") for i in range(5)
                    for name, r in (("a", a), ("b", b))]
    assert statuses == [200] * 10
    day = time.time() - 3600, time.time() + 3600
    window = {"from": str(day[0]), "to": str(day[1])}
    for r in (a, b):  # each counts all ten, to the request and the fee
        async def counted(r=r) -> bool:
            [row] = (await r.get_json("/api/usage", **window))["data"]
            return row["requests"] == 10
        await until_async(counted)
        [row] = (await r.get_json("/api/usage", **window))["data"]
        assert row["fee_usd"] == round(float(10 * FEE), 10)
    # A request sent through one is found through the other.
    [found] = (await b.get_json("/api/requests", request_id="a-3", **window))["data"]
    assert (found["request_id"], found["api_key"], found["status"]) == ("a-3", "team", 200)
    # The spend gauge is the fleet's, the same from each replica.
    spend = [(await r.metrics())[("llm_spend_usd", (("api_key", "team"), ("period", "day")))]
             for r in (a, b)]
    assert spend == [float(10 * FEE)] * 2


async def test_an_enforced_budget_holds_across_replicas_within_a_second(fleet):
    """Requests of one key through both replicas in turn: once the fleet's spend reaches
    the budget, each replica refuses within a second (its writer reads the others' spend
    every half second), and refuses from then on."""
    budget = float(D("5.5") * FEE)  # spent at the sixth request
    a, b = await fleet(budget), await fleet(budget)
    spent_at = None
    accepted = 0
    refused: dict[str, float] = {}
    async with aiohttp.ClientSession() as s:
        async with asyncio.timeout(30):
            i = 0
            while len(refused) < 2:
                name, r = (("a", a), ("b", b))[i % 2]
                status = await r.ask(s, f"budget-{i}")
                now = time.monotonic()
                if status == 200:
                    accepted += 1
                    assert name not in refused, "a replica let a request through again"
                    if accepted == 6:
                        spent_at = now
                else:
                    assert status == 429
                    refused.setdefault(name, now)
                i += 1
                await asyncio.sleep(0.02)
    assert spent_at is not None
    for name, at in refused.items():
        assert at - spent_at <= 1.0, (name, at - spent_at, accepted)


async def test_project_and_end_user_budgets_hold_across_replicas(fleet):
    """A project's budget is read like a key's, every half second; an end user's after each
    of their rows is written. Either way each replica refuses within a second of the
    request that spent it, and from then on."""
    budgets = [{"project": "growth", "daily": float(D("5.5") * FEE), "enforce": True},
               {"user": "*", "daily": float(D("2.5") * FEE), "enforce": True}]
    a, b = await fleet(others=budgets), await fleet(others=budgets)
    for headers, spent_by in (({"X-LLM-Project": "growth"}, 6), ({"X-LLM-User": "ann"}, 3)):
        accepted, refused, spent_at = 0, {}, None
        async with aiohttp.ClientSession() as s, asyncio.timeout(30):
            for i in itertools.count():
                if len(refused) == 2:
                    break
                name, r = (("a", a), ("b", b))[i % 2]
                status = await r.ask(s, f"{headers}-{i}", **headers)
                if status == 200:
                    accepted += 1
                    assert name not in refused, "a replica let a request through again"
                    spent_at = spent_at or (time.monotonic() if accepted == spent_by else None)
                else:
                    assert status == 429
                    refused.setdefault(name, time.monotonic())
                await asyncio.sleep(0.02)
        assert spent_at is not None and max(refused.values()) - spent_at <= 1.0, headers
    # Another user is not held by ann's budget.
    async with aiohttp.ClientSession() as s:
        assert await a.ask(s, "bo-1", **{"X-LLM-User": "bo"}) == 200


async def test_one_replica_probes_and_the_other_takes_over(fleet):
    a, b = await fleet(), await fleet()
    db = fleet.db

    def holder() -> int | None:
        with db.connect() as conn:
            found = conn.one("SELECT holder FROM leases WHERE name = 'deployments'")
        return int(found[0].split(":")[1]) if found else None

    await until(lambda: holder() in (a.proc.pid, b.proc.pid))
    await until(lambda: len(read_rows(db, "deployment_uptime", "started_at")) == 1)
    prober, other = (a, b) if holder() == a.proc.pid else (b, a)
    up = ("llm_deployment_up", (("deployment", "llama"),))
    assert (await prober.metrics()).get(up) == 1.0
    assert up not in await other.metrics()  # it exports what only the prober knows
    # Stopped, the prober gives its lease back: the other takes over within a second or
    # two, and starts a run of its own.
    await stop(prober.proc)
    await until(lambda: holder() == other.proc.pid, timeout=10)
    await until(lambda: len(read_rows(db, "deployment_uptime", "started_at")) == 2)

    async def exported() -> bool:
        return (await other.metrics()).get(up) == 1.0
    await until_async(exported)


async def test_one_replica_fetches_the_bills_and_a_lease_that_moves_does_not_again(
        fleet, aiohttp_server):
    """The reconciliation's job on one replica: it fetches the two days due; stopped, its
    lease moves, and the other replica, reading in the history when the fleet last
    fetched, says when it will next (a day later) and does not fetch now."""
    openai_admin = FakeAdmin("openai", OPENAI_ADMIN)
    url = str((await aiohttp_server(openai_admin.app())).make_url("")).rstrip("/")
    account = [{"name": "openai-main", "provider": "openai", "admin_key_env":
                "OPENAI_ADMIN_KEY", "base_url": url, "services": ["openai"],
                "backfill_days": 2, "refetch_days": 1}]
    a, b = await fleet(reconcile=account), await fleet(reconcile=account)
    await until(lambda: len(fetch_states(fleet.db, "openai-main")) == 2)
    asked = len(openai_admin.asked("completions"))
    assert asked == 1 and len(openai_admin.asked("costs")) == 1  # both days in one ask

    def holder() -> int | None:
        with fleet.db.connect() as conn:
            found = conn.one("SELECT holder FROM leases WHERE name = 'reconcile'")
        return int(found[0].split(":")[1]) if found else None

    fetcher, other = (a, b) if holder() == a.proc.pid else (b, a)
    await stop(fetcher.proc)
    await until(lambda: holder() == other.proc.pid, timeout=10)
    await until(lambda: "reconcile: account openai-main: last fetched" in
                other.log.read_text())
    said = next(line for line in other.log.read_text().splitlines()
                if "reconcile: account openai-main: last fetched" in line)
    assert "next fetch now" not in said
    assert len(openai_admin.asked("completions")) == asked  # not fetched again


async def test_sigterm_of_one_replica_mid_burst_loses_no_row(fleet):
    a, b = await fleet(), await fleet()
    answered: list[str] = []

    async def burst(r: Replica, name: str, s) -> None:
        for i in range(200):
            try:
                if await r.ask(s, f"{name}-{i}") == 200:
                    answered.append(f"{name}-{i}")
            except aiohttp.ClientError:  # the stopped replica no longer listens
                pass

    async with aiohttp.ClientSession() as s:
        both = asyncio.gather(burst(a, "a", s), burst(b, "b", s))
        await until(lambda: sum(1 for x in answered if x.startswith("a-")) >= 50)
        a.proc.send_signal(signal.SIGTERM)
        await both
    assert await a.proc.wait() == 0
    await stop(b.proc)  # b writes what it holds at its own exit
    ids = [r["request_id"] for r in read_rows(fleet.db)]
    assert sorted(ids) == sorted(answered)  # each answered request once, nothing else
    assert 50 <= sum(1 for x in ids if x.startswith("a-")) < 200


def test_a_history_server_not_there_at_start_is_one_line_and_status_1(tmp_path):
    """Named by host and port, never with the password; nothing starts."""
    import subprocess
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({
        "history": {"url": "postgresql://gateway@127.0.0.1:1/llm_usage",
                    "password_env": "DB_PASSWORD"},
        "services": [{"name": "openai", "base_url": "https://api.openai.com"}]}))
    done = subprocess.run([sys.executable, "-m", "exporter", "serve", "--config", str(config),
                           "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "DB_PASSWORD": "do-not-print-me"})
    assert (done.returncode, done.stderr.count("\n")) == (1, 1), done.stderr
    assert done.stderr.startswith("config: history.url: cannot use the PostgreSQL history at "
                                  "127.0.0.1:1: connection to server at \"127.0.0.1\", port 1 "
                                  "failed: Connection refused"), done.stderr
    assert "do-not-print-me" not in done.stderr


async def test_a_history_server_that_goes_away_loses_nothing(gateway, replay, admin):
    """The server stops under a running gateway: requests are served and counted, rows wait
    (their lag grows), the usage API answers 503; the server comes back: every row is
    written, once."""
    from prometheus_client import CollectorRegistry

    from exporter.app import history_for
    from exporter.config.load import parse_config
    from exporter.devtools.postgres import Server
    server = Server()  # a server of its own, to stop
    url = server.start().removesuffix("/postgres") + "/postgres"
    try:
        replay.routes[CHAT] = json_file("openai_chat_cached.json")
        registry = CollectorRegistry()
        history, _ = history_for(parse_config({"history": {"url": url},
                                            "services": [{"name": "x", "base_url": "http://x"}]},
                                           {}), registry)
        gw = await gateway(history=history)
        api = await admin(registry, db=history.db)
        async with aiohttp.ClientSession() as s:
            async def ask(i: int) -> int:
                async with s.post(gw.url + CHAT, json={"model": "gpt-4o"},
                                  headers={"X-Request-ID": f"r{i}"}) as r:
                    await r.read()
                    return r.status

            assert await ask(0) == 200
            await until(lambda: history.lag() == 0 and history.queue.qsize() == 0)
            server.halt()
            assert [await ask(i) for i in range(1, 6)] == [200] * 5
            await until(lambda: registry.get_sample_value("llm_history_write_errors_total") > 0)
            assert (await api.get("/api/requests")).status == 503
            await until(lambda: history.lag() > 0.5)
            lag = registry.get_sample_value("llm_history_write_lag_seconds")
            assert lag is not None and lag > 0.5
            server.resume()
            await until(lambda: history.lag() == 0 and history.queue.qsize() == 0)
            assert (await api.get("/api/requests")).status == 200
        await gw.listener.cleanup()
        ids = [r["request_id"] for r in read_rows(history.db)]
        assert sorted(ids) == [f"r{i}" for i in range(6)]
        history.db.close()
    finally:
        server.stop()


def test_replicas_started_together_on_one_history_both_start(new_db, tmp_path,
                                                            unused_tcp_port_factory):
    """The migrations take turns: neither fails (SQLite said `database is locked`), four
    times, each on a new history."""
    import subprocess
    for attempt in range(4):
        db = new_db()
        procs = []
        for i in range(2):
            config = tmp_path / f"c{attempt}{i}.yaml"
            config.write_text(json.dumps({
                "listen": f"127.0.0.1:{unused_tcp_port_factory()}",
                "admin_listen": f"127.0.0.1:{unused_tcp_port_factory()}",
                "history": {"url" if db.postgresql else "path": db.target},
                "services": [{"name": "openai", "base_url": "https://api.openai.com"}]}))
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "exporter", "serve", "--config", str(config)],
                cwd=ROOT, stderr=subprocess.PIPE, text=True))
        try:
            for p in procs:  # each says it serves, or why it stopped (its stderr ends)
                said = []
                for line in p.stderr:
                    said.append(line)
                    if "proxy on" in line:
                        break
                assert said and "proxy on" in said[-1], "".join(said)
                assert not [s for s in said if " ERROR " in s], "".join(said)
        finally:
            for p in procs:
                p.terminate()
                p.wait(30)
                p.stderr.close()
