"""Cost by project, end user and tag: read from the key, the headers or the body, removed
before the request goes up, counted in the labels and the history, and sliced by the usage
API. Fees are worked out by hand from the fixture: openai_chat_cached.json is 93 uncached
input tokens, 1,024 cached and 46 output of gpt-4o-2024-08-06 at $2.50, $1.25 and $10 per
million: $0.0019725 a request."""

from __future__ import annotations

import hashlib
import math
import time
from decimal import Decimal as D

import anthropic
import openai
import pytest
from conftest import read_rows
from prometheus_client import CollectorRegistry
from test_api import write_history
from upstream import json_file

from exporter.record import RequestRecord, Usage
from exporter.telemetry.metrics import Metrics

CHAT = "/v1/chat/completions"
FEE = D("0.0019725")
KEY = "sk-test-attribution-0123456789"
ASK = [{"role": "user", "content": "What do tokens cost?"}]


def oa(gw, key: str = KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=key, base_url=gw.url + "/openai/v1", max_retries=0)


async def test_project_user_and_tags_from_the_headers_and_the_body(gateway, replay):
    replay.routes[CHAT] = json_file("openai_chat_cached.json")
    gw = await gateway(attribution={"tag_labels": ["feature"]})
    c = oa(gw)
    for user, feature in (("alice", "search"), ("bob", "search"), ("alice", "chat")):
        await c.chat.completions.create(
            model="gpt-4o", messages=ASK, user=user,
            extra_headers={"X-LLM-Project": "growth", "X-LLM-Tags": f"feature={feature}, "
                                                                     "env=prod"})
    await gw.records.wait(3)
    assert [(r.project, r.end_user, r.tags) for r in gw.records] == [
        ("growth", "alice", {"feature": "search", "env": "prod"}),
        ("growth", "bob", {"feature": "search", "env": "prod"}),
        ("growth", "alice", {"feature": "chat", "env": "prod"})]
    seen = {name.lower() for name in replay.seen[-1].headers}
    assert "x-request-id" in seen and not {"x-llm-project", "x-llm-tags"} & seen  # kept here
    assert gw.value("llm_cost_usd_total", project="growth") == pytest.approx(float(3 * FEE))
    assert gw.value("llm_requests_total", project="growth", tag_feature="search") == 2
    await c.close()


async def test_a_managed_keys_project_is_not_the_headers_to_change(gateway, replay):
    replay.routes[CHAT] = json_file("openai_chat_cached.json")
    gw = await gateway(require_api_key=True, api_keys=[
        {"name": "search-team", "sha256": hashlib.sha256(KEY.encode()).hexdigest(),
         "project": "search"}], services=[
        {"name": "openai", "base_url": gateway.upstream_url, "provider": "openai"}],
        attribution={"keep_headers": True})
    c = oa(gw)
    await c.chat.completions.create(model="gpt-4o", messages=ASK,
                                    extra_headers={"X-LLM-Project": "someone-else"})
    rec = await gw.records.wait(1)
    assert (rec.api_key, rec.project) == ("search-team", "search")
    sent = {k.lower(): v for k, v in replay.seen[-1].headers.items()}
    assert sent["x-llm-project"] == "someone-else"  # passed on, as configured
    await c.close()


async def test_anthropics_metadata_user_id_names_the_end_user(gateway, replay):
    replay.routes["/v1/messages"] = json_file("anthropic_message.json")
    gw = await gateway()
    c = anthropic.AsyncAnthropic(api_key=KEY, base_url=gw.url + "/anthropic", max_retries=0)
    await c.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=ASK,
                            metadata={"user_id": "user-7"})
    assert (await gw.records.wait(1)).end_user == "user-7"
    await c.close()


async def test_bad_attribution_is_cut_or_left_out_and_counted_never_refused(gateway, replay):
    replay.routes[CHAT] = json_file("openai_chat_cached.json")
    gw = await gateway(attribution={"projects": ["search", "growth"]})
    c = oa(gw)
    tags = ", ".join(f"k{i}=v" for i in range(12)) + ", =nokey, Bad Key=x, novalue"
    await c.chat.completions.create(model="gpt-4o", messages=ASK, extra_headers={
        "X-LLM-Project": "not-listed", "X-LLM-Tags": tags, "X-LLM-User": "u" * 300})
    await c.chat.completions.create(model="gpt-4o", messages=ASK,
                                    extra_body={"user": {"id": 5}})  # a user of no string
    first, second = await gw.records.wait(1), await gw.records.wait(2)
    assert (first.code, first.project, len(first.tags), len(first.end_user)) == (
        200, "other", 8, 128)
    assert (second.code, second.end_user) == (200, None)
    # project 1; tags: four past the eighth, and three malformed; user: one cut, one ignored.
    assert {f: gw.value("llm_attribution_rejected_total", field=f)
            for f in ("project", "tags", "user")} == {"project": 1, "tags": 7, "user": 2}
    await c.close()


def test_ten_thousand_projects_keep_the_metrics_bounded():
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_projects=50)
    for i in range(10_000):
        r = RequestRecord(f"r{i}", 1.0, "openai", "openai", "team", "chat", model="gpt-4o",
                          code=200, usage=Usage(input_text=1), project=f"p{i}",
                          end_user=f"user-{i}")
        metrics.observe(r)
    projects = {s.labels["project"] for m in registry.collect() for s in m.samples
                if "project" in s.labels}
    # 50 values at most, `none` and `other` among them: 48 projects, then `other`.
    assert len(projects) == 49 and "other" in projects and "p47" in projects
    assert not any("end_user" in s.labels or "user" in s.labels
                   for m in registry.collect() for s in m.samples)


def record(i: int, project: str, user: str | None, tags=None, fee: str = "0.01"):
    return RequestRecord(f"r{i}", 1_793_000_000.0 + i, "openai", "openai", "team", "chat",
                         model="gpt-4o", code=200, usage=Usage(input_text=10),
                         fee=D(fee), project=project, end_user=user, tags=tags)


ROWS = [record(1, "search", "alice", {"feature": "autocomplete"}, "0.01"),
        record(2, "search", "bob", {"feature": "autocomplete", "env": "prod"}, "0.02"),
        record(3, "growth", "alice", {"feature": "digest"}, "0.04"),
        record(4, "none", None, None, "0.08")]
RANGE = {"from": "1793000000", "to": "1793000100"}


@pytest.fixture
async def api(admin, db):
    return await admin(CollectorRegistry(), db=write_history(db, ROWS))


async def get(api, **params):
    r = await api.get("/api/usage", params={**RANGE, **params})
    body = await r.json()
    assert r.status == 200, body
    return [{k: v for k, v in row.items() if k in ("project", "user", "tag:feature",
                                                    "requests", "fee_usd", "model")}
            for row in body["data"]]


async def test_the_usage_api_groups_and_filters_by_project_user_and_tag(api, db):
    assert [r["project"] for r in read_rows(db)] == ["search", "search", "growth", "none"]
    assert await get(api, group_by="project", order="fee") == [
        {"project": "none", "requests": 1, "fee_usd": 0.08},
        {"project": "growth", "requests": 1, "fee_usd": 0.04},
        {"project": "search", "requests": 2, "fee_usd": 0.03}]
    assert await get(api, group_by="user", order="fee", limit="2") == [  # the top users
        {"user": None, "requests": 1, "fee_usd": 0.08},
        {"user": "alice", "requests": 2, "fee_usd": 0.05}]
    assert await get(api, user="alice") == [{"requests": 2, "fee_usd": 0.05}]
    assert await get(api, tag="feature:autocomplete") == [{"requests": 2, "fee_usd": 0.03}]
    assert await get(api, tag="feature:autocomplete,env:prod") == [
        {"requests": 1, "fee_usd": 0.02}]
    assert await get(api, group_by="tag:feature", order="fee") == [
        {"tag:feature": None, "requests": 1, "fee_usd": 0.08},
        {"tag:feature": "digest", "requests": 1, "fee_usd": 0.04},
        {"tag:feature": "autocomplete", "requests": 2, "fee_usd": 0.03}]
    assert await get(api, project="search,growth", group_by="model") == [
        {"model": "gpt-4o", "requests": 3, "fee_usd": 0.07}]


@pytest.mark.parametrize("params,name", [({"projec": "search"}, "projec"),
                                         ({"tag": "feature"}, "tag"),
                                         ({"group_by": "tag:Bad"}, "group_by")])
async def test_an_unknown_or_malformed_parameter_is_a_400_naming_it(api, params, name):
    r = await api.get("/api/usage", params={**RANGE, **params})
    assert (r.status, (await r.json())["error"]["parameter"]) == (400, name)


def test_a_history_from_before_attribution_reads_as_project_none(db, monkeypatch):
    """The migration adds the columns and makes the rollup again with the project in its
    key: a row written before it counts, as project none, in both."""
    from exporter.store import postgresql, schema, sqlite
    apply = schema.migrations.apply
    monkeypatch.setattr(schema.migrations, "apply",
                        lambda d: apply(d, stop_before="m014_attribution"))
    monkeypatch.setattr(schema, "POSTGRESQL_MIGRATIONS", schema.POSTGRESQL_MIGRATIONS[:2])
    monkeypatch.setattr(sqlite, "migrate_sqlite", schema.migrate_sqlite)
    monkeypatch.setattr(postgresql, "migrate_postgresql", schema.migrate_postgresql)
    db.migrate()  # the tables as the release before made them
    now = time.time()
    with db.connect(write=True) as conn:
        conn.dialect.ensure_partitions(conn, {int(now // 86400)})  # PostgreSQL's day
        conn.execute("INSERT INTO requests (request_id, started_at, service, provider, model, "
                     "api_key, operation, status, error_type, input_text, fee_usd, share) "
                     "VALUES ('old', ?, 'openai', 'openai', 'gpt-4o', 'team', "
                     "'chat', 200, 'none', 10, 0.5, 0)", [now])
    monkeypatch.undo()
    db.migrate()
    assert [(r["request_id"], r["project"], r["end_user"]) for r in read_rows(db)] == [
        ("old", "none", None)]
    assert [(r["project"], r["requests"], r["fee_usd"])
            for r in read_rows(db, "usage_rollup", "bucket")] == [("none", 1, 0.5)]


async def test_request_rows_name_their_project_user_and_tags(api):
    r = await api.get("/api/requests", params={**RANGE, "user": "bob"})
    [row] = (await r.json())["data"]
    assert (row["request_id"], row["project"], row["user"], row["tags"]) == (
        "r2", "search", "bob", '{"env":"prod","feature":"autocomplete"}')


async def test_the_top_users_by_the_hour_keep_the_requests_of_no_user(api):
    """The top N by a granularity keeps the group of requests with no user, or no tag."""
    top = await get(api, group_by="user", order="fee", limit="2", granularity="hour")
    assert [(r["user"], r["requests"]) for r in top] == [(None, 1), ("alice", 2)]
    top = await get(api, group_by="tag:feature", order="fee", limit="2", granularity="hour")
    assert [(r["tag:feature"], r["requests"]) for r in top] == [(None, 1), ("digest", 1)]


def test_a_keys_project_added_by_a_reload_is_a_label_value_however_full():
    from exporter.config.load import parse_config
    from exporter.gateway.proxy import Proxy
    services = [{"name": "openai", "base_url": "http://127.0.0.1:9"}]
    metrics = Metrics(CollectorRegistry(), max_projects=3)  # none, other and one more
    proxy = Proxy(parse_config({"services": services}, {}), metrics, {})
    assert metrics.project_label("from-a-header") == "from-a-header"  # the cap is reached
    proxy.reload(parse_config({"services": services, "api_keys": [
        {"name": "late", "sha256": "0" * 64, "project": "added"}]}, {}), {})
    assert metrics.project_label("added") == "added"
    assert metrics.project_label("another-header") == "other"


def test_label_combinations_are_capped_as_well_as_each_label():
    """1,000 keys and 100 projects are within their own caps, and would multiply."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, max_label_sets=10)
    for i in range(1000):
        metrics.observe(RequestRecord(f"r{i}", 1.0, "openai", "openai", f"key-{i:08x}",
                                      "chat", model="gpt-4o", code=200,
                                      usage=Usage(input_text=1), project=f"p{i % 100}"))
    sets = {(s.labels["api_key"], s.labels["project"]) for m in registry.collect()
            for s in m.samples if m.name == "llm_requests" and s.labels.get("code") == "200"}
    assert len(sets) == 11 and ("other", "other") in sets  # ten, then one for the rest
    metrics.holds.release(math.inf)  # as a scrape of the new series at 0 would
    total = sum(s.value for m in registry.collect() for s in m.samples
                if m.name == "llm_requests" and s.labels.get("code") == "200")
    assert total == 1000  # every request still counted
