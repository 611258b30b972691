"""Managed keys: unknown keys refused before any upstream, keys held to their services and
models, budgets enforced from the history's spend, and new keys made by the command line."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import aiohttp
import anthropic
import openai
import pytest
import yaml
from conftest import until
from prometheus_client import CollectorRegistry
from upstream import json_file

from exporter.cli.main import main
from exporter.config.load import parse_config
from exporter.config.schema import ConfigError
from exporter.gateway.keys import Keys
from exporter.record import RequestRecord
from exporter.store.spend import Spend
from exporter.store.upkeep import Upkeep
from exporter.store.writer import History
from exporter.telemetry.background import HistoryMetrics

ALICE, BOB, EVE = "sk-alice-0123456789", "sk-bob-0123456789", "sk-eve-0123456789"
CHAT, MESSAGES = "/v1/chat/completions", "/v1/messages"
ASK = [{"role": "user", "content": "Hi"}]


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


KEYS = {"api_keys": [{"name": "alice", "sha256": sha(ALICE), "models": ["gpt-4o*"]},
                     {"name": "bob", "key_env": "BOB_KEY", "services": ["anthropic"]}],
        "require_api_key": True}


def openai_client(gw, key):
    return openai.AsyncOpenAI(base_url=gw.url + "/openai/v1", api_key=key)


async def test_an_unknown_or_missing_key_never_reaches_an_upstream(gateway, replay):
    replay.routes[CHAT] = json_file("openai_chat_cached.json")
    gw = await gateway(env={"BOB_KEY": BOB}, **KEYS)
    with pytest.raises(openai.AuthenticationError) as e:
        await openai_client(gw, EVE).chat.completions.create(model="gpt-4o", messages=ASK)
    assert e.value.body["code"] == "key_unknown"
    assert "not one of the gateway's keys" in e.value.body["message"]
    client = anthropic.AsyncAnthropic(base_url=gw.url + "/anthropic", api_key=EVE)
    with pytest.raises(anthropic.AuthenticationError) as e:
        await client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=ASK)
    assert e.value.body["error"]["type"] == "authentication_error"
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url + CHAT, json={"model": "gpt-4o", "messages": ASK}) as r:
            assert r.status == 401
            assert "none was given" in (await r.json())["error"]["message"]
    records = [await gw.records.wait(n) for n in (1, 2, 3)]
    assert [(r.code, r.error_type, r.api_key) for r in records] == [
        (401, "key_unknown", "key-" + sha(EVE)[:8])] * 2 + [(401, "key_unknown", "none")]
    assert replay.seen == []
    assert gw.total("llm_requests_total", error_type="key_unknown") == 3


async def test_a_key_is_held_to_its_services_and_models(gateway, replay):
    replay.routes[CHAT] = json_file("openai_chat_cached.json")
    replay.routes[MESSAGES] = json_file("anthropic_message.json")
    gw = await gateway(env={"BOB_KEY": BOB}, **KEYS)
    alice = openai_client(gw, ALICE)
    answer = await alice.chat.completions.create(model="gpt-4o", messages=ASK)
    assert answer.usage.total_tokens == 1163
    with pytest.raises(openai.PermissionDeniedError) as e:
        await alice.chat.completions.create(model="gpt-3.5-turbo", messages=ASK)
    assert e.value.body["message"] == ("API key alice may not use the model gpt-3.5-turbo "
                                       "(it may use: gpt-4o*)")
    with pytest.raises(openai.PermissionDeniedError) as e:  # bob: anthropic only
        await openai_client(gw, BOB).chat.completions.create(model="gpt-4o", messages=ASK)
    assert "may not use the service openai" in e.value.body["message"]
    bob = anthropic.AsyncAnthropic(base_url=gw.url + "/anthropic", api_key=BOB)
    message = await bob.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=ASK)
    assert message.usage.output_tokens > 0
    records = [await gw.records.wait(n) for n in (1, 2, 3, 4)]
    assert [(r.api_key, r.code, r.error_type) for r in records] == [
        ("alice", 200, "none"), ("alice", 403, "key_forbidden"), ("bob", 403, "key_forbidden"),
        ("bob", 200, "none")]
    assert [s.path_qs for s in replay.seen] == [CHAT, MESSAGES]  # the refused never went up


async def test_a_spent_budget_is_refused_with_429_until_it_renews(gateway, replay, db):
    replay.routes[CHAT] = json_file("openai_chat_cached.json")
    history = History(db, HistoryMetrics(CollectorRegistry()), linger=0)
    history.start()
    gw = await gateway(history=history, env={"BOB_KEY": BOB}, **KEYS, budgets=[
        {"api_key": "alice", "daily": 0.001, "enforce": True},
        {"api_key": "*", "daily": 0.001}])  # alerts only: never refuses
    alice = openai_client(gw, ALICE)  # the SDK's default: two retries, unless told not to
    await alice.chat.completions.create(model="gpt-4o", messages=ASK)
    # 93 input at $2.50, 1,024 cache reads at $1.25 and 46 output at $10 per million.
    assert gw.records[0].fee == Decimal("0.0019725")
    with pytest.raises(openai.RateLimitError) as e:
        await alice.chat.completions.create(model="gpt-4o", messages=ASK)
    assert e.value.body["code"] == "budget_exceeded"
    message = e.value.body["message"]  # $0.0019725 as a float: shown to 6 decimals
    assert message.startswith("API key alice has spent its daily budget: $0.00197")
    assert " of $0.001; it renews in " in message
    assert e.value.response.headers["x-should-retry"] == "false"
    assert 0 < int(e.value.response.headers["retry-after"]) <= 86400
    # A model the key may not use is refused as such, spent or not: a 403 does not go away
    # tomorrow, as the 429 does.
    with pytest.raises(openai.PermissionDeniedError) as forbidden:
        await alice.chat.completions.create(model="o3", messages=ASK)
    assert forbidden.value.body["code"] == "key_forbidden"
    # Written to the history meanwhile, and read back: still refused, counted once.
    await asyncio.to_thread(history.close)
    with pytest.raises(openai.RateLimitError):
        await alice.chat.completions.create(model="gpt-4o", messages=ASK)
    assert len(replay.seen) == 1
    assert gw.total("llm_requests_total", error_type="budget_exceeded") == 2
    assert gw.total("llm_requests_total", error_type="key_forbidden") == 1
    replay.routes[MESSAGES] = json_file("anthropic_message.json")
    bob = anthropic.AsyncAnthropic(base_url=gw.url + "/anthropic", api_key=BOB)
    for _ in range(2):  # over the "*" budget too, which only alerts
        await bob.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=ASK)
    assert len(replay.seen) == 3


def record(key: str, fee: str) -> RequestRecord:
    r = RequestRecord("r", datetime.now().timestamp(), "openai", "openai", key, "chat")
    r.fee, r.code = Decimal(fee), 200
    return r


async def test_spend_counts_each_fee_once_while_written_and_sees_other_gateways(db):
    history = History(db, HistoryMetrics(CollectorRegistry()), linger=0)
    history.spend.active = True  # as an enforced budget makes it
    history.put(record("alice", "0.25"))
    history.put(record("alice", "0.5"))
    history.put(record("bob", "1"))
    now, alice = time.time(), ("api_key", "alice")
    assert history.spend.of(alice, now) == (0.75, 0.75)  # queued, not written: counted
    history.start()
    await until(lambda: history.spend.written.get(("api_key", "alice")) == (0.75, 0.75))
    assert history.spend.of(alice, now) == (0.75, 0.75) and history.spend.unwritten == {}
    with db.connect(write=True) as conn:  # another gateway's commit
        conn.execute("UPDATE spend_daily SET fee_usd = fee_usd + 2 WHERE api_key = 'bob'")
    await until(lambda: history.spend.of(("api_key", "bob"), time.time()) == (3.0, 3.0))
    await asyncio.to_thread(history.close)


class FixedSpend(Spend):
    """Sums read on 2026-12-04 in Paris."""

    def __init__(self, day, month):
        super().__init__(ZoneInfo("Europe/Paris"))
        self.written, self.read_on = {("api_key", "alice"): (day, month)}, "2026-12-04"


@pytest.mark.parametrize("day,month,expected", [
    (0.5, 2.0, None),
    # 13:00 in Paris: the day ends in 11 hours.
    (1.0, 2.0, ("daily", "$1 of $1", "11 h 0 min", 11 * 3600)),
    # Europe/Paris: 2026-12-04 12:00 UTC is 13:00; the month ends in 27 days and 11 hours.
    (0.5, 31.0, ("monthly", "$31 of $30", "27 d 11 h", (27 * 24 + 11) * 3600)),
    # Both spent: refused until the month ends, and told so.
    (2.0, 31.0, ("monthly", "$31 of $30", "27 d 11 h", (27 * 24 + 11) * 3600)),
])
def test_a_budget_refusal_names_its_period_and_when_it_renews(day, month, expected):
    config = parse_config({"services": [{"name": "a", "base_url": "http://x"}],
                           "timezone": "Europe/Paris", "budgets": [
                               {"api_key": "alice", "daily": 1, "monthly": 30, "enforce": True}]})
    now = datetime.fromisoformat("2026-12-04T12:00:00+00:00").timestamp()
    keys = Keys(config, {}, FixedSpend(day, month), clock=lambda: now)
    refusal = keys.spent(record("alice", "0"))
    if expected is None:
        assert refusal is None
        return
    period, amounts, span, wait = expected
    assert refusal.status == 429 and refusal.error_type == "budget_exceeded"
    assert refusal.message == (f"API key alice has spent its {period} budget: {amounts}; "
                               f"it renews in {span}")
    assert refusal.headers == b"x-should-retry: false\r\nretry-after: %d\r\n" % wait


def test_sums_of_a_day_or_month_that_has_ended_count_nothing():
    spend = FixedSpend(5.0, 40.0)
    alice = ("api_key", "alice")
    spend.unwritten[alice] = 0.25
    at = datetime.fromisoformat  # Paris: 23:30 on the 4th, then 00:30 on the 5th
    assert spend.of(alice, at("2026-12-04T22:30:00+00:00").timestamp()) == (5.25, 40.25)
    assert spend.of(alice, at("2026-12-04T23:30:00+00:00").timestamp()) == (0.25, 40.25)
    assert spend.of(alice, at("2027-01-01T00:30:00+00:00").timestamp()) == (0.25, 0.25)


async def test_the_month_spend_outlives_a_short_retention(db):
    now = datetime.fromisoformat("2026-12-20T12:00:00+00:00").timestamp()
    history = History(db, HistoryMetrics(CollectorRegistry()), linger=0, clock=lambda: now)
    history.spend.active = True
    for day in (2, 10, 20):  # the 2nd and the 10th are past the retention, not the month
        r = record("alice", "1")
        r.started = datetime.fromisoformat(f"2026-12-{day:02d}T09:00:00+00:00").timestamp()
        history.put(r)
    history.start()
    await until(lambda: history.spend.written.get(("api_key", "alice")) == (1.0, 3.0))
    await asyncio.to_thread(history.close)
    Upkeep(db, 1, ZoneInfo("UTC"), clock=lambda: now).once()
    with db.connect() as conn:  # the rows are pruned, the spend rollup is not
        assert conn.one("SELECT count(*) FROM requests") == (1,)
        assert conn.one("SELECT sum(fee_usd) FROM spend_daily WHERE api_key = 'alice'") \
            == (3.0,)


def test_keys_new_prints_a_key_once_and_config_lines_with_its_hash_only():
    out = io.StringIO()
    import exporter.cli.keys as keys_cli
    assert keys_cli.new_key("carol", "openai", "gpt-4o*,o3", out=out) == 0
    lines = out.getvalue().splitlines()
    key = lines[1]
    assert key.startswith("sk-gw-") and len(key) == len("sk-gw-") + 43
    entry = yaml.safe_load("\n".join(lines[3:]))
    assert entry == [{"name": "carol", "sha256": sha(key), "services": ["openai"],
                      "models": ["gpt-4o*", "o3"]}]
    assert key not in "\n".join(lines[2:])
    config = parse_config({"services": [{"name": "openai", "base_url": "http://x"}],
                           "api_keys": entry, "require_api_key": True})
    keys = Keys(config, {})
    label, found = keys.identify({b"authorization": f"Bearer {key}"}.get)
    assert (label, found.models) == ("carol", ("gpt-4o*", "o3"))
    assert keys.refuse(label, found, "openai") is None
    assert keys.refuse_model(label, found, "o3") is None
    assert keys.refuse_model(label, found, "o3-pro").status == 403


def test_keys_new_refuses_a_name_no_label_can_hold(capsys):
    assert main(["keys", "new", "no spaces"]) == 2
    assert capsys.readouterr().err == ("llm-usage-exporter keys new: NAME must be 1-63 "
                                       "letters, digits, '.', '_' or '-', starting with a "
                                       "letter or digit\n")


def test_managed_key_settings_that_cannot_work_are_config_errors():
    with pytest.raises(ConfigError) as e:
        parse_config({"services": [{"name": "openai", "base_url": "http://x"}],
                      "require_api_key": True,
                      "history": {"enabled": False},
                      "budgets": [{"api_key": "*", "monthly": 5, "enforce": True}]})
    assert e.value.problems == [
        "budgets[0].enforce: needs the history (history.enabled), where the spend is kept",
        "require_api_key: no api_keys are configured, so every request would be refused"]
    with pytest.raises(ConfigError) as e:
        parse_config({"services": [{"name": "openai", "base_url": "http://x"}],
                      "api_keys": [{"name": "a", "sha256": "0" * 64, "services": ["opnai"]}]})
    assert e.value.problems == ["api_keys[0].services[0]: no service named 'opnai'"]
