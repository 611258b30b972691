"""`llm-usage-exporter demo`: the gateway in front of the simulator, with a little traffic."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import sys
import tempfile

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from ..app import history_for, start
from ..config.load import parse_config
from ..store.database import Database, is_url, unreachable
from ..telemetry.logs import setup_logging
from .simulator import Simulator

# Fake client keys: two are given names in the config, the third shows the hashed label.
DEMO_KEYS = {"sk-demo-search-team": "search-team", "sk-demo-chat-team": "chat-team",
             "sk-demo-unnamed": None}
# Attribution: the named keys' projects; the unnamed key's clients name theirs by header.
PROJECTS = {"search-team": "search", "chat-team": "support"}
FEATURES = ("autocomplete", "summarise", "chat")
OPENAI_CALLS = (
    ("/openai/v1/chat/completions", {"model": "gpt-4o-mini", "stream": True}),
    ("/openai/v1/chat/completions", {"model": "gpt-4o-mini"}),
    ("/openai/v1/chat/completions", {"model": "o4-mini", "stream": True}),
    ("/openai/v1/responses", {"model": "gpt-5-mini", "stream": True}),
    ("/openai/v1/embeddings", {"model": "text-embedding-3-small"}),
    # A self-hosted model behind an OpenAI-compatible server that reports no usage and has
    # no price: its tokens are estimated, and its requests counted as unpriced.
    ("/openai/v1/chat/completions", {"model": "local-llama-3.1-8b", "stream": True}),
)
# A model the team serves on its own GPUs (the simulator again): costed by GPU time.
DEPLOYMENT_CALLS = (
    ("/llama-70b/v1/chat/completions", {"model": "llama-3.1-70b-instruct", "stream": True}),
)
TUNED = "gpt-4o-mini-2024-07-18"  # the demo fine-tunes it once, in a minute (simulated)
ANTHROPIC_CALLS = (
    ("/anthropic/v1/messages", {"model": "claude-sonnet-4-5", "stream": True, "max_tokens": 64}),
    ("/anthropic/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 64}),
)
# search-team's daily budget is small enough to be spent within minutes at the default
# rate (it spends about $0.006 a minute), so the budget gauges, panels and alerts are seen
# working: LLMBudgetExceeded fires about 7 minutes after the start.
BUDGETS = [{"api_key": "search-team", "daily": 0.01, "monthly": 0.5},
           {"api_key": "chat-team", "daily": 5.0, "monthly": 100.0},
           {"project": "growth", "daily": 1.0, "monthly": 20.0}]
PROMPT = "Summarise why counting every token of every request matters to a finance team. " * 6


def _body(template: dict) -> dict:
    body = dict(template)
    if body["model"].startswith("text-embedding"):
        body["input"] = [PROMPT[:200], PROMPT[200:]]
    elif body["model"].startswith("gpt-5"):
        body["input"] = PROMPT
    else:
        body["messages"] = [{"role": "user", "content": PROMPT}]
    return body


def attribution(rng, key: str) -> dict:
    """A demo request's end user and tags, and the unnamed key's project."""
    headers = {"X-LLM-User": f"user-{rng.randint(1, 12)}",
               "X-LLM-Tags": f"feature={rng.choice(FEATURES)}, env=prod"}
    if DEMO_KEYS[key] is None:
        headers["X-LLM-Project"] = "growth"
    return headers


async def run_demo(listen: str, admin_listen: str, rate: float, requests: int | None,
                   history: str | None = None) -> int:
    """Run the demo until Ctrl-C or `requests` requests; its history in the file or the
    PostgreSQL database `history` (a fleet of demos can share one), or in a temporary
    folder removed at the end."""
    if history and is_url(history):  # a server that cannot be reached: one line, now
        db = Database(history)
        try:
            await asyncio.to_thread(db.migrate)
        except db.Error as e:
            print(f"--history: {unreachable(history, e)}", file=sys.stderr)
            return 1
    with tempfile.TemporaryDirectory(prefix="llm-usage-demo-") as folder:
        return await _demo(listen, admin_listen, rate, requests,
                           history or os.path.join(folder, "history.db"), history is None)


async def _demo(listen, admin_listen, rate, requests, history_path, temporary) -> int:
    setup_logging("warning")
    sim = web.AppRunner(Simulator(seed=7).app(), access_log=None)
    await sim.setup()
    try:
        site = web.TCPSite(sim, "127.0.0.1", 0)
        await site.start()
        return await _traffic(sim, listen, admin_listen, rate, requests, history_path,
                              temporary)
    finally:
        await sim.cleanup()


async def _traffic(sim, listen, admin_listen, rate, requests, history_path, temporary) -> int:
    sim_url = f"http://127.0.0.1:{sim.addresses[0][1]}"
    config = parse_config({
        "listen": listen, "admin_listen": admin_listen,
        "history": {"url" if is_url(history_path) else "path": history_path},
        "services": [{"name": "openai", "base_url": sim_url, "provider": "openai"},
                     {"name": "anthropic", "base_url": sim_url, "provider": "anthropic"}],
        "api_keys": [{"name": name, "sha256": hashlib.sha256(key.encode()).hexdigest(),
                      "project": PROJECTS[name]} for key, name in DEMO_KEYS.items() if name],
        "budgets": BUDGETS,
        # OpenAI's training price for gpt-4o-mini; the price table has none.
        "pricing": [{"model": TUNED, "training": 3.0}],
        "deployments": [{"name": "llama-70b", "model": "llama-3.1-70b-instruct",
                         "base_url": sim_url, "gpus": 2, "gpu_type": "H100-80GB",
                         "gpu_hourly_usd": 2.49, "probe_interval_seconds": 5,
                         "compare_to": "gpt-4o-mini"}],
    })
    registry = CollectorRegistry()
    history, _ = history_for(config, registry)
    runners = await start(config, registry, history=history)
    proxy = f"http://{listen}"
    grafana = os.environ.get("GRAFANA_URL")  # set by docker-compose.yml's demo profile
    kept = " (removed at the end: keep it with --history PATH)" if temporary else ""
    dashboards = (f"\n  Grafana:   {grafana}   (folder \"LLM usage\", user admin)"
                  if grafana else "")
    print(f"""llm-usage-exporter demo: a simulated upstream ({sim_url}) behind the gateway.
{dashboards}
  metrics:   http://{admin_listen}/metrics
  health:    http://{admin_listen}/healthz
  usage:     http://{admin_listen}/api/usage?group_by=model&order=fee
  requests:  http://{admin_listen}/api/requests?limit=20
  Excel:     http://{admin_listen}/api/usage?group_by=model,api_key&granularity=minute&format=xlsx
  history:   {history_path}{kept}
  OpenAI:    {proxy}/openai/v1     (base URL for the openai SDK)
  Anthropic: {proxy}/anthropic     (base URL for the anthropic SDK)
  deployed:  {proxy}/llama-70b/v1   (a model on 2 of "your own" GPUs, at $2.49 an hour each)
  GPU time:  http://{admin_listen}/api/deployments

Budgets: search-team may spend ${BUDGETS[0]["daily"]:g} a day and spends it within minutes:
its budget gauges fill, and with Prometheus and Alertmanager (docker compose) the budget
alerts fire about 7 minutes in.

Sending about {rate:g} requests/s{f', {requests} in all' if requests else ''}; Ctrl-C stops.
Try: curl -s {proxy}/openai/v1/chat/completions -H 'Authorization: Bearer sk-demo-mine' \\
       -d '{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"hi"}}]}}'
""", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    rng = random.Random(1)
    sent = 0
    tasks = set()
    async with aiohttp.ClientSession() as session:

        async def call(path, template, key, attributed=None):
            headers = ({"x-api-key": key, "anthropic-version": "2023-06-01"}
                       if "anthropic" in path else {"Authorization": f"Bearer {key}"})
            headers.update(attributed or {})
            if template is None:  # a GET
                async with session.get(proxy + path, headers=headers) as r:
                    await r.read()
                return
            async with session.post(proxy + path, json=_body(template), headers=headers) as r:
                await r.read()

        # One fine-tuning job, polled every 5 seconds or so as a client would: its trained
        # tokens are counted when it succeeds (a minute in).
        async with session.post(proxy + "/openai/v1/fine_tuning/jobs", json={
                "model": TUNED, "training_file": "file-demo"},
                headers={"Authorization": "Bearer sk-demo-chat-team"}) as r:
            tuning = (await r.json()).get("id")
        sent, poll = 1, max(int(rate * 5), 2)

        while not stop.is_set() and (not requests or sent < requests):
            if tuning and sent % poll == 0:
                call_ = call(f"/openai/v1/fine_tuning/jobs/{tuning}", None, "sk-demo-chat-team")
            else:
                path, template = rng.choice(OPENAI_CALLS + ANTHROPIC_CALLS + DEPLOYMENT_CALLS)
                key = rng.choice(list(DEMO_KEYS))
                call_ = call(path, template, key, attribution(rng, key))
            task = asyncio.create_task(call_)
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
            try:
                await asyncio.wait_for(stop.wait(), timeout=1 / rate)
            except TimeoutError:
                pass
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
    for runner in runners:  # first: the counts of series no scrape has read yet are let in
        await runner.cleanup()
    print(summary(registry), flush=True)
    runners[0].history.db.close()
    return 0


def summary(registry: CollectorRegistry) -> str:
    """Sum what the gateway counted, by outcome, for the demo's closing line."""
    requests, tokens, usd = {}, 0, 0.0
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == "llm_requests_total":
                outcome = sample.labels["error_type"]
                requests[outcome] = requests.get(outcome, 0) + int(sample.value)
            elif sample.name == "llm_tokens_total":
                tokens += int(sample.value)
            elif sample.name == "llm_cost_usd_total":
                usd += sample.value
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(requests.items()) if v)
    return (f"counted {sum(requests.values())} requests ({outcomes}), {tokens} tokens "
            f"and ${usd:.6f}")

