"""docker-compose.yml, checked for structure: no Docker engine runs here."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from exporter.config.load import load_config

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
    assert set(SERVICES) == {"gateway", "prometheus", "alertmanager"}
    for name, service in SERVICES.items():
        assert "image" in service or "build" in service, name
        for container, host in mounts(name).items():
            if host.startswith("./"):
                assert (ROOT / host).is_file(), f"{name}: {host} is missing"
            else:
                assert host in COMPOSE["volumes"], f"{name}: volume {host} is not declared"


def test_gateway_config_is_valid_and_matches_the_ports():
    config = load_config(str(ROOT / mounts("gateway")["/etc/llm-usage-exporter/config.yaml"]))
    listen_port = config.listen.rsplit(":", 1)[1]
    assert config.listen.startswith("0.0.0.0:") and config.admin_listen.startswith("0.0.0.0:")
    assert f"{listen_port}:{listen_port}" in SERVICES["gateway"]["ports"]
    assert not any(p.endswith(config.admin_listen.rsplit(":", 1)[1])
                   for p in SERVICES["gateway"]["ports"]), "the metrics port must not be published"
    assert config.history.path.startswith("/data/") and "/data" in mounts("gateway")  # kept
    prometheus = yaml.safe_load((ROOT / mounts("prometheus")["/etc/prometheus/prometheus.yml"])
                                .read_text())
    [job] = prometheus["scrape_configs"]
    assert job["job_name"] == "llm-usage-exporter"
    assert job["static_configs"][0]["targets"] == [
        "gateway:" + config.admin_listen.rsplit(":", 1)[1]]
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
