"""Measure how far a key overruns an enforced budget in a fleet: two `serve` replicas on one
PostgreSQL history, one key's requests spread over both by concurrent clients, until both
refuse it.

    .venv/bin/python benchmarks/fleet_bench.py [--clients N] [--latency S] [--requests R]

The upstream is the simulator, answering each request after about `latency` seconds; the
budget is set (by SIGHUP) to the fee of about R requests. Printed: when the fleet's spend
reached the budget, when each replica refused from then on, and what was spent past it,
in requests and in dollars, beside the bound docs/fleet.md states: the requests in flight
then, plus at most a second of the key's traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time

import aiohttp
from aiohttp import web

from exporter.devtools.postgres import Server
from exporter.devtools.simulator import Simulator
from exporter.store.database import Database

KEY = "sk-fleet-bench"
BODY = {"model": "gpt-4o", "max_tokens": 24,
        "messages": [{"role": "user", "content": "Count the tokens of this request. " * 20}]}


async def wait_ok(url: str) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(600):
            try:
                async with s.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError(url)


async def main(clients: int, latency: float, requests: int) -> None:
    server = Server(durable=True)
    server.start()
    db_url = server.create_database("fleet")
    sim = web.AppRunner(Simulator(first_token_delay=latency, token_delay=0, error_rate=0,
                                  seed=1).app(), access_log=None)
    await sim.setup()
    site = web.TCPSite(sim, "127.0.0.1", 0)
    await site.start()
    upstream = f"http://127.0.0.1:{sim.addresses[0][1]}"
    tmp = tempfile.mkdtemp()
    ports = [(18080 + i, 19464 + i) for i in range(2)]

    def config(budget: float) -> None:
        for i, (port, admin) in enumerate(ports):
            with open(os.path.join(tmp, f"r{i}.yaml"), "w") as f:
                json.dump({"listen": f"127.0.0.1:{port}", "admin_listen": f"127.0.0.1:{admin}",
                           "history": {"url": db_url},
                           "services": [{"name": "openai", "base_url": upstream}],
                           "api_keys": [{"name": "team", "key_env": "BENCH_KEY"}],
                           "budgets": [{"api_key": "team", "daily": budget,
                                        "enforce": True}]}, f)

    config(1e9)
    env = {**os.environ, "BENCH_KEY": KEY}
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "serve", "--config", os.path.join(tmp, f"r{i}.yaml"),
        env=env, stderr=asyncio.subprocess.DEVNULL) for i in range(2)]
    db = Database(db_url)
    try:
        for _, admin in ports:
            await wait_ok(f"http://127.0.0.1:{admin}/healthz")
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as s:
            async with s.post(f"http://127.0.0.1:{ports[0][0]}/v1/chat/completions",
                              json=BODY) as r:
                await r.read()
            await asyncio.sleep(1)  # the probe's row reaches the history
            with db.connect() as conn:
                fee = conn.one("SELECT fee_usd FROM requests")[0]
            budget = fee * requests
            config(budget)  # SIGHUP applies the budget, and the probe has spent its fee
            for p in procs:
                p.send_signal(1)
            await asyncio.sleep(1)
            answers = await drive(s, ports, clients)
        with db.connect() as conn:
            rows = conn.all("SELECT started_at + duration_ms / 1000, fee_usd FROM requests "
                            "WHERE status = 200 ORDER BY 1")
        report(rows, answers, budget, clients, latency)
    finally:
        for p in procs:
            p.terminate()
            await p.wait()
        db.close()
        await sim.cleanup()
        server.stop()


async def drive(s, ports, clients: int) -> list[tuple[float, float, int, int]]:
    """Each client sends the key's requests, to the replicas in turn, until both have
    refused it for two seconds: (sent, ended, replica, status) of each."""
    answers: list[tuple[float, float, int, int]] = []
    refused: dict[int, float] = {}
    done = asyncio.Event()

    async def client(c: int) -> None:
        i = c
        while not done.is_set():
            replica = i % 2
            sent = time.time()
            async with s.post(f"http://127.0.0.1:{ports[replica][0]}/v1/chat/completions",
                              json=BODY) as r:
                await r.read()
            answers.append((sent, time.time(), replica, r.status))
            if r.status == 429:
                refused.setdefault(replica, time.time())
                if len(refused) == 2 and time.time() - max(refused.values()) > 2:
                    done.set()
            i += 1

    await asyncio.gather(*(client(c) for c in range(clients)))
    return answers


def report(rows, answers, budget: float, clients: int, latency: float) -> None:
    total, spent_at = 0.0, None
    for ended, fee in rows:
        total += fee
        if spent_at is None and total >= budget:
            spent_at = ended
    accepted_after = [a for a in answers if a[3] == 200 and a[1] > spent_at]
    in_flight = [a for a in accepted_after if a[0] <= spent_at]
    rate = sum(1 for a in answers if spent_at - 10 <= a[0] <= spent_at) / 10
    print(f"{clients} clients, upstream latency {latency:g} s: {rate:.1f} requests/s of the "
          f"key before its budget of ${budget:.6f} was spent")
    for replica in (0, 1):
        first = min(a[1] for a in answers if a[2] == replica and a[3] == 429)
        later = [a for a in answers if a[2] == replica and a[3] == 200 and a[0] > first]
        print(f"  replica {replica + 1}: refuses {first - spent_at:+.2f} s after the spend "
              f"reached the budget; {len(later)} accepted after its first refusal")
    overrun = total - budget
    print(f"  spent past the budget: {len(accepted_after)} requests ({len(in_flight)} in "
          f"flight when it was reached, {len(accepted_after) - len(in_flight)} sent after), "
          f"${overrun:.6f} ({overrun / budget:.0%} of the budget); bound: "
          f"{len(in_flight)} in flight + {rate:.1f} a second")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.clients, args.latency, args.requests))
