"""The shipped rules and routing, checked by Prometheus's and Alertmanager's own tools."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import need_binary

from grafana.lint import defined_metrics

ALERTS = Path(__file__).parent.parent / "alerts"
RULES = yaml.safe_load((ALERTS / "rules.yml").read_text())["groups"][0]["rules"]
ALERT_RULES = yaml.safe_load((ALERTS / "alerts.yml").read_text())["groups"][0]["rules"]
RUNBOOK = (ALERTS / "runbook.md").read_text()
TESTS = [ALERTS / "tests" / "alerts_test.yml", ALERTS / "tests" / "alerts_slow_test.yml"]


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=ALERTS)


def test_promtool_check_config_and_rules():
    promtool = need_binary("promtool")
    out = run(promtool, "check", "config", "prometheus.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    out = run(promtool, "check", "rules", "rules.yml", "alerts.yml")
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_unit_tests():
    promtool = need_binary("promtool")
    out = run(promtool, "test", "rules", *map(str, TESTS))
    assert out.returncode == 0, out.stdout + out.stderr


def uncommented(path: Path) -> str:
    """The file with its commented examples (comment lines indented 4+ spaces) enabled."""
    return re.sub(r"(?m)^( {4,})# ", r"\1", path.read_text())


def test_commented_examples_are_valid(tmp_path):
    amtool, promtool = need_binary("amtool"), need_binary("promtool")
    am = tmp_path / "alertmanager.yml"
    am.write_text(uncommented(ALERTS / "alertmanager.yml"))
    assert "api_url_file" in am.read_text() and "routing_key_file" in am.read_text()
    out = run(amtool, "check-config", str(am))
    assert out.returncode == 0, out.stdout + out.stderr
    token = tmp_path / "token"
    token.write_text("t")
    prom = tmp_path / "prometheus.yml"
    prom.write_text(uncommented(ALERTS / "prometheus.yml").replace(
        "/etc/prometheus/secrets/llm-usage-exporter-token", str(token)).replace(
        "  - rules.yml\n  - alerts.yml\n", ""))
    assert "credentials_file" in prom.read_text()
    out = run(promtool, "check", "config", str(prom))
    assert out.returncode == 0, out.stdout + out.stderr


def test_amtool_check_config():
    out = run(need_binary("amtool"), "check-config", "alertmanager.yml")
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("labels,receiver", [
    (["severity=critical", "alertname=LLMUpstreamFailing", "service=openai"], "critical"),
    (["severity=warning", "alertname=LLMHighErrorRatio", "service=openai"], "warning"),
    (["severity=info", "alertname=Something"], "default"),
    (["alertname=NoSeverity"], "default"),
])
def test_each_route(labels, receiver):
    out = run(need_binary("amtool"), "config", "routes", "test", "--config.file",
              "alertmanager.yml", f"--verify.receivers={receiver}", *labels)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("rule", ALERT_RULES, ids=lambda r: r["alert"])
def test_alert_style(rule):
    name = rule["alert"]
    assert re.fullmatch(r"LLM[A-Z][A-Za-z]+", name)
    assert rule["labels"]["severity"] in ("critical", "warning", "info")
    a = rule["annotations"]
    assert set(a) == {"summary", "description", "runbook_url"}
    assert "{{" not in a["summary"] and a["summary"].endswith(".")
    assert "{{" in a["description"]
    if "$value" in a["description"]:
        assert re.search(r"\$value \| humanize|printf \"%\.2f\" \$value", a["description"])
    assert a["runbook_url"].endswith("/alerts/runbook.md#" + name.lower())
    assert f"\n## {name}\n" in RUNBOOK
    assert "for" in rule


@pytest.mark.parametrize("rule", ALERT_RULES, ids=lambda r: r["alert"])
def test_every_alert_is_tested_on_both_sides_of_its_for(rule):
    cases = [case for path in TESTS
             for test in yaml.safe_load(path.read_text())["tests"]
             for case in test.get("alert_rule_test", ()) if case["alertname"] == rule["alert"]]
    assert any(c["exp_alerts"] == [] for c in cases), "no case before `for:` elapses"
    firing = [c for c in cases if c["exp_alerts"]]
    assert firing, "no case after `for:` elapses"
    for case in firing:
        for alert in case["exp_alerts"]:
            assert set(alert["exp_annotations"]) == {"summary", "description", "runbook_url"}
            assert alert["exp_labels"]["severity"] == rule["labels"]["severity"]


def test_recording_rule_names():
    for rule in RULES:
        assert re.fullmatch(r"[a-z_]+:llm_[a-z_]+:[a-z0-9_]+", rule["record"]), rule["record"]


def test_every_metric_a_rule_uses_is_defined():
    defined = defined_metrics() | {"up"}  # the exporter's, the recording rules', and up
    used = set()
    for rule in RULES + ALERT_RULES:
        used |= set(re.findall(r"\b(llm_[a-z_]+|[a-z_]+:llm_[a-z_]+:[a-z0-9_]+|up)\b",
                               rule["expr"]))
    assert used and used <= defined, used - defined


def test_the_rules_judge_outcomes_as_the_exporter_defines_them():
    """The recording rules name success and failure with record.py's own values."""
    from exporter.record import FAILURES, SUCCESSES, UNREACHABLE
    rules = {r["record"]: r["expr"] for g in yaml.safe_load(
        (ALERTS / "rules.yml").read_text())["groups"] for r in g["rules"] if "record" in r}

    def matched(record: str) -> set[str]:
        [values] = re.findall(r'error_type=~"([^"]*)"', rules[record])
        return set(values.split("|"))

    assert matched("service_model:llm_requests_judged:rate5m") == {*SUCCESSES, *FAILURES}
    assert matched("service_model:llm_request_failures:rate5m") == set(FAILURES)
    assert matched("service:llm_unreachable:ratio_rate5m") == set(UNREACHABLE)

