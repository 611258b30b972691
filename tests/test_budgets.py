"""Budgets per project and per end user: enforced from the history's spend as a key's are,
named in the refusal, exported (projects: llm_project_spend_usd and llm_project_budget_usd;
end users: never a label), kept by calendar day in the gateway's zone and rebuilt from the
requests. Fees are worked out by hand: openai_chat_cached.json is 93 uncached input tokens,
1,024 cached and 46 output of gpt-4o-2024-08-06 at $2.50, $1.25 and $10 per million:
$0.0019725 a request; anthropic_message.json is 50 uncached input tokens, 2,000 written
to the 5-minute cache and 500 to the 1-hour one, 10,000 read from it and 320 output of
claude-sonnet-4-5 (the answer's model, whatever the client asked) at $3, $3.75, $6, $0.30
and $15 per million: $0.01845."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from decimal import Decimal as D
from zoneinfo import ZoneInfo

import anthropic
import openai
import pytest
from conftest import read_rows
from prometheus_client import CollectorRegistry
from test_api import write_history
from test_attribution import ASK, CHAT, FEE, oa, record
from upstream import json_file

from exporter.config.budgets import Budget
from exporter.config.load import key_warnings, parse_config
from exporter.config.schema import ConfigError
from exporter.gateway.keys import Keys
from exporter.record import RequestRecord
from exporter.store.collector import HistoryCollector
from exporter.store.schema import REBUILD_ATTRIBUTED
from exporter.store.spend import Spend, rebuild_spend
from exporter.store.writer import History
from exporter.telemetry.background import HistoryMetrics

assert FEE == (93 * D("2.50") + 1024 * D("1.25") + 46 * D("10")) / 1_000_000
CLAUDE_FEE = (50 * D(3) + 2000 * D("3.75") + 500 * D(6) + 10_000 * D("0.30")
              + 320 * D(15)) / 1_000_000
assert CLAUDE_FEE == D("0.01845")


async def test_a_projects_and_an_end_users_budgets_are_enforced(gateway, replay, db):
    replay.routes[CHAT] = json_file("openai_chat_cached.json")
    replay.routes["/v1/messages"] = json_file("anthropic_message.json")
    history = History(db, HistoryMetrics(CollectorRegistry()), linger=0)
    history.start()
    gw = await gateway(history=history, budgets=[
        # Spent by the second request of the project ($0.003945), not by the first.
        {"project": "growth", "daily": 0.003, "enforce": True},
        # Each end user: spent by one chat request ($0.0019725).
        {"user": "*", "daily": 0.0015, "enforce": True},
        {"user": "vip", "daily": 1, "enforce": True},
        {"project": "search", "daily": 0.000001}])  # alerts only: never refuses
    c = oa(gw)
    growth = {"X-LLM-Project": "growth"}
    for _ in range(2):
        await c.chat.completions.create(model="gpt-4o", messages=ASK, extra_headers=growth)
    with pytest.raises(openai.RateLimitError) as e:
        await c.chat.completions.create(model="gpt-4o", messages=ASK, extra_headers=growth)
    assert e.value.body["code"] == "budget_exceeded"
    message = e.value.body["message"]
    assert message.startswith("project growth has spent its daily budget: $0.003945 of "
                              "$0.003; it renews in ")
    # The end user named by the body (OpenAI's `user`), then by Anthropic's metadata: one
    # user across APIs. A user of their own budget, and the search project, pass.
    await c.chat.completions.create(model="gpt-4o", messages=ASK, user="ann")
    with pytest.raises(openai.RateLimitError) as e:
        await c.chat.completions.create(model="gpt-4o", messages=ASK, user="ann")
    assert e.value.body["message"].startswith(
        "end user ann has spent its daily budget: $0.001972")
    claude = anthropic.AsyncAnthropic(api_key="sk-ant", base_url=gw.url + "/anthropic",
                                      max_retries=0)
    with pytest.raises(anthropic.RateLimitError):
        await claude.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=ASK,
                                     metadata={"user_id": "ann"})
    for _ in range(2):
        await c.chat.completions.create(model="gpt-4o", messages=ASK, user="vip")
        await c.chat.completions.create(model="gpt-4o", messages=ASK,
                                        extra_headers={"X-LLM-Project": "search"})
    await claude.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=ASK,
                                 metadata={"user_id": "bo"})
    records = [await gw.records.wait(n) for n in range(1, 12)]
    assert [(r.project, r.end_user, r.code) for r in records] == [
        ("growth", None, 200), ("growth", None, 200), ("growth", None, 429),
        ("none", "ann", 200), ("none", "ann", 429), ("none", "ann", 429),
        ("none", "vip", 200), ("search", None, 200), ("none", "vip", 200),
        ("search", None, 200), ("none", "bo", 200)]
    assert len(replay.seen) == 8  # the refused never went up
    assert not any(name.lower().startswith("x-llm-") for seen in replay.seen
                   for name in seen.headers)
    await asyncio.to_thread(history.close)
    # The ledger's fees per project and user, as worked out by hand.
    with db.connect() as conn:
        spent = dict(((kind, name), round(fee, 10)) for kind, name, fee in conn.all(
            "SELECT kind, name, sum(fee_usd) FROM spend_attributed GROUP BY 1, 2"))
    assert spent == {("project", "growth"): float(2 * FEE),
                     ("project", "none"): float(3 * FEE + CLAUDE_FEE),
                     ("project", "search"): float(2 * FEE),
                     ("user", "ann"): float(FEE), ("user", "vip"): float(2 * FEE),
                     ("user", "bo"): float(CLAUDE_FEE)}
    await c.close()
    await claude.close()


def test_project_spend_and_budgets_are_exported_and_end_users_are_not(db):
    # 1,793,000,001 is 2026-10-26 (UTC).
    write_history(db, [record(1, "search", "alice", fee="0.01"),
                       record(2, "search", "bob", fee="0.02"),
                       record(3, "growth", "alice", fee="0.04")])
    registry = CollectorRegistry()
    HistoryCollector(registry, db, ZoneInfo("UTC"), [
        Budget(project="search", daily=0.5, monthly=10.0), Budget(project="*", monthly=1.0),
        Budget(project="batch", daily=2.0), Budget(user="*", daily=0.01)],
        clock=lambda: 1_793_000_100.0)

    def value(name, project, period):
        return registry.get_sample_value(name, {"project": project, "period": period})

    assert [value("llm_project_spend_usd", p, period) for p in ("search", "growth")
            for period in ("day", "month")] == [0.03, 0.03, 0.04, 0.04]
    assert [value("llm_project_budget_usd", p, period) for p, period in (
        ("search", "day"), ("search", "month"), ("growth", "month"), ("growth", "day"),
        ("batch", "day"))] == [0.5, 10.0, 1.0, None, 2.0]
    assert not any("alice" in s.labels.values() for m in registry.collect()
                   for s in m.samples)


def test_the_spend_of_projects_and_users_is_rebuilt_in_the_gateways_zone(db):
    # 1,793,000,001 is 2026-10-26 07:33:21 UTC: 21:33 on the 25th in Honolulu.
    write_history(db, [record(1, "search", "alice", fee="0.01"),
                       record(2, "search", None, fee="0.02")])
    with db.connect(write=True) as conn:
        rebuild_spend(conn, ZoneInfo("Pacific/Honolulu"))
    assert read_rows(db, "spend_attributed", "kind, name") == [
        {"kind": "project", "name": "search", "day": "2026-10-25", "fee_usd": 0.03},
        {"kind": "user", "name": "alice", "day": "2026-10-25", "fee_usd": 0.01}]


@pytest.mark.parametrize("budget,problem", [
    ({"daily": 1}, "budgets[0]: set one of api_key, project or user (what the budget holds "
                   "to its limit)"),
    ({"api_key": "a", "project": "p", "daily": 1},
     "budgets[0]: set one of api_key, project or user (what the budget holds to its limit), "
     "not api_key and project"),
])
def test_a_budget_holds_one_key_project_or_user(budget, problem):
    with pytest.raises(ConfigError) as e:
        parse_config({"services": [{"name": "a", "base_url": "http://x"}],
                      "budgets": [budget]})
    assert problem in str(e.value)


def test_two_budgets_of_one_project_are_refused():
    with pytest.raises(ConfigError) as e:
        parse_config({"services": [{"name": "a", "base_url": "http://x"}], "budgets": [
            {"project": "p", "daily": 1}, {"project": "p", "monthly": 5}]})
    assert "budgets[1]: project p has a budget already (budgets[0]): one budget, with " \
           "daily and monthly" in str(e.value)


def test_an_enforced_project_budget_without_managed_keys_is_warned_of():
    config = parse_config({"services": [{"name": "a", "base_url": "http://x"}], "budgets": [
        {"project": "search", "daily": 1, "enforce": True}, {"project": "ads", "daily": 1}]})
    assert key_warnings(config) == [
        "budgets[0]: an enforced project budget without require_api_key holds only the "
        "clients that name the project (X-LLM-Project): another name, or none, escapes it"]


def test_a_listed_alert_only_budget_keeps_its_payer_out_of_the_enforced_star():
    config = parse_config({"services": [{"name": "a", "base_url": "http://x"}], "budgets": [
        {"project": "ci", "monthly": 50},  # alerts only
        {"project": "*", "daily": 1, "enforce": True}]})
    now = time.time()
    spend = Spend(ZoneInfo("UTC"))
    spend.read_on = datetime.fromtimestamp(now, ZoneInfo("UTC")).date().isoformat()
    spend.written = {("project", "ci"): (10.0, 10.0), ("project", "ads"): (10.0, 10.0)}
    keys = Keys(config, {}, spend, clock=lambda: now)

    def of(project: str):
        r = RequestRecord("r", now, "a", "openai", "team", "chat")
        r.project = project
        return keys.spent(r)
    assert of("ci") is None  # its own budget, not the enforced "*"
    assert of("ads").message.startswith("project ads has spent its daily budget: $10 of $1")


def test_the_upgrade_makes_projects_spend_and_keeps_the_keys_month(db):
    """The migration that adds the projects' and users' spend asks for it to be made from
    the requests, and leaves the keys' spend alone: it holds the month's fees of rows a
    short retention has already deleted."""
    write_history(db, [record(1, "search", "alice", fee="0.01")])
    with db.connect(write=True) as conn:
        conn.execute("UPDATE spend_daily SET fee_usd = 5")  # rows since pruned
        conn.execute("DELETE FROM spend_attributed")
        conn.execute(REBUILD_ATTRIBUTED)  # as the migration leaves it
    db.migrate(ZoneInfo("UTC"))
    assert [(r["api_key"], r["fee_usd"]) for r in read_rows(db, "spend_daily", "api_key")] \
        == [("team", 5.0)]
    assert [(r["name"], r["fee_usd"]) for r in read_rows(db, "spend_attributed", "name")] \
        == [("alice", 0.01), ("search", 0.01)]
    assert read_rows(db, "meta", "key") == [{"key": "timezone", "value": "UTC"}]
