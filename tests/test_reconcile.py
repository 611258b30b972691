"""Reconciliation: the gateway's history, filled through it by the official SDKs, beside the
providers' own usage and cost reports fetched from local fakes of their admin APIs; every
figure worked out by hand from the fixtures and the published prices. On both engines."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from decimal import Decimal as D
from zoneinfo import ZoneInfo

import anthropic
import openai
import pytest
import yaml
from admin_apis import FakeAdmin, anthropic_cost, anthropic_usage, openai_cost, openai_usage
from conftest import until
from prometheus_client import CollectorRegistry
from upstream import json_file

from exporter.cli.main import main
from exporter.config.load import parse_config
from exporter.config.schema import ConfigError
from exporter.reconcile.compare import Row, likely_cause
from exporter.reconcile.job import Reconciler, fetch_account
from exporter.reconcile.keys import matched, tails
from exporter.store.batches import prune
from exporter.store.reconcile import (
    Figures,
    fetch_states,
    mark_failed,
    ours,
    save_day,
    theirs,
)
from exporter.store.reconcile_collector import ReconcileCollector
from exporter.store.writer import History
from exporter.telemetry.background import HistoryMetrics, ReconcileMetrics

OPENAI_ADMIN = "sk-admin-openai-TEST-SECRET-0123456789"
ANTHROPIC_ADMIN = "sk-ant-admin01-TEST-SECRET-0123456789"
KEYS = {"SEARCH_KEY": "sk-search-9876543210", "SUPPORT_KEY": "sk-ant-support-0123456789",
        "OPENAI_ADMIN_KEY": OPENAI_ADMIN, "ANTHROPIC_ADMIN_KEY": ANTHROPIC_ADMIN}
GPT4O, SONNET = "gpt-4o-2024-08-06", "claude-sonnet-4-5-20250929"
NOT_SEEN = "fewer tokens than billed: traffic that bypassed the gateway, or requests it " \
           "could not meter"
INSTANT = (0.0, 0.0, 0.0, 0.0)  # the client's backoff, in the tests


def accounts(openai_url: str, anthropic_url: str) -> list[dict]:
    return [{"name": "openai-main", "provider": "openai", "admin_key_env": "OPENAI_ADMIN_KEY",
             "base_url": openai_url, "services": ["openai"],
             "api_keys": {"key_search": "search-team"}},
            {"name": "anthropic-main", "provider": "anthropic",
             "admin_key_env": "ANTHROPIC_ADMIN_KEY", "base_url": anthropic_url,
             "services": ["anthropic"], "api_keys": {"apikey_01support": "support-team"}}]


@pytest.fixture
async def fakes(aiohttp_server):
    """Both providers' admin APIs, and the config of an account at each."""
    oa, an = FakeAdmin("openai", OPENAI_ADMIN), FakeAdmin("anthropic", ANTHROPIC_ADMIN)
    urls = [str((await aiohttp_server(f.app())).make_url("")).rstrip("/") for f in (oa, an)]
    return oa, an, accounts(*urls)


def bill(oa: FakeAdmin, an: FakeAdmin, day: str) -> None:
    """The providers' figures of `day`: OpenAI saw the gateway's two requests of the
    search-team key and a third of it that bypassed the gateway, and one of a key the
    account does not map; Anthropic saw the gateway's one request, and a web search."""
    oa.set("completions", day, [openai_usage(GPT4O, "key_search", 3, 3 * 1117, 3 * 1024, 138),
                                openai_usage(GPT4O, "key_other", 1, 500, 0, 20)])
    # gpt-4o's published prices per million: input $2.50, cached input $1.25, output $10.
    oa.set("costs", day, [openai_cost(f"{GPT4O}, input", "0.0019475"),  # (279 + 500) x 2.50
                          openai_cost(f"{GPT4O}, cached input", "0.00384"),  # 3072 x 1.25
                          openai_cost(f"{GPT4O}, output", "0.00158")])  # 158 x 10
    an.set("messages", day, [anthropic_usage(SONNET, "apikey_01support", 50, 10000, 2000, 500,
                                             320)])
    # claude-sonnet-4-5 per million: input $3, cache read $0.30, 5-minute write $3.75,
    # 1-hour write $6, output $15; in cents, as decimal strings.
    an.set("cost_report", day, [
        anthropic_cost(SONNET, "Claude Sonnet 4.5 Usage - Input Tokens",
                       "uncached_input_tokens", "0.015"),  # 50 x 3 = $0.00015
        anthropic_cost(SONNET, "Claude Sonnet 4.5 Usage - Cache Read", "cache_read_input_tokens",
                       "0.3"),  # 10000 x 0.30 = $0.003
        anthropic_cost(SONNET, "Claude Sonnet 4.5 Usage - Cache Write 5m",
                       "cache_creation.ephemeral_5m_input_tokens", "0.75"),  # 2000 x 3.75
        anthropic_cost(SONNET, "Claude Sonnet 4.5 Usage - Cache Write 1h",
                       "cache_creation.ephemeral_1h_input_tokens", "0.3"),  # 500 x 6
        anthropic_cost(SONNET, "Claude Sonnet 4.5 Usage - Output Tokens", "output_tokens",
                       "0.48"),  # 320 x 15 = $0.0048
        anthropic_cost(None, "Web Search", None, "1.0")])  # $0.01, for no model


def row(day, account, provider, model, api_key, fee, their_fee, requests, their_requests,
        tokens, their_tokens, cause=""):
    drift = None if their_fee is None else round(fee - their_fee, 10) + 0.0
    share = None if their_fee is None else round((fee - their_fee) / their_fee, 6) + 0.0
    out = {"day": day, "account": account, "provider": provider, "model": model,
           "api_key": api_key, "fee_usd": fee, "provider_fee_usd": their_fee,
           "drift_usd": drift, "drift_share": share, "requests": requests,
           "provider_requests": their_requests}
    for name, ours_, theirs_ in zip(("input_uncached", "cache_read", "cache_write", "output"),
                                   tokens, their_tokens, strict=True):
        out[f"{name}_tokens"], out[f"provider_{name}_tokens"] = ours_, theirs_
    return {**out, "estimated_tokens": 0, "likely_cause": cause}


def expected(day: str) -> list[dict]:
    """Worked out by hand: ours is 2 x (93 uncached + 1024 cached input, 46 output) of
    gpt-4o at $0.0019725 each, and 1 Claude message of 50 + 10000 read + 2500 written +
    320 output at $0.01845 (tests/test_sdk_end_to_end.py's FEES, from the same prices)."""
    oa, an = ("openai-main", "openai"), ("anthropic-main", "anthropic")
    gpt_ours = (186, 2048, 0, 92)
    claude = (50, 10000, 2500, 320)
    return [
        # The largest drift first: Anthropic's web search, which no model of ours carries.
        row(day, *an, "none", "*", 0.0, 0.01, 0, None, (0, 0, 0, 0), (0, 0, 0, 0),
            "billed for no model (server tools, storage): compare it as a whole"),
        # $0.003945 ours against $0.0019475 + $0.00384 + $0.00158 = $0.0073675 billed.
        row(day, *oa, GPT4O, "*", 0.003945, 0.0073675, 2, 4, gpt_ours, (779, 3072, 0, 158),
            NOT_SEEN),
        row(day, *oa, GPT4O, "search-team", 0.003945, None, 2, 3, gpt_ours,
            (279, 3072, 0, 138), NOT_SEEN),
        row(day, *oa, GPT4O, "unmapped:key_other", 0.0, None, 0, 1, (0, 0, 0, 0),
            (500, 0, 0, 20), "their key is in no api_keys entry of the account: map it to "
            "our label"),
        # Anthropic's bill agrees to the cent: 0.015 + 0.3 + 0.75 + 0.3 + 0.48 = 1.845 cents.
        row(day, *an, SONNET, "*", 0.01845, 0.01845, 1, None, claude, claude),
        row(day, *an, SONNET, "support-team", 0.01845, None, 1, None, claude, claude),
    ]


async def fill_history(gateway, replay, db) -> str:
    """Two gpt-4o requests of search-team and one Claude message of support-team through
    the gateway, by the official SDKs; the UTC day they were made."""
    replay.routes["/v1/chat/completions"] = json_file("openai_chat_cached.json")
    replay.routes["/v1/messages"] = json_file("anthropic_message.json")
    history = History(db, HistoryMetrics(CollectorRegistry()), linger=0)
    gw = await gateway(history=history, env=KEYS, api_keys=[
        {"name": "search-team", "key_env": "SEARCH_KEY"},
        {"name": "support-team", "key_env": "SUPPORT_KEY"}])
    search = openai.AsyncOpenAI(base_url=gw.url + "/openai/v1", api_key=KEYS["SEARCH_KEY"],
                                max_retries=0)
    for _ in range(2):
        await search.chat.completions.create(model="gpt-4o", messages=[
            {"role": "user", "content": "What is in the image?"}])
    support = anthropic.AsyncAnthropic(base_url=gw.url + "/anthropic",
                                       api_key=KEYS["SUPPORT_KEY"], max_retries=0)
    await support.messages.create(model="claude-haiku-4-5", max_tokens=512, messages=[
        {"role": "user", "content": "Summarise the document."}])
    first = await gw.records.wait(3)
    await until(lambda: history.queue.qsize() == 0 and history.lag() == 0)
    return dt.datetime.fromtimestamp(first.started, dt.UTC).date().isoformat()


def openai_config(account: dict):
    """A config of the openai service and of one account."""
    return parse_config({"services": [{"name": "openai", "base_url": "http://x"}],
                         "reconcile": [account]}, KEYS)


def both_accounts(reconcile: list[dict]):
    """A config of both services, and of the accounts `reconcile`."""
    return parse_config({"services": [{"name": "openai", "base_url": "http://x"},
                                      {"name": "anthropic", "base_url": "http://x",
                                       "provider": "anthropic"}],
                         "reconcile": reconcile}, KEYS)


async def filled_and_fetched(gateway, replay, db, fakes):
    """The history filled through the gateway, both bills of its day fetched; the day, the
    config of both accounts, and when they were fetched."""
    oa, an, reconcile = fakes
    day = await fill_history(gateway, replay, db)
    bill(oa, an, day)
    config = both_accounts(reconcile)
    now = time.time()
    for account in config.reconcile:
        await asyncio.to_thread(fetch_account, db, account, KEYS, now=now, backoff=INSTANT,
                                days=[day])
    return day, config, now


def write_config(tmp_path, db, reconcile) -> str:
    history = {"url": db.target} if db.postgresql else {"path": db.target}
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({
        "services": [{"name": "openai", "base_url": "https://api.openai.com"},
                     {"name": "anthropic", "base_url": "https://api.anthropic.com",
                      "provider": "anthropic"}],
        "history": history, "reconcile": reconcile}))
    return str(path)


async def cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    status = await asyncio.to_thread(main, ["reconcile", *args])
    out, err = capsys.readouterr()
    return status, out, err


async def test_reconcile_compares_the_gateways_history_with_both_bills(
        gateway, replay, db, fakes, tmp_path, capsys, monkeypatch, caplog):
    oa, an, reconcile = fakes
    day = await fill_history(gateway, replay, db)
    bill(oa, an, day)
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    config = write_config(tmp_path, db, reconcile)
    caplog.set_level(logging.DEBUG)
    status, out, err = await cli(capsys, "--config", config, "--from", day, "--to", day,
                                 "--fetch", "--format", "json")
    assert (status, err) == (0, "")
    assert json.loads(out) == expected(day)
    # What was asked, as the providers document it; the admin keys in headers only.
    usage = oa.asked("completions")[0]
    assert ("group_by", "model") in usage.query and ("group_by", "api_key_id") in usage.query
    assert ("bucket_width", "1d") in usage.query
    assert {s.path.rsplit("/", 1)[1] for s in oa.seen} == {
        "completions", "embeddings", "images", "audio_speeches", "audio_transcriptions",
        "costs"}
    assert ("group_by", "line_item") in oa.asked("costs")[0].query
    message = an.asked("messages")[0]
    assert ("group_by[]", "model") in message.query and \
        ("group_by[]", "api_key_id") in message.query
    assert ("group_by[]", "description") in an.asked("cost_report")[0].query
    assert message.headers["anthropic-version"] == "2023-06-01"
    assert not any(OPENAI_ADMIN in str(s.query) or ANTHROPIC_ADMIN in str(s.query)
                   for s in oa.seen + an.seen)
    # Stored: the same comparison without fetching, as a table and as CSV.
    seen = len(oa.seen) + len(an.seen)
    status, out, err = await cli(capsys, "--config", config, "--from", day, "--to", day)
    assert (status, len(oa.seen) + len(an.seen)) == (0, seen)
    d, gpt, sonnet = day, GPT4O.ljust(len(SONNET)), SONNET
    cause = f"{NOT_SEEN}\n"
    assert out == (
        "day         account         model                       api_key             requests"
        "  input uncached  cache read   cache write  output   fee USD             drift USD"
        "   drift    likely cause\n"
        f"{d}  anthropic-main  none                        *                   0/-       0/0"
        "             0/0          0/0          0/0      0/0.01              -0.01       "
        "-100.0%  billed for no model (server tools, storage): compare it as a whole\n"
        f"{d}  openai-main     {gpt}  *                   2/4       186/779         "
        "2048/3072    0/0          92/158   0.003945/0.0073675  -0.0034225  -46.5%   " + cause
        + f"{d}  openai-main     {gpt}  search-team         2/3       186/279         "
        "2048/3072    0/0          92/138   0.003945/-          -           -        " + cause
        + f"{d}  openai-main     {gpt}  unmapped:key_other  0/1       0/500           "
        "0/0          0/0          0/20     0/-                 -           -        their "
        "key is in no api_keys entry of the account: map it to our label\n"
        f"{d}  anthropic-main  {sonnet}  *                   1/-       50/50           "
        "10000/10000  2500/2500    320/320  0.01845/0.01845     0           +0.0%\n"
        f"{d}  anthropic-main  {sonnet}  support-team        1/-       50/50           "
        "10000/10000  2500/2500    320/320  0.01845/-           -           -\n")
    status, out, err = await cli(capsys, "--config", config, "--from", day, "--to", day,
                                 "--format", "csv")
    lines = out.splitlines()
    assert lines[0].startswith("day,account,provider,model,api_key,fee_usd,provider_fee_usd,"
                               "drift_usd,drift_share,requests,provider_requests,")
    # The share: -34225 / 73675, to six places.
    assert lines[2].startswith(f"{day},openai-main,openai,{GPT4O},*,0.003945,0.0073675,"
                               "-0.0034225,-0.46454,2,4,186,779,2048,3072,0,0,92,158,0,")
    assert OPENAI_ADMIN not in caplog.text and ANTHROPIC_ADMIN not in caplog.text


async def test_late_figures_are_fetched_again_until_two_fetches_agree(db, fakes):
    """A day's figures that grow on a later fetch replace the first whole; the day is
    settled when two fetches six hours apart or more agree, and then no longer fetched
    once out of refetch_days."""
    oa, an, reconcile = fakes
    db.migrate()
    account = parse_config({"services": [{"name": "anthropic", "base_url": "http://x",
                                          "provider": "anthropic"}],
                            "reconcile": [{**reconcile[1], "refetch_days": 1,
                                           "backfill_days": 3}]}, KEYS).reconcile[0]
    now = dt.datetime(2026, 12, 4, 6, tzinfo=dt.UTC).timestamp()
    # Published late: the 2nd without its output yet, the 3rd empty.
    an.set("messages", "2026-12-02", [anthropic_usage(SONNET, "apikey_01support", 50, 0, 0, 0,
                                                      0)])
    an.set("cost_report", "2026-12-02", [anthropic_cost(SONNET, "Input", "input", "0.015")])
    got = await asyncio.to_thread(fetch_account, db, account, KEYS, now=now, backoff=INSTANT)
    assert got.days == ["2026-12-01", "2026-12-02", "2026-12-03"] and not got.failed
    an.set("messages", "2026-12-02", [anthropic_usage(SONNET, "apikey_01support", 50, 0, 0, 0,
                                                      320)])
    an.set("cost_report", "2026-12-02", [anthropic_cost(SONNET, "Input", "input", "0.015"),
                                         anthropic_cost(SONNET, "Output", "output", "0.48")])
    # A retry five minutes later agrees on the 3rd, but proves nothing yet.
    await asyncio.to_thread(fetch_account, db, account, KEYS, now=now + 300, backoff=INSTANT,
                            days=["2026-12-03"])
    assert not fetch_states(db, "anthropic-main")["2026-12-03"].stable
    await asyncio.to_thread(fetch_account, db, account, KEYS, now=now + 6 * 3600 + 300,
                            backoff=INSTANT)
    usage, fees = theirs(db, "anthropic-main", "2026-12-02", "2026-12-03")
    assert [(f.day, f.api_key, f.input_uncached, f.output) for f in usage] == [
        ("2026-12-02", "support-team", 50, 320)]
    assert fees == {("2026-12-02", SONNET): pytest.approx(0.00495)}  # 0.495 cents
    states = fetch_states(db, "anthropic-main")
    assert (states["2026-12-02"].stable, states["2026-12-03"].stable) == (False, True)
    # The next day: the 2nd is past refetch_days, but unsettled, so fetched again (with
    # the days up to the new one, the 4th, in the same window).
    got = await asyncio.to_thread(fetch_account, db, account, KEYS, now=now + 86400,
                                  backoff=INSTANT)
    assert got.days == ["2026-12-02", "2026-12-03", "2026-12-04"]
    assert fetch_states(db, "anthropic-main")["2026-12-02"].stable
    later = await asyncio.to_thread(fetch_account, db, account, KEYS, now=now + 86400 + 60,
                                    backoff=INSTANT)
    assert later.days == ["2026-12-04"]  # the 2nd is settled: only refetch_days' day


async def test_openai_cache_writes_and_uncached_input_as_its_api_describes_them(db, fakes):
    """input_tokens hold the cache's reads and writes: 1,500 with 1,000 read and 300
    written are 200 uncached; where input_uncached_tokens is sent, it is taken as is."""
    oa, an, reconcile = fakes
    db.migrate()
    account = openai_config(reconcile[0]).reconcile[0]
    day = "2026-12-02"
    oa.set("completions", day, [
        {**openai_usage(GPT4O, "key_search", 1, 1500, 1000, 10), "input_cache_write_tokens": 300},
        {**openai_usage("gpt-5", "key_search", 1, 900, 0, 5), "input_uncached_tokens": 700,
         "input_cache_write_tokens": 200}])
    got = await asyncio.to_thread(fetch_account, db, account, KEYS, now=time.time(),
                                  backoff=INSTANT, days=[day])
    assert not got.failed
    assert sorted((f.model, f.input_uncached, f.cache_read, f.cache_write, f.output)
                  for f in got.usage[day].values()) == [(GPT4O, 200, 1000, 300, 10),
                                                        ("gpt-5", 700, 0, 200, 5)]


async def test_busy_and_failing_admin_apis_are_retried(db, fakes):
    """A 429 and a 500 are retried after a backoff, then the pages are read."""
    oa, an, reconcile = fakes
    db.migrate()
    account = openai_config({**reconcile[0], "refetch_days": 1, "backfill_days": 1}).reconcile[0]
    oa.set("completions", "2026-12-03", [openai_usage(GPT4O, "key_search", 1, 10, 0, 5)])
    oa.faults = {"/v1/organization/usage/completions": [429], "/v1/organization/costs": [500]}
    waits: list[float] = []
    got = await asyncio.to_thread(fetch_account, db, account, KEYS, backoff=(0.5, 2, 2, 2),
                                  sleep=waits.append, now=dt.datetime(
                                      2026, 12, 4, tzinfo=dt.UTC).timestamp())
    assert not got.failed
    assert waits == [0.0, 0.5]  # the 429's Retry-After: 0; the 500's first backoff
    assert (len(oa.asked("completions")), len(oa.asked("costs"))) == (2, 2)
    assert [(f.api_key, f.requests) for f in theirs(db, "openai-main", "2026-12-03",
                                                     "2026-12-03")[0]] == [("search-team", 1)]


async def test_a_refused_key_is_one_line_and_a_metric_naming_the_account(db, fakes, caplog):
    oa, an, reconcile = fakes
    db.migrate()
    config = openai_config(reconcile[0])
    wrong = {**KEYS, "OPENAI_ADMIN_KEY": "sk-admin-WRONG-SECRET-987654321"}
    registry = CollectorRegistry()
    job = Reconciler(config.reconcile, db, ReconcileMetrics(registry).failures, wrong,
                     backoff=INSTANT, clock=lambda: dt.datetime(
                         2026, 12, 4, tzinfo=dt.UTC).timestamp())
    with caplog.at_level(logging.INFO, logger="exporter.reconcile"):
        await job.tick()
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("exporter.reconcile")
             and r.levelno >= logging.WARNING]  # the failure's (INFO: when it fetches)
    assert lines == ["reconcile: account openai-main (openai): 35 of 35 days not fetched "
                     "(auth): /v1/organization/usage/completions: 401: the admin key was "
                     "refused (not an admin key, revoked, or without the usage permission)"]
    assert "WRONG-SECRET" not in caplog.text
    value = registry.get_sample_value
    assert value("llm_reconcile_fetch_failures_total",
                 {"account": "openai-main", "cause": "auth"}) == 1
    assert value("llm_reconcile_fetch_failures_total",
                 {"account": "openai-main", "cause": "malformed"}) == 0
    assert len(oa.seen) == 1  # a refused key is not tried again at once
    states = fetch_states(db, "openai-main")
    assert len(states) == 35 and {s.cause for s in states.values()} == {"auth"}


def test_our_requests_are_those_a_provider_counts(db):
    """An answer, and a stream its client left after billing began, count; the gateway's
    own refusal (a spent budget) and an upstream's 500 do not: the provider saw neither
    as a model request."""
    from exporter.record import RequestRecord, Usage
    history = History(db, HistoryMetrics(CollectorRegistry()), linger=0)
    at = dt.datetime(2026, 12, 2, 10, tzinfo=dt.UTC).timestamp()
    for i, (code, error, fee) in enumerate([(200, "none", "0.001"),
                                            (499, "client_disconnect", "0.0005"),
                                            (429, "budget_exceeded", "0"),
                                            (500, "upstream_error", "0")]):
        r = RequestRecord(f"r{i}", at + i, "openai", "openai", "team", "chat", model="gpt-4o",
                          code=code, error_type=error)
        r.usage = Usage(input_text=100 if fee != "0" else 0)
        r.fee = D(fee)
        history.put(r)
    history.start()
    history.close()
    [row] = ours(db, ("openai",), "2026-12-02", "2026-12-02")
    assert (row.requests, row.input_uncached) == (2, 200)


async def test_a_fetch_whose_lease_was_lost_meanwhile_stores_nothing(db, fakes):
    """The job's task is cancelled when its lease is lost, but a fetch in its thread goes
    on: it must not write what another replica may be writing."""
    import threading
    oa, an, reconcile = fakes
    bill(oa, an, "2026-12-02")
    db.migrate()
    account = openai_config(reconcile[0]).reconcile[0]
    stop = threading.Event()
    stop.set()
    got = await asyncio.to_thread(fetch_account, db, account, KEYS, now=time.time(),
                                  backoff=INSTANT, days=["2026-12-02"], stop=stop)
    assert got is None and fetch_states(db, "openai-main") == {}
    assert len(oa.asked("completions")) == 1  # fetched, not stored


def test_a_backfill_past_the_historys_retention_is_refused():
    with pytest.raises(ConfigError) as e:
        parse_config({"services": [{"name": "openai", "base_url": "http://x"}],
                      "history": {"retention_days": 30},
                      "reconcile": [{**accounts("http://o", "http://a")[0],
                                     "backfill_days": 35}]}, KEYS)
    assert e.value.problems == ["reconcile[0].backfill_days: 35 is more than "
                                "history.retention_days (30): days the history no longer "
                                "keeps cannot be compared"]


def test_failed_days_count_only_those_the_job_still_fetches(db, fakes):
    """With backfill_days 7, on 10 December the job fetches the 3rd to the 9th: a day of
    November that failed long ago is no failure to fix, and no alert."""
    oa, an, reconcile = fakes
    db.migrate()
    config = openai_config({**reconcile[0], "backfill_days": 7})
    at = dt.datetime(2026, 12, 10, 6, tzinfo=dt.UTC).timestamp()
    for day in ("2026-11-20", "2026-12-02", "2026-12-03", "2026-12-09"):
        mark_failed(db, "openai-main", day, at, "server_error")
    registry = CollectorRegistry()
    ReconcileCollector(registry, db, config.reconcile, clock=lambda: at)
    assert registry.get_sample_value("llm_reconcile_failed_days",
                                     {"account": "openai-main"}) == 2  # the 3rd and the 9th


async def test_a_redirect_is_not_followed_with_the_admin_key(db, fakes, aiohttp_server):
    """urllib would send the key's header to wherever a 3xx points: the fetch refuses it."""
    from aiohttp import web
    oa, an, reconcile = fakes
    reached = []

    async def elsewhere(request):
        reached.append(dict(request.headers))
        return web.json_response({"object": "page", "data": [], "has_more": False})

    app = web.Application()
    app.router.add_get("/{tail:.*}", elsewhere)
    other = str((await aiohttp_server(app)).make_url("/steal"))
    oa.faults["/v1/organization/usage/completions"] = [other]
    db.migrate()
    account = openai_config(reconcile[0]).reconcile[0]
    got = await asyncio.to_thread(fetch_account, db, account, KEYS, now=time.time(),
                                  backoff=INSTANT, days=["2026-12-02"])
    assert got.failed == {"2026-12-02": "rejected"} and reached == []
    assert got.problem == ("/v1/organization/usage/completions: 302: a redirect, not "
                           "followed (the admin key would go with it): check base_url")


async def test_a_page_cursor_that_repeats_fails_the_fetch_instead_of_looping(db, fakes):
    oa, an, reconcile = fakes
    oa.faults["/v1/organization/usage/completions"] = ["same page"]
    db.migrate()
    account = openai_config(reconcile[0]).reconcile[0]
    got = await asyncio.to_thread(fetch_account, db, account, KEYS, now=time.time(),
                                  backoff=INSTANT, days=["2026-12-02"])
    assert got.failed == {"2026-12-02": "malformed"}
    assert got.problem == "/v1/organization/usage/completions: next_page repeats"
    assert len(oa.asked("completions")) == 2  # the first page, and the one that repeated


async def test_an_answer_cut_short_is_unreachable_not_a_crash(db, unused_tcp_port):
    """http.client's IncompleteRead is no URLError: it is retried and then fails the days
    as unreachable, counted, where it used to escape the fetch."""
    async def cut(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"data\"")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(cut, "127.0.0.1", unused_tcp_port)
    db.migrate()
    account = openai_config({**accounts("", "")[0],
                             "base_url": f"http://127.0.0.1:{unused_tcp_port}"}).reconcile[0]
    async with server:
        got = await asyncio.to_thread(fetch_account, db, account, KEYS, now=time.time(),
                                      backoff=INSTANT, days=["2026-12-02"])
    assert got.failed == {"2026-12-02": "unreachable"}
    assert fetch_states(db, "openai-main")["2026-12-02"].cause == "unreachable"


async def test_a_malformed_bucket_fails_its_day_and_stores_nothing_of_it(db, fakes):
    oa, an, reconcile = fakes
    db.migrate()
    account = openai_config({**reconcile[0], "refetch_days": 3, "backfill_days": 3}).reconcile[0]
    now = dt.datetime(2026, 12, 4, tzinfo=dt.UTC).timestamp()
    for day in ("2026-12-01", "2026-12-02", "2026-12-03"):
        oa.set("completions", day, [openai_usage(GPT4O, "key_search", 1, 10, 0, 5)])
        oa.set("costs", day, [openai_cost(f"{GPT4O}, output", "0.00005")])
    await asyncio.to_thread(fetch_account, db, account, KEYS, now=now, backoff=INSTANT)
    # Later the 2nd has grown, but its cost page is broken: nothing of it is stored.
    oa.set("completions", "2026-12-02", [openai_usage(GPT4O, "key_search", 9, 90, 0, 45)])
    oa.malformed.add(("costs", "2026-12-02"))
    got = await asyncio.to_thread(fetch_account, db, account, KEYS, now=now + 60,
                                  backoff=INSTANT)
    assert got.failed == {"2026-12-02": "malformed"}
    usage, fees = theirs(db, "openai-main", "2026-12-01", "2026-12-03")
    assert sorted((f.day, f.requests) for f in usage) == [
        ("2026-12-01", 1), ("2026-12-02", 1), ("2026-12-03", 1)]  # the 2nd as it was
    states = fetch_states(db, "openai-main")
    assert (states["2026-12-02"].status, states["2026-12-02"].cause) == ("failed", "malformed")
    assert states["2026-12-03"].status == "ok"
    # A page that is no JSON at all fails every day of the fetch.
    oa.faults = {"/v1/organization/usage/completions": ["not json"]}
    got = await asyncio.to_thread(fetch_account, db, account, KEYS, now=now + 120,
                                  backoff=INSTANT)
    assert set(got.failed.values()) == {"malformed"} and len(got.failed) == 3


async def test_a_day_not_fetched_yet_is_no_drift(gateway, replay, db, fakes):
    """Just after midnight UTC yesterday holds all of our fees and none of the provider's
    until the job fetches it: it is not compared (it was a 100% drift every morning)."""
    oa, an, reconcile = fakes
    day = await fill_history(gateway, replay, db)
    bill(oa, an, day)
    config = both_accounts(reconcile)
    after_midnight = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp() \
        + 86400 + 1800
    registry = CollectorRegistry()
    ReconcileCollector(registry, db, config.reconcile, clock=lambda: after_midnight)
    assert [s for f in registry.collect() if f.name == "llm_reconcile_drift_usd"
            for s in f.samples] == []
    await asyncio.to_thread(fetch_account, db, config.reconcile[0], KEYS, now=after_midnight,
                            backoff=INSTANT, days=[day])
    registry = CollectorRegistry()
    ReconcileCollector(registry, db, config.reconcile, clock=lambda: after_midnight)
    gpt = {"account": "openai-main", "provider": "openai", "model": GPT4O, "period": "day"}
    assert registry.get_sample_value("llm_reconcile_drift_usd", gpt) == pytest.approx(
        -0.0034225, abs=1e-12)  # fetched: compared, as in the test below
    assert registry.get_sample_value("llm_reconcile_drift_usd", {
        **gpt, "account": "anthropic-main", "provider": "anthropic",
        "model": SONNET}) is None  # still not fetched


async def test_drift_metrics_of_the_last_day_and_the_month(gateway, replay, db, fakes):
    day, config, fetched = await filled_and_fetched(gateway, replay, db, fakes)
    tomorrow = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp() + 86400 + 60
    registry = CollectorRegistry()
    ReconcileCollector(registry, db, config.reconcile, clock=lambda: tomorrow)
    value = registry.get_sample_value
    for period in ("day", "month"):
        gpt = {"account": "openai-main", "provider": "openai", "model": GPT4O,
               "period": period}
        assert value("llm_reconcile_drift_usd", gpt) == pytest.approx(-0.0034225, abs=1e-12)
        assert value("llm_reconcile_provider_fee_usd", gpt) == pytest.approx(0.0073675,
                                                                            abs=1e-12)
        claude = {"account": "anthropic-main", "provider": "anthropic", "model": SONNET,
                  "period": period}
        assert value("llm_reconcile_drift_usd", claude) == pytest.approx(0.0, abs=1e-12)
        none = {**claude, "model": "none"}
        assert value("llm_reconcile_drift_usd", none) == pytest.approx(-0.01, abs=1e-12)
    assert value("llm_reconcile_last_success_timestamp_seconds",
                 {"account": "openai-main"}) == fetched
    assert value("llm_reconcile_failed_days", {"account": "openai-main"}) == 0
    assert value("llm_reconcile_drift_alert_ratio", {"account": "openai-main"}) == 0.02


async def test_their_key_ids_map_to_ours_by_the_keys_last_characters(db, fakes, caplog):
    """An id the table does not map is looked up in Anthropic's key list: its hint's tail
    is one of our keys' (support-team's ...6789); another's matches none of ours."""
    oa, an, reconcile = fakes
    db.migrate()
    config = parse_config({"services": [{"name": "anthropic", "base_url": "http://x",
                                         "provider": "anthropic"}],
                           "api_keys": [{"name": "support-team", "key_env": "SUPPORT_KEY"},
                                        {"name": "search-team", "key_env": "SEARCH_KEY"}],
                           "reconcile": [{**reconcile[1], "api_keys": {}, "refetch_days": 1,
                                          "backfill_days": 1}]}, KEYS)
    an.keys = [{"id": "apikey_01new", "type": "api_key", "name": "support (rotated)",
                "partial_key_hint": "sk-ant-api03-sup...6789", "status": "active"},
               {"id": "apikey_01lab", "type": "api_key", "name": "lab",
                "partial_key_hint": "sk-ant-api03-lab...zzzz", "status": "active"}]
    an.set("messages", "2026-12-03", [
        anthropic_usage(SONNET, "apikey_01new", 10, 0, 0, 0, 5),
        anthropic_usage(SONNET, "apikey_01lab", 7, 0, 0, 0, 1)])
    ours = tails(config.api_keys, KEYS)  # the last 8 characters, nothing more
    assert ours == {"support-team": "23456789", "search-team": "76543210"}
    got = await asyncio.to_thread(
        fetch_account, db, config.reconcile[0], KEYS, backoff=INSTANT, tails=ours,
        now=dt.datetime(2026, 12, 4, tzinfo=dt.UTC).timestamp())
    assert not got.failed
    assert sorted((f.api_key, f.input_uncached) for f in theirs(
        db, "anthropic-main", "2026-12-03", "2026-12-03")[0]) == [
        ("support-team", 10), ("unmapped:apikey_01lab", 7)]
    assert len(an.asked("api_keys")) == 2  # both pages of the list
    assert KEYS["SUPPORT_KEY"] not in caplog.text


def test_a_tail_two_of_our_keys_share_maps_neither():
    hints = {"key_a": "6789", "key_b": "wxyz"}
    assert matched(hints, {"one": "abcd6789", "two": "efgh6789"}) == {}
    assert matched(hints, {"one": "abcd6789", "two": "efghwxyz"}) == {"key_a": "one",
                                                                     "key_b": "two"}
    # Nor a tail two of theirs share: one of them is not our key.
    assert matched({"key_a": "6789", "key_c": "6789"}, {"one": "abcd6789"}) == {}


def test_the_retention_deletes_the_providers_figures_with_our_requests(db):
    db.migrate()
    for day in ("2026-09-01", "2026-09-02"):
        save_day(db, "openai-main", day, [Figures(day, GPT4O, "search-team", 1, 10)],
                 {GPT4O: 0.01}, 0.0, "d")
    now = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC).timestamp()
    conn = db.dedicated()
    try:  # 90 days before noon of 1 December: noon of 2 September
        prune(conn, now, 90, dt.UTC)
    finally:
        conn.close()
    usage, fees = theirs(db, "openai-main", "2026-08-01", "2026-12-31")
    assert [f.day for f in usage] == ["2026-09-02"] and list(fees) == [("2026-09-02", GPT4O)]
    assert list(fetch_states(db, "openai-main")) == ["2026-09-02"]


async def test_the_cost_report_has_a_reconciliation_section(gateway, replay, db, fakes):
    """Per account and UTC day, our fee beside the bill, in the cost report (both formats'
    content: its rows, and its sheet)."""
    import io

    import openpyxl

    from exporter.reports.make import render
    from exporter.reports.reconciliation import section
    from exporter.store.query import Filters
    day, _, _ = await filled_and_fetched(gateway, replay, db, fakes)
    midnight = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp()
    utc = ZoneInfo("UTC")
    period = Filters(midnight, midnight + 86400, utc)
    [reconciled] = section(db, period)
    [table] = reconciled.tables
    rows = [{k: pytest.approx(v, abs=1e-12) if isinstance(v, float) else v
             for k, v in r.items()} for r in table.rows]
    assert rows == [
        # Anthropic bills the message's $0.01845 and a $0.01 web search of no model.
        {"day": day, "account": "anthropic-main", "provider": "anthropic",
         "fee_usd": 0.01845, "provider_fee_usd": 0.02845, "drift_usd": -0.01,
         "drift_share": -0.01 / 0.02845},
        {"day": day, "account": "openai-main", "provider": "openai", "fee_usd": 0.003945,
         "provider_fee_usd": 0.0073675, "drift_usd": -0.0034225,
         "drift_share": -0.0034225 / 0.0073675},
        {"day": "Total", "fee_usd": 0.022395, "provider_fee_usd": 0.0358175,
         "drift_usd": -0.0134225}]
    book = openpyxl.load_workbook(io.BytesIO(await asyncio.to_thread(
        render, db, "cost", "xlsx", period)))
    assert "Reconciliation" in book.sheetnames
    assert section(db, Filters(midnight - 86400 * 9, midnight - 86400 * 8, utc)) == []


def tokens(ours, theirs, **more) -> Row:
    """A row of one model's day: ours and their (uncached, read, write, output) tokens."""
    names = ("input_uncached", "cache_read", "cache_write", "output")
    return Row("2026-12-03", "openai-main", "openai", GPT4O, "*", **{
        f"{n}_tokens": v for n, v in zip(names, ours, strict=True)}, **{
        f"provider_{n}_tokens": v for n, v in zip(names, theirs, strict=True)}, **more)


@pytest.mark.parametrize("row,cause", [
    (tokens((93, 0, 0, 46), (93, 1024, 0, 46)), "fewer cache read tokens than billed, the "
     "other categories alike: cached tokens lost (a stream's usage, a parser's miss?)"),
    (tokens((1117, 0, 0, 46), (93, 1024, 0, 46)),
     "cache reads counted as uncached input (a stream's usage lost?)"),
    (tokens((0, 0, 0, 0), (500, 0, 0, 20)),
     "traffic that bypassed the gateway (scope the account to its project or workspace)"),
    (tokens((93, 1024, 0, 40), (93, 1024, 0, 46), estimated_tokens=40),
     "estimated tokens: the upstream reported none for some requests"),
    (tokens((93, 1024, 0, 46), (93, 1024, 0, 46), fee_usd=0.0, drift_usd=-0.0019725),
     "unpriced model: add a price under pricing:"),
    # An override without a cache rate: 1024 cache reads at gpt-4o's $2.50, not $1.25.
    (tokens((93, 1024, 0, 46), (93, 1024, 0, 46), fee_usd=0.0032525, drift_usd=0.00128),
     "the same tokens priced apart: a price override, or a price that changed"),
    (tokens((93, 1024, 0, 46), (93, 1024, 0, 46), fee_usd=0.0019725, drift_usd=0.0), ""),
])
def test_a_drift_names_its_likely_cause(row, cause):
    assert likely_cause(row) == cause
