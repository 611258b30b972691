"""End to end: the demo (the real gateway, its simulated upstream and traffic) scraped by a
real Prometheus with exemplar storage and the shipped rules; every dashboard query is run
as Grafana would run it, with its variables set to All and Grafana's macros substituted.

Grafana cannot run here; what it would send is what this test sends: each panel's PromQL to
Prometheus, each Infinity query's URL to the gateway's usage API, each download link.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import sqlite3
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import yaml
from conftest import need_binary, start, stop, until, wait_ok

from exporter.record import TOKEN_FIELDS
from grafana import __main__ as generator
from grafana.kit import API_UID

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parent.parent
SCRAPE = 1  # seconds: so rate() has samples within seconds
DEADLINE = 150  # seconds for every panel to have data
# Dashboards 1 to 5 draw from Prometheus; the request history only from the usage API.
PROMETHEUS_DASHBOARDS = ("llm-overview.json", "llm-rankings.json", "llm-details.json",
                         "llm-performance.json", "llm-spend.json", "llm-deployments.json")
# Panels without a query: the alert list shows Prometheus's rules, not query results.
NO_QUERY = {"alertlist", "row"}
# Panels whose query runs (an error fails) but may find nothing: the demo has no provider
# admin API to reconcile with (test_reconcile.py tests the figures behind them).
MAY_BE_EMPTY = {"Ours against the provider's bill, per day"}
PROVISIONED = ROOT / "grafana" / "provisioning" / "datasources" / "llm-usage-exporter.yml"
# What the dashboards' datasource variables default to (kit.py).
DATASOURCE_DEFAULTS = {"api": "llm-usage-api", "alerts": "llm-alertmanager-api"}


def substitute(text: str, values: dict) -> str:
    """Put values in for $name, ${name} and ${name:format}, as Grafana would."""

    def value(m) -> str:
        name, form = m.group(1) or m.group(3), m.group(2)
        if form == "date:seconds":  # ${__to:date:seconds}: the time in Unix seconds
            return str(int(values[name]) // 1000)
        return values[name]

    return re.sub(r"\$\{([A-Za-z_]+)(?::([^}]+))?\}|\$([A-Za-z_]+)", value, text)


def seconds(duration: str) -> float:
    return float(duration[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[duration[-1]]


def grafana_values(started: float, now: float, admin: str) -> dict:
    window = f"{int(now - started) + 60}s"  # the dashboard's range: the whole run
    every = dict.fromkeys(("service", "provider", "model", "api_key", "project", "operation",
                           "tokens"), ".*")
    every["deployment"] = "llama-70b"  # its All: every value found (the demo's one)
    return {**every, "__range": window, "__range_s": window[:-1], "__rate_interval":
            f"{4 * SCRAPE}s", "granularity": "1m", "topn": "10",
            "__from": str(int((started - 60) * 1000)), "__to": str(int(now * 1000)),
            "__timezone": "utc", "request_id": "", "status": "*", "limit": "100",
            "tag_key": "feature", "gateway_url": admin}


async def run_panel(s, prom: str, panel: dict, values: dict, now: float) -> tuple[int, list]:
    """Run a panel's queries; return how many series or rows came back, and any errors."""
    found, errors = 0, []
    for t in panel.get("targets", []):
        # As Grafana steps a range query: the query's minimum interval, or the range over
        # about a thousand points; $__interval is that step. Two minutes back, or as many
        # steps as hold two minutes, so that `now` is one of the points evaluated.
        step = max(seconds(substitute(t.get("interval") or "5s", values)), 120 / 1000)
        start = now - step * math.ceil(120 / step)
        expr = substitute(t["expr"], {**values, "__interval": f"{step:g}s"})
        if t.get("instant"):
            params = {"query": expr, "time": now}
            path = "/api/v1/query"
        else:
            params = {"query": expr, "start": start, "end": now, "step": step}
            path = "/api/v1/query_range"
        async with s.get(prom + path, params=params) as r:
            body = await r.json()
        if body.get("status") != "success":
            errors.append(f"{t['refId']}: {expr}: {body.get('error')}")
        else:
            found += len(body["data"]["result"])
    return found, errors


async def fake_dcgm(aiohttp_server) -> str:
    """NVIDIA's DCGM exporter as Prometheus would scrape it, relabelled with the demo's
    deployment (docs/deployments.md): two GPUs at 37% and 41%."""
    from aiohttp import web

    async def metrics(request):
        return web.Response(text="".join(
            f'DCGM_FI_DEV_GPU_UTIL{{gpu="{gpu}",deployment="llama-70b"}} {util}\n'
            for gpu, util in ((0, 37), (1, 41))))

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    server = await aiohttp_server(app)
    return f"127.0.0.1:{server.port}"


async def test_every_panel_query_runs_against_the_real_gateway(tmp_path, aiohttp_server,
                                                               unused_tcp_port_factory):
    prometheus = need_binary("prometheus")
    alertmanager = need_binary("prometheus-alertmanager")
    listen, admin_port, prom_port, am_port = (unused_tcp_port_factory() for _ in range(4))
    config = yaml.safe_load((ROOT / "alerts" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval=f"{SCRAPE}s", evaluation_interval=f"{SCRAPE}s")
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [
        f"127.0.0.1:{am_port}"]
    for name in config["rule_files"]:  # the shipped rules, their `for:` shortened to fire
        text = (ROOT / "alerts" / name).read_text()
        (tmp_path / name).write_text(re.sub(r"(?m)^(\s+for:) \S+$", r"\1 1s", text))
    job = config["scrape_configs"][0]  # the demo here, not compose's DNS names
    del job["dns_sd_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{admin_port}"]}]
    config["scrape_configs"].append({"job_name": "dcgm", "static_configs": [
        {"targets": [await fake_dcgm(aiohttp_server)]}]})
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    dashboards = {name: json.loads(text) for name, text in generator.generate().items()}
    admin, prom = f"http://127.0.0.1:{admin_port}", f"http://127.0.0.1:{prom_port}"
    am = f"http://127.0.0.1:{am_port}"
    # The Infinity datasources' base URLs, from the provisioning, with the test's ports.
    bases = {s["uid"]: s.get("url", "").replace("http://gateway:9464", admin)
             .replace("http://alertmanager:9093", am)
             for s in yaml.safe_load(PROVISIONED.read_text())["datasources"]}
    history = tmp_path / "history.db"
    procs = [await start(sys.executable, "-m", "exporter", "demo", "--rate", "25",
                         "--history", str(history), "--listen", f"127.0.0.1:{listen}",
                         "--admin-listen", f"127.0.0.1:{admin_port}",
                         log=tmp_path / "demo.log"),
             await start(prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                         f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                         f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn",
                         "--enable-feature=exemplar-storage", log=tmp_path / "prometheus.log"),
             await start(alertmanager, f"--config.file={ROOT / 'alerts' / 'alertmanager.yml'}",
                         f"--storage.path={tmp_path / 'am'}",
                         f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
                         log=tmp_path / "alertmanager.log")]
    started = time.time()
    try:
        await wait_ok(admin + "/healthz")
        await wait_ok(prom + "/-/ready")
        await wait_ok(am + "/-/ready")
        async with aiohttp.ClientSession() as s:
            # Poll until every panel has data, under a deadline; a query error fails at once.
            missing: list[str] = ["(not yet run)"]
            while missing and time.time() - started < DEADLINE:
                await asyncio.sleep(3)
                now = time.time()
                values = grafana_values(started, now, admin)
                missing = []
                for name in PROMETHEUS_DASHBOARDS:
                    for panel in dashboards[name]["panels"]:
                        if panel["type"] in NO_QUERY or \
                                panel["datasource"]["type"] != "prometheus":
                            continue  # usage API panels: check_usage_api
                        found, errors = await run_panel(s, prom, panel, values, now)
                        assert errors == [], f"{name}, {panel['title']!r}: {errors}"
                        if not found and panel["title"] not in MAY_BE_EMPTY:
                            missing.append(f"{name}: {panel['title']!r}")
            assert missing == [], f"no data after {DEADLINE} s: {missing}"

            now = time.time()
            values = grafana_values(started, now, admin)
            await check_variables(s, prom, dashboards)
            await check_usage_api(s, bases, dashboards, values)
            await check_ledger_totals(s, bases, dashboards, values, history, started)
            await check_downloads(s, dashboards, values)
            await check_exemplars(s, prom, admin, started, now)
            await check_without_dcgm(s, prom, dashboards["llm-deployments.json"], values, now)
    finally:
        for proc in procs:
            await stop(proc)


async def check_without_dcgm(s, prom: str, dashboard: dict, values: dict, now: float):
    """The panels that need DCGM say so, and show nothing (not an error) without it."""
    dcgm = [p for p in dashboard["panels"] if "DCGM_FI_DEV_GPU_UTIL" in json.dumps(p)]
    assert len(dcgm) == 2
    for panel in dcgm:
        assert "Needs" in panel["description"] and "DCGM" in panel["description"]
        found, errors = await run_panel(s, prom, panel, {**values, "deployment": "none"}, now)
        assert (found, errors) == (0, [])


async def check_variables(s, prom: str, dashboards: dict) -> None:
    """Each filter variable's label_values() query finds values, as its dropdown would."""
    variables = {v["name"]: v for v in dashboards["llm-overview.json"]["templating"]["list"]}
    for name in ("service", "provider", "model", "api_key", "project"):
        query = substitute(variables[name]["query"], {n: ".*" for n in variables})
        selector = query.split("(", 1)[1].rsplit(",", 1)[0]
        async with s.get(f"{prom}/api/v1/label/{name}/values",
                         params={"match[]": selector}) as r:
            assert (await r.json())["data"], name


def infinity_targets(dashboards: dict):
    for name, d in dashboards.items():
        for panel in d["panels"]:
            for t in panel.get("targets", []):
                if t.get("type") == "json":
                    yield name, panel, t


def select(row: dict, selector: str):
    """A column's value by its dotted selector (labels.alertname), or KeyError."""
    for key in selector.split("."):
        row = row[key]
    return row


async def check_usage_api(s, bases: dict, dashboards: dict, values: dict) -> None:
    """Every Infinity query gets, from the real admin API and the real Alertmanager, every
    column it declares. (Alertmanager's alerts fire with the shipped rules, `for:` cut to
    1 s: the demo's local model is unpriced.)"""
    targets = list(infinity_targets(dashboards))
    assert {name for name, _, _ in targets} == {
        "llm-overview.json", "llm-details.json", "llm-requests.json", "llm-deployments.json",
        "llm-rankings.json", "llm-spend.json"}
    for name, panel, t in targets:
        params = {p["key"]: substitute(p["value"], values) for p in t["url_options"]["params"]}
        url = bases[substitute(t["datasource"]["uid"], DATASOURCE_DEFAULTS)] + t["url"]
        async with asyncio.timeout(60):
            while True:  # Alertmanager hears of the alerts a few evaluations in
                async with s.get(url, params=params) as r:
                    assert r.status == 200, (name, panel["title"], await r.text())
                    body = await r.json()
                rows = select(body, t["root_selector"]) if t["root_selector"] else body
                if rows:
                    break
                await asyncio.sleep(1)
        if group := params.get("group_by"):  # the demo names users, projects and tags
            assert any(row[g] is not None for row in rows for g in group.split(",")), (
                name, panel["title"])
        for c in t["columns"]:
            if c["selector"].startswith("labels.") and c["selector"] != "labels.alertname":
                continue  # a label only some alerts have: empty in a row without it
            for row in rows:  # every row has it (its value may be null: TTFT of a non-stream)
                select(row, c["selector"])


# The request history's own totals, from its rows, as the ledger stats' fields name them.
LEDGER_SQL = {"requests": "sum(1 - share)", "fee_usd": "sum(fee_usd)",
              **{f: f"sum({f})" for f in TOKEN_FIELDS},
              "total_tokens": " + ".join(f"sum({f})" for f in TOKEN_FIELDS)}


async def check_ledger_totals(s, bases: dict, dashboards: dict, values: dict, history,
                              started: float) -> None:
    """Every total stat, as Grafana computes it (its fields of the usage API's row, summed),
    equals the sum over the history's rows for the same range and filters: the requests
    exactly, the fee within a millionth of a dollar. Over a range that ended 10 s ago, whose
    rows are all written, unfiltered and for one project: once that range holds a priced
    request of the project (the panels may have had data within seconds of the start)."""
    tokens = " + ".join(TOKEN_FIELDS)

    def priced_before_10_s_ago() -> bool:
        with sqlite3.connect(history) as db:
            [(n,)] = db.execute(f"SELECT count(*) FROM requests WHERE project = 'search' AND "
                                f"fee_usd > 0 AND {tokens} > 0 AND started_at < ?",
                                [time.time() - 10]).fetchall()
        return n > 0

    await until(priced_before_10_s_ago, timeout=60)
    end = time.time() - 10
    window = {**values, "__from": str(int((started - 60) * 1000)), "__to": str(int(end * 1000))}
    stats = [(name, p) for name in ("llm-overview.json", "llm-details.json")
             for p in dashboards[name]["panels"]
             if p["type"] == "stat" and p["datasource"]["uid"] == "${api}"]
    assert len(stats) >= 9
    checked = 0
    for project in (".*", "search"):
        where, args = "started_at >= ? AND started_at < ?", [started - 60, end]
        if project != ".*":
            where, args = where + " AND project = ?", [*args, project]
        with sqlite3.connect(history) as db:
            for name, panel in stats:
                [t] = panel["targets"]
                fields = [c["selector"] for c in t["columns"]]
                if not all(f in LEDGER_SQL for f in fields):
                    continue  # a ratio or a mean (success rate, latency, QPS)
                params = {p["key"]: substitute(p["value"], {**window, "project": project})
                          for p in t["url_options"]["params"]}
                async with s.get(bases[API_UID] + t["url"], params=params) as r:
                    [row] = (await r.json())["data"]
                shown = sum(row[f] or 0 for f in fields)
                sql = " + ".join(f"coalesce({LEDGER_SQL[f]}, 0)" for f in fields)
                [(expected,)] = db.execute(f"SELECT {sql} FROM requests WHERE {where}",
                                           args).fetchall()
                assert expected > 0 and shown == pytest.approx(expected, abs=1e-6), (
                    name, panel["title"], project, shown, expected)
                checked += 1
    assert checked >= 2 * 8


async def check_downloads(s, dashboards: dict, values: dict) -> None:
    """Each panel's CSV and Excel link downloads a file from the usage API."""
    links = [(p["title"], link["url"]) for d in dashboards.values() for p in d["panels"]
             for link in p.get("links", [])]
    # Twelve rankings (four dimensions by three measures) and the end users' and tags',
    # two details tables, the history, the deployments.
    assert len(links) == 2 * (12 + 2 + 2 + 1 + 1)
    # And a report of the range, as the overview's link asks for it (the others differ
    # only in type and format: test_grafana checks the API knows them).
    [report] = [link["url"] for link in dashboards["llm-overview.json"]["links"]
                if link["title"] == "Summary report (PDF)"]
    async with s.get(substitute(report, values)) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"] == "application/pdf"
        assert (await r.read()).startswith(b"%PDF")
    for title, url in links:
        async with s.get(substitute(url, values)) as r:
            assert r.status == 200, (title, url, await r.text())
            kind = "text/csv" if "format=csv" in url else "spreadsheetml"
            assert kind in r.headers["Content-Type"], (title, url)
            assert r.headers["Content-Disposition"].startswith("attachment")
            await r.read()


async def check_exemplars(s, prom: str, admin: str, started: float, now: float) -> None:
    """A request id found through Prometheus's exemplar API is a request in the history."""
    for metric in ("llm_request_duration_seconds_bucket",
                   "llm_time_to_first_token_seconds_bucket"):
        async with s.get(prom + "/api/v1/query_exemplars",
                         params={"query": metric, "start": started, "end": now}) as r:
            series = (await r.json())["data"]
        ids = {e["labels"]["request_id"] for x in series for e in x["exemplars"]}
        assert ids, metric
        rid = sorted(ids)[0]
        async with s.get(admin + "/api/requests", params={"request_id": rid,
                                                          "from": "0"}) as r:
            rows = (await r.json())["data"]
        assert [row["request_id"] for row in rows] == [rid]
