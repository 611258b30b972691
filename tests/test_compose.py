"""docker-compose.yml, checked for structure: no Docker engine runs here."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import yaml
from conftest import need_binary

from exporter.config.load import load_config
from exporter.config.table import HistoryConfig

ROOT = Path(__file__).parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def mounts(service: str) -> dict[str, str]:
    """Map container paths to host paths for a service's bind mounts."""
    out = {}
    for volume in SERVICES[service].get("volumes", ()):
        host, container = volume.split(":")[:2]
        out[container] = host
    return out


def test_every_service_has_an_image_and_every_mount_exists():
    assert set(SERVICES) == {"gateway", "gateway-demo", "gateway-fleet", "postgres",
                             "prometheus", "alertmanager", "alert-log", "grafana"}
    for name, service in SERVICES.items():
        assert "image" in service or "build" in service, name
        for host in mounts(name).values():
            if host.startswith("./"):
                assert (ROOT / host).exists(), f"{name}: {host} is missing"
            else:
                assert host in COMPOSE["volumes"], f"{name}: volume {host} is not declared"


def test_images_are_pinned():
    for name, service in SERVICES.items():
        image = service["image"]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest"), name
    assert SERVICES["grafana"]["image"] == "grafana/grafana:12.4.11"  # as README.md says
    assert "grafana/grafana:12.4.11" in (ROOT / "README.md").read_text()


def test_prometheus_3_keeps_what_the_history_keeps():
    image = SERVICES["prometheus"]["image"]
    assert image.startswith("prom/prometheus:v3.")
    [retention] = [a for a in SERVICES["prometheus"]["command"]
                   if a.startswith("--storage.tsdb.retention.time=")]
    days = retention.split("=")[1]
    assert days.endswith("d") and int(days[:-1]) >= HistoryConfig().retention_days


def test_one_gateway_per_profile_each_named_gateway():
    # Prometheus and Grafana reach `gateway`: the real one (live, the default in .env), the
    # demo, or the fleet's replicas, never two of them.
    assert SERVICES["gateway"]["profiles"] == ["live"]
    assert SERVICES["gateway-demo"]["profiles"] == ["demo"]
    assert SERVICES["gateway-fleet"]["profiles"] == ["fleet"]
    for name in ("gateway-demo", "gateway-fleet"):
        assert SERVICES[name]["networks"]["default"]["aliases"] == ["gateway"]
    assert SERVICES["gateway-demo"]["ports"] == SERVICES["gateway"]["ports"]
    assert "COMPOSE_PROFILES=live" in (ROOT / ".env").read_text().splitlines()
    demo = SERVICES["gateway-demo"]["command"]
    assert demo[0] == "demo" and "0.0.0.0:9464" in demo
    assert all("profiles" not in s for n, s in SERVICES.items()
               if not n.startswith("gateway") and n != "postgres")


def test_the_fleet_is_two_replicas_on_one_postgresql():
    fleet, postgres = SERVICES["gateway-fleet"], SERVICES["postgres"]
    assert fleet["deploy"]["replicas"] == 2 and postgres["profiles"] == ["fleet"]
    # Each replica on a port of its own, the usage API on localhost only.
    assert fleet["ports"] == ["8080-8081:8080", "127.0.0.1:9464-9465:9464"]
    command = fleet["command"]
    url = command[command.index("--history") + 1]
    env = postgres["environment"]
    assert url == f"postgresql://{env['POSTGRES_USER']}@postgres:5432/{env['POSTGRES_DB']}"
    assert fleet["environment"]["PGPASSWORD"] == env["POSTGRES_PASSWORD"]  # the same default
    assert fleet["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert "ports" not in postgres  # reached on the compose network only
    assert re.fullmatch(r"postgres:\d+\.\d+-\w+", postgres["image"])
    assert mounts("postgres") == {"/var/lib/postgresql": "postgres"}


def test_grafana_is_guarded_and_has_its_plugin():
    env = SERVICES["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert re.fullmatch(r"yesoreyeram-infinity-datasource@\d+\.\d+\.\d+",
                        env["GF_PLUGINS_PREINSTALL_SYNC"])
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    folder, name = home.rsplit("/", 1)
    assert (ROOT / mounts("grafana")[folder] / name).is_file()
    assert all(v.endswith(":ro") for v in SERVICES["grafana"]["volumes"] if v.startswith("./"))
    assert "--enable-feature=exemplar-storage" in SERVICES["prometheus"]["command"]


def test_alerts_reach_the_alert_log():
    # alertmanager.yml's webhooks go to 127.0.0.1:5001: in Alertmanager's network namespace
    # that is the alert-log service.
    assert SERVICES["alert-log"]["network_mode"] == "service:alertmanager"
    assert SERVICES["alert-log"]["command"][-1] == "5001"
    am = yaml.safe_load((ROOT / "alerts" / "alertmanager.yml").read_text())
    urls = {w["url"] for r in am["receivers"] for w in r.get("webhook_configs", ())}
    assert urls == {"http://127.0.0.1:5001/alertmanager"}


def test_gateway_config_is_valid_and_matches_the_ports():
    config = load_config(str(ROOT / mounts("gateway")["/etc/llm-usage-exporter/config.yaml"]))
    listen_port = config.listen.rsplit(":", 1)[1]
    assert config.listen.startswith("0.0.0.0:") and config.admin_listen.startswith("0.0.0.0:")
    admin_port = config.admin_listen.rsplit(":", 1)[1]
    assert f"{listen_port}:{listen_port}" in SERVICES["gateway"]["ports"]
    # The usage API and its downloads reach the host's browser, on localhost only.
    assert [p for p in SERVICES["gateway"]["ports"] if p.endswith(":" + admin_port)] == [
        f"127.0.0.1:{admin_port}:{admin_port}"]
    assert config.history.path.startswith("/data/") and "/data" in mounts("gateway")  # kept
    prometheus = yaml.safe_load((ROOT / mounts("prometheus")["/etc/prometheus/prometheus.yml"])
                                .read_text())
    [job] = prometheus["scrape_configs"]
    assert job["job_name"] == "llm-usage-exporter"
    # Every container named gateway, each scraped apart: one, or a fleet's replicas.
    assert job["dns_sd_configs"] == [{"names": ["gateway"], "type": "A",
                                      "port": int(admin_port), "refresh_interval": "15s"}]
    am = prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am == ["alertmanager:9093"] and "9093:9093" in SERVICES["alertmanager"]["ports"]
    for rule_file in prometheus["rule_files"]:
        assert f"/etc/prometheus/{rule_file}" in mounts("prometheus")


def test_dockerfile_copies_what_exists():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for line in re.findall(r"(?m)^COPY (.+) \S+$", dockerfile):
        for source in line.split():
            assert (ROOT / source).exists(), source
    assert "USER 65534" in dockerfile


def test_prometheus_config_as_the_container_sees_it(tmp_path):
    promtool = need_binary("promtool")
    for container, host in mounts("prometheus").items():
        if host.startswith("./"):
            target = tmp_path / container.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((ROOT / host).read_bytes())
    done = subprocess.run([promtool, "check", "config",
                           str(tmp_path / "etc/prometheus/prometheus.yml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 2 rule files found" in done.stdout


def test_alert_log_prints_one_line_per_alert(unused_tcp_port):
    proc = subprocess.Popen([sys.executable, str(ROOT / "deploy" / "alert_log.py"),
                             str(unused_tcp_port)], stdout=subprocess.PIPE, text=True)
    try:
        assert "listening" in proc.stdout.readline()  # ready: the socket is bound
        payload = {"alerts": [
            {"status": "firing", "labels": {"alertname": "LLMBudgetWarning",
                                            "severity": "warning", "api_key": "search-team"},
             "annotations": {"description": "API key search-team has spent 85%."}},
            {"status": "resolved", "labels": {"alertname": "LLMExporterDown"}}]}
        request = urllib.request.Request(
            f"http://127.0.0.1:{unused_tcp_port}/alertmanager", json.dumps(payload).encode(),
            {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.status == 200
        assert proc.stdout.readline() == ("FIRING LLMBudgetWarning api_key=search-team "
                                          "severity=warning: API key search-team has spent "
                                          "85%.\n")
        assert proc.stdout.readline() == "RESOLVED LLMExporterDown : \n"
    finally:
        proc.kill()
        proc.wait()
