"""The Grafana dashboards: generated as committed, linted, every query parsed by promtool,
and provisioned as docker-compose.yml mounts them. (Grafana itself cannot run here: the
queries are run against a real Prometheus in test_grafana_e2e.py.)"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import need_binary

from exporter.reports.data import TYPES as REPORT_TYPES
from exporter.store.query import FILTER_PARAMS
from grafana import __main__ as generator
from grafana import kit, lint

ROOT = Path(__file__).parent.parent
PROVISIONING = ROOT / "grafana" / "provisioning"
# What Grafana puts in place of its own variables and the dashboards' (All is .*).
SUBSTITUTES = {"__rate_interval": "1m", "__range": "3600s", "__range_s": "3600",
               "__to": "1800000000",
               "__interval": "1m", "granularity": "5m", "topn": "10", "tokens": ".*",
               "service": ".*", "provider": ".*", "model": ".*", "api_key": ".*", "project": ".*",
               "deployment": ".*"}


def dashboards() -> dict[str, dict]:
    return {name: json.loads(text) for name, text in generator.generate().items()}


def substitute(expr: str, values=SUBSTITUTES) -> str:
    return re.sub(r"\$\{([A-Za-z_]+)(?::[^}]+)?\}|\$([A-Za-z_]+)",
                  lambda m: values[m.group(1) or m.group(2)], expr)


def test_committed_dashboards_are_what_the_code_generates():
    done = subprocess.run([sys.executable, "-m", "grafana", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (ROOT / "grafana" / "dashboards").glob("*.json")) == \
        sorted(dashboards())


def test_check_fails_on_a_stale_dashboard(tmp_path, monkeypatch):
    for name, text in generator.generate().items():
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(generator, "DASHBOARDS", tmp_path)
    assert generator.main(["--check"]) == 0
    stale = tmp_path / "llm-overview.json"
    stale.write_text(stale.read_text().replace("Total tokens", "All tokens"))
    assert generator.main(["--check"]) == 1


def test_every_dashboard_keeps_the_rules():
    metrics = lint.defined_metrics()
    for name, d in dashboards().items():
        assert lint.check(d, metrics) == [], name
    assert len({d["uid"] for d in dashboards().values()}) == 7


def broken(d: dict) -> dict:
    """One of each fault lint must catch, in a copy of a real dashboard."""
    d = copy.deepcopy(d)
    stats = [p for p in d["panels"] if p["type"] == "stat"]
    del stats[0]["fieldConfig"]["defaults"]["unit"]
    stats[1]["description"] = ""
    stats[2]["targets"][0]["expr"] = "sum(increase(llm_tokenz_total[$__range]))"
    stats[3]["targets"][0]["expr"] = "sum(rate(llm_tokens_total[5m]))"
    stats[4]["targets"][0]["expr"] = 'sum(llm_tokens_total{model=~"$modle"})'
    stats[5]["datasource"] = {"type": "prometheus", "uid": "some-prometheus"}
    stats[6]["gridPos"] = dict(stats[7]["gridPos"])
    stats[8]["gridPos"] = {**stats[8]["gridPos"], "x": 22}
    stats[9]["targets"][0]["expr"] = 'sum(llm_requests_total{error_type=~"none|succes"})'
    stats[10]["targets"][0]["expr"] = 'sum(llm_requests_total{error_type!="none"})'
    stats[0]["fieldConfig"]["defaults"]["decimals"] = 4  # its unit gone: no unit rule
    stats[4]["fieldConfig"]["defaults"].update(unit="short", decimals=0)
    stats[5]["fieldConfig"]["defaults"].update(unit="currencyUSD", decimals=4)
    del stats[6]["fieldConfig"]["defaults"]["noValue"]
    d["templating"]["list"][0]["hide"] = 0
    d["templating"]["list"] = [v for v in d["templating"]["list"] if v["name"] != "api_key"]
    return d


def test_lint_catches_each_fault():
    problems = "\n".join(lint.check(broken(dashboards()["llm-overview.json"])))
    for expected in ("Total tokens': no unit", "'Input tokens': no description",
                     "llm_tokenz_total is neither exported nor recorded",
                     "window [5m]", "$modle is used but not defined",
                     "datasource must be a dashboard variable", "overlaps",
                     "off the 24-column grid", "variable api_key: missing",
                     "error_type 'succes' is none the exporter gives",
                     'error_type!="none" counts accounting_error', "shows 1,500 as 2 K",
                     "show $0.000444 as $0.0004", "a stat needs a noValue",
                     "variable datasource: a provisioned datasource, to hide"):
        assert expected in problems


def test_data_links_open_a_dashboard_with_the_variables_they_set():
    boards = {d["uid"]: {v["name"] for v in d["templating"]["list"]}
              for d in dashboards().values()}
    links = [(p["title"], link["url"]) for d in dashboards().values() for p in d["panels"]
             for link in p.get("fieldConfig", {}).get("defaults", {}).get("links", [])]
    assert len(links) >= 12  # details (2), rankings (8), deployments, alerts
    for title, url in links:
        uid, _, query = url.removeprefix("/d/").partition("?")
        assert uid in boards, (title, url)
        assert "${__url_time_range}" in query, title  # the same time range
        for var in re.findall(r"var-([a-z_]+)=", query):
            assert var in boards[uid], (title, var)


def test_report_links_ask_the_api_for_what_it_draws():
    links = [link["url"] for d in dashboards().values() for link in d.get("links", [])
             if "/api/report?" in link.get("url", "")]
    assert len(links) == 2 * 4  # the overview's and the details'
    for url in links:
        params = dict(p.split("=", 1) for p in url.split("?", 1)[1].split("&"))
        assert params["type"] in REPORT_TYPES and params["format"] in ("pdf", "xlsx"), url
        assert set(params) <= FILTER_PARAMS | {"type", "format"}, url


def test_every_query_parses(tmp_path):
    promtool = need_binary("promtool")
    exprs = [t["expr"] for d in dashboards().values() for p in d["panels"]
             for t in p.get("targets", []) if "expr" in t]
    assert len(exprs) > 50
    # As recording rules, so promtool parses each (with Grafana's substitutions made).
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query:{i}", "expr": substitute(e)} for i, e in enumerate(exprs)]}]}
    (tmp_path / "queries.yml").write_text(yaml.safe_dump(rules))
    done = subprocess.run([promtool, "check", "rules", str(tmp_path / "queries.yml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def provisioned(path: str) -> dict:
    return yaml.safe_load((PROVISIONING / path).read_text())


def test_datasources_are_provisioned_with_the_dashboards_uids():
    sources = {s["uid"]: s for s in provisioned("datasources/llm-usage-exporter.yml")
               ["datasources"]}
    assert {uid: s["type"] for uid, s in sources.items()} == {
        kit.PROMETHEUS_UID: "prometheus", kit.ALERTMANAGER_UID: "alertmanager",
        kit.API_UID: kit.INFINITY_TYPE, kit.ALERTS_API_UID: kit.INFINITY_TYPE}
    sources["prometheus"] = sources[kit.PROMETHEUS_UID]
    # $__rate_interval is built on the scrape interval Prometheus really uses.
    scrape = yaml.safe_load((ROOT / "alerts" / "prometheus.yml").read_text())
    assert sources["prometheus"]["jsonData"]["timeInterval"] == \
        scrape["global"]["scrape_interval"]
    # The Infinity datasources read the gateway's admin listener and Alertmanager on the
    # compose network: their base URL is the datasource's own url (Infinity has no other).
    # The usage API on any replica answers for every one: the name Prometheus resolves.
    api, alerts = sources[kit.API_UID], sources[kit.ALERTS_API_UID]
    [gateways] = scrape["scrape_configs"][0]["dns_sd_configs"]
    assert api["url"] == f"http://{gateways['names'][0]}:{gateways['port']}"
    assert alerts["url"] == \
        "http://" + scrape["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0]
    for source in (api, alerts):
        assert source["jsonData"]["allowedHosts"] == [source["url"]]
        assert "url" not in source["jsonData"]
    # An exemplar's request_id opens the request-history dashboard on that request.
    [link] = sources["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert link["name"] == "request_id"
    assert link["url"].startswith("/d/llm-requests/")
    # $$: a literal $ in provisioning; percent-encoded, as a client's id may hold any character.
    assert "var-request_id=$${__value.raw:percentencode}" in link["url"]
    requests = dashboards()["llm-requests.json"]
    assert "request_id" in {v["name"] for v in requests["templating"]["list"]}


def test_dashboard_provider_loads_the_folder_compose_mounts():
    [provider] = provisioned("dashboards/llm-usage-exporter.yml")["providers"]
    assert provider["folder"] == kit.FOLDER and provider["type"] == "file"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = {m.split(":")[1]: m.split(":")[0] for m in compose["services"]["grafana"]["volumes"]
              if ":" in m}
    assert mounts[provider["options"]["path"]] == "./grafana/dashboards"


@pytest.mark.parametrize("name", ["llm-details.json", "llm-requests.json"])
def test_history_tables_read_the_usage_api(name):
    d = dashboards()[name]
    targets = [t for p in d["panels"] for t in p.get("targets", [])
               if t.get("type") == "json"]
    assert targets
    for t in targets:
        assert t["datasource"] == {"type": kit.INFINITY_TYPE, "uid": "${api}"}
        params = {p["key"]: p["value"] for p in t["url_options"]["params"]}
        assert params["from"] == "${__from}" and params["to"] == "${__to}"
        assert params["tz"] == "${__timezone}"  # days in the viewer's zone
        assert params["model"] == "${model:csv}"


def test_a_row_opens_its_requests_with_the_dashboards_other_filters_kept():
    """A data link to the request history sets what its row shows (model, key...) and
    keeps every other filter of its dashboard that the history has: opening a model's row
    while one project is chosen shows that project's requests of the model, not all."""
    every = dashboards()
    history = {v["name"] for v in every["llm-requests.json"]["templating"]["list"]}
    links = 0
    for name, d in every.items():
        own = {v["name"] for v in d["templating"]["list"]}
        for panel in d["panels"]:
            for link in panel.get("fieldConfig", {}).get("defaults", {}).get("links", []):
                if not link["url"].startswith("/d/llm-requests?"):
                    continue
                links += 1
                from_row = set(re.findall(r"var-(\w+)=\$\{__data\.fields", link["url"]))
                kept = set(re.findall(r"\$\{(\w+):queryparam\}", link["url"]))
                assert kept <= own & history and not kept & from_row, (name, link["url"])
                assert set(kit.FILTERS) <= from_row | kept, (name, panel["title"])
    assert links >= 6
