"""The Helm chart, rendered by Helm's own library (helm-python-sdk binds Helm 4's Go SDK).

Linted; rendered with the defaults and with every optional part on; every manifest
validated against Kubernetes' schemas (kubernetes-validate, strict: an unknown field is an
error), the ServiceMonitor and PrometheusRule against the Prometheus Operator's (cloudcoil's
models of its CRDs); the PrometheusRule checked by promtool and equal to alerts/; the
dashboards' ConfigMaps equal to grafana/dashboards/; the schema and the SQLite rule refusing
what they must; and the rendered container's command and config started for real.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import helm_python as helm
import kubernetes_validate
import pydantic
import pytest
import yaml
from cloudcoil.models.prometheus_operator.v1 import PrometheusRule, ServiceMonitor
from conftest import need_binary, start, stop, wait_ok
from upstream import json_file

from exporter import __version__
from exporter.app import Listener
from exporter.config.load import parse_config

ROOT = Path(__file__).parent.parent
CHART = ROOT / "charts" / "llm-usage-exporter"
# The oldest Kubernetes the chart supports (Chart.yaml's kubeVersion: the preStop sleep
# action is on by default from 1.30) and the newest kubernetes-validate knows.
KUBE_VERSIONS = ("1.30", kubernetes_validate.latest_version())
# The Prometheus Operator's kinds, which Kubernetes' own schemas do not have: checked
# against models generated from the operator's CRDs (v0.80.1).
OPERATOR_KINDS = {"ServiceMonitor": ServiceMonitor, "PrometheusRule": PrometheusRule}

# Every optional part on: a fleet on PostgreSQL, secrets by reference, the monitoring kit.
EVERYTHING = {
    "replicaCount": 3,
    "image": {"repository": "registry.example.com/llm-usage-exporter", "tag": "0.1.0-rc1",
              "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "workers": 2,
    "config": {"inline": {
        "timezone": "Europe/Paris",
        "services": [{"name": "openai", "base_url": "https://api.openai.com",
                      "api_key_env": "OPENAI_API_KEY"}],
        "history": {"retention_days": 30},
        "reports": [{"name": "monthly", "schedule": "monthly", "email_to": ["a@example.com"]}],
        "smtp": {"host": "smtp.example.com", "sender": "llm@example.com",
                 "user_env": "SMTP_USER", "password_env": "SMTP_PASSWORD"},
        "limits": {"max_request_body_bytes": 67108864}}},
    "secrets": {"existingSecret": "llm-gateway",
                "env": {"OPENAI_API_KEY": "openai-api-key", "SMTP_USER": "smtp-user",
                        "SMTP_PASSWORD": "smtp-password"},
                "adminTokenKey": "admin-token", "historyPasswordKey": "postgres-password"},
    "extraEnv": [{"name": "TZ", "value": "Europe/Paris"}],
    "history": {"engine": "postgresql", "postgresql": {
        "url": "postgresql://gateway@db.internal:5432/llm_usage?sslmode=require"}},
    "service": {"type": "LoadBalancer", "annotations": {"example.com/lb": "internal"}},
    "adminService": {"annotations": {"example.com/scrape": "no"}},
    "resources": {"requests": {"cpu": "2", "memory": "256Mi"},
                  "limits": {"cpu": "2", "memory": "1Gi"}},
    "podAnnotations": {"example.com/team": "platform"},
    "podLabels": {"team": "platform"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "llm",
                     "effect": "NoSchedule"}],
    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100, "podAffinityTerm": {
            "topologyKey": "kubernetes.io/hostname",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "llm-usage-exporter"}}}}]}},
    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                   "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {
                                       "matchLabels": {"app.kubernetes.io/instance": "gw"}}}],
    "priorityClassName": "high",
    "extraVolumes": [{"name": "reports", "emptyDir": {}}],
    "extraVolumeMounts": [{"name": "reports", "mountPath": "/reports"}],
    "podDisruptionBudget": {"enabled": True, "minAvailable": 2},
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"},
                       "interval": "30s", "relabelings": [
                           {"sourceLabels": ["__meta_kubernetes_pod_node_name"],
                            "targetLabel": "node"}]},
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "dashboards": {"enabled": True, "usageApiDatasource": True,
                   "alertmanagerUrl": "http://kps-alertmanager.monitoring.svc:9093"},
}


def render(values: dict | None = None, name: str = "gw") -> list[dict]:
    """Every object the chart makes with these values, as `helm template` would."""
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values or {}, name=name, namespace="llm", is_install=True)
    return [doc for path, text in sorted(rendered.items()) if not path.endswith("NOTES.txt")
            for doc in yaml.safe_load_all(text) if doc]


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    [found] = [o for o in objects if o["kind"] == kind
               and (name is None or o["metadata"]["name"] == name)]
    return found


def gateway_container(objects: list[dict]) -> dict:
    [container] = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def test_chart_is_v2_at_the_gateways_version():
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2" and meta["appVersion"] == __version__
    assert gateway_container(render())["image"] == f"llm-usage-exporter:{__version__}"


@pytest.mark.parametrize("values", [{}, EVERYTHING], ids=["defaults", "everything"])
def test_helm_lint_finds_nothing(values):
    report = helm.lint(CHART, values, strict=True, namespace="llm")
    assert report["errors"] == []
    # Severity 1 is information ("icon is recommended"): no icon is published.
    assert [m for m in report["messages"] if m["severity"] > 1] == []


VARIANTS = {
    "defaults": {},
    "everything": EVERYTHING,
    "sqlite-without-a-claim": {"history": {"sqlite": {"persistence": {"enabled": False}}},
                               "podDisruptionBudget": {"enabled": True}},
    "existing-claim-and-configmap": {
        "history": {"sqlite": {"persistence": {"existingClaim": "history"}}},
        "config": {"existingConfigMap": "my-gateway-config"}},
    "config-in-a-secret-no-history": {"history": {"engine": "none"}, "replicaCount": 2,
                                      "config": {"existingSecret": "my-gateway-config",
                                                 "key": "gateway.yaml"}},
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_manifest_is_valid_kubernetes(variant):
    objects = render(VARIANTS[variant])
    assert {o["kind"] for o in objects} >= {"Deployment", "Service"}
    for o in objects:
        if o["kind"] in OPERATOR_KINDS:
            # Strict: a field the CRD lacks would be dropped, so it must come back whole.
            model = OPERATOR_KINDS[o["kind"]].model_validate(o)
            assert model.model_dump(mode="json", by_alias=True, exclude_unset=True) == o
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(o, version, strict=True)


def test_the_operator_check_refuses_what_the_crd_does_not_have():
    monitor = one(render(EVERYTHING), "ServiceMonitor")
    typo = {**monitor, "spec": {**monitor["spec"], "scrapeProtocol": ["OpenMetricsText1.0.0"]}}
    dumped = ServiceMonitor.model_validate(typo).model_dump(
        mode="json", by_alias=True, exclude_unset=True)
    assert dumped != typo and "scrapeProtocol" not in dumped["spec"]
    with pytest.raises(pydantic.ValidationError, match="OpenMetricsText1.0.0"):
        ServiceMonitor.model_validate(
            {**monitor, "spec": {**monitor["spec"], "scrapeProtocols": ["OpenMetrics"]}})


def test_defaults_make_one_gateway_on_sqlite_with_its_claim():
    objects = render()
    assert sorted(o["kind"] for o in objects) == [
        "ConfigMap", "Deployment", "PersistentVolumeClaim", "Service", "Service"]
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # a ReadWriteOnce claim
    claim = one(objects, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    config = yaml.safe_load(one(objects, "ConfigMap")["data"]["config.yaml"])
    assert config["history"] == {"enabled": True, "path": "/data/llm-usage-history.db"}
    parse_config(config, env={})  # the gateway's own loader takes it


def test_two_replicas_on_sqlite_are_refused_with_the_reason():
    with pytest.raises(helm.HelmRenderError) as refused:
        render({"replicaCount": 2})
    message = str(refused.value)
    assert "replicaCount is 2 with history.engine sqlite" in message
    assert "other pods cannot share" in message and "history.engine postgresql" in message
    # One replica on SQLite, or several on PostgreSQL, are fine.
    render({"replicaCount": 1})
    render({"replicaCount": 2, "history": {"engine": "postgresql", "postgresql": {
        "url": "postgresql://gateway@db:5432/llm_usage"}}})


@pytest.mark.parametrize("values,problem", [
    ({"history": {"engine": "postgresql"}}, "needs history.postgresql.url"),
    ({"secrets": {"env": {"OPENAI_API_KEY": "k"}}}, "name that Secret"),
    ({"config": {"existingConfigMap": "a", "existingSecret": "b"}}, "give one of the two"),
])
def test_settings_that_cannot_work_together_are_refused(values, problem):
    with pytest.raises(helm.HelmRenderError, match=problem):
        render(values)


@pytest.mark.parametrize("values,path", [
    ({"replicaCount": "2"}, "/replicaCount"),
    ({"replicaCount": 1.5}, "/replicaCount"),
    ({"image": {"tag": 1}}, "/image/tag"),
    ({"history": {"engine": "mysql"}}, "/history/engine"),
    ({"history": {"postgresql": {"url": "postgresql://gw:secret@db/llm"}}},
     "/history/postgresql/url"),
    ({"service": {"port": "http"}}, "/service/port"),
    ({"serviceMonitor": {"enabled": "yes"}}, "/serviceMonitor/enabled"),
    ({"serviceMonitor": {"labels": {"release": 1}}}, "/serviceMonitor/labels/release"),
    ({"secrets": {"env": {"bad-name": "k"}}}, "invalid propertyName 'bad-name'"),
    ({"terminationGracePeriodSeconds": 30}, "/terminationGracePeriodSeconds"),
    ({"replicas": 2}, "replicas"),  # a typo of replicaCount: unknown keys are refused
])
def test_the_schema_refuses_wrong_values(values, path):
    with pytest.raises(helm.HelmValuesError) as refused:
        render(values)
    assert path in str(refused.value)


def test_the_deployment_runs_locked_down():
    objects = render()
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    container = gateway_container(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True
    # The image's user (the Dockerfile's USER), never root.
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"USER {pod['securityContext']['runAsUser']}:" in dockerfile
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    # What the gateway writes is on volumes: the history in /data (the image's WORKDIR,
    # where a relative history.path goes), exports and --workers' files in /tmp.
    assert "WORKDIR /data" in dockerfile
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["/data"] == "data" and "emptyDir" in volumes[mounts["/tmp"]]


def test_named_ports_probes_and_a_grace_period_longer_than_the_drain():
    objects = render()
    container = gateway_container(objects)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"proxy": 8080, "admin": 9464}
    args = container["args"]
    assert args[args.index("--listen") + 1] == "0.0.0.0:8080"
    assert args[args.index("--admin-listen") + 1] == "0.0.0.0:9464"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "admin"}
    # The gateway drains its client connections, then its admin listener's, each for up
    # to Listener.cleanup's timeout (30 s), after the preStop pause.
    drain = inspect.signature(Listener.cleanup).parameters["timeout"].default
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = one(objects, "Deployment")["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"]
    assert drain == 30 and grace > pause + 2 * drain
    services = {s["metadata"]["name"]: s for s in objects if s["kind"] == "Service"}
    assert {n: [p["targetPort"] for p in s["spec"]["ports"]] for n, s in services.items()} == {
        "gw-llm-usage-exporter": ["proxy"], "gw-llm-usage-exporter-admin": ["admin"]}


def test_a_config_change_rolls_the_pods():
    def checksum(values):
        template = one(render(values), "Deployment")["spec"]["template"]
        return template["metadata"]["annotations"]["checksum/config"]

    base = checksum({})
    assert checksum({}) == base
    assert checksum({"config": {"inline": {"log_level": "debug", "services": [
        {"name": "openai", "base_url": "https://api.openai.com"}]}}}) != base
    assert checksum({"config": {"existingConfigMap": "v1"}}) != \
        checksum({"config": {"existingConfigMap": "v2"}})


def test_secrets_only_by_reference():
    objects = render(EVERYTHING)
    assert "Secret" not in {o["kind"] for o in objects}  # the chart holds no secret
    env = {e["name"]: e for e in gateway_container(objects)["env"]}
    for name, key in {"OPENAI_API_KEY": "openai-api-key", "SMTP_USER": "smtp-user",
                      "SMTP_PASSWORD": "smtp-password", "LLM_USAGE_ADMIN_TOKEN": "admin-token",
                      "PGPASSWORD": "postgres-password"}.items():
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "llm-gateway", "key": key}
    assert env["TZ"] == {"name": "TZ", "value": "Europe/Paris"}
    config = yaml.safe_load(one(objects, "ConfigMap", "gw-llm-usage-exporter")["data"][
        "config.yaml"])
    assert config["admin_token_env"] == "LLM_USAGE_ADMIN_TOKEN"
    assert config["history"] == {"enabled": True, "retention_days": 30,
                                 "url": EVERYTHING["history"]["postgresql"]["url"]}
    assert config["limits"]["max_request_body_bytes"] == 67108864  # not 6.7108864e+07
    # The gateway takes the config with exactly the variables the Deployment sets.
    parse_config(config, env={name: "x" for name in env})
    args = gateway_container(objects)["args"]
    assert args[args.index("--workers") + 1] == "2"


def test_external_config_is_mounted_by_name():
    objects = render(VARIANTS["config-in-a-secret-no-history"])
    assert "ConfigMap" not in {o["kind"] for o in objects}
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"] == {"name": "config", "secret": {"secretName": "my-gateway-config"}}
    assert "emptyDir" in volumes["data"]
    args = pod["containers"][0]["args"]
    assert args[args.index("--config") + 1] == "/etc/llm-usage-exporter/gateway.yaml"


def test_the_service_monitor_scrapes_each_pod_in_openmetrics():
    objects = render(EVERYTHING)
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = monitor["spec"]
    # Exemplars travel only in OpenMetrics: it is asked for first.
    assert spec["scrapeProtocols"][0] == "OpenMetricsText1.0.0"
    [endpoint] = spec["endpoints"]
    assert endpoint["port"] == "admin" and endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "30s" and endpoint["honorLabels"] is True
    assert endpoint["authorization"] == {"type": "Bearer", "credentials": {
        "name": "llm-gateway", "key": "admin-token"}}
    assert endpoint["relabelings"] == EVERYTHING["serviceMonitor"]["relabelings"]
    # It selects the admin Service alone, whose part-of label is the job the alerts name.
    selected = [s for s in objects if s["kind"] == "Service" and all(
        s["metadata"]["labels"].get(k) == v for k, v in spec["selector"]["matchLabels"].items())]
    assert [s["metadata"]["name"] for s in selected] == ["gw-llm-usage-exporter-admin"]
    job = selected[0]["metadata"]["labels"][spec["jobLabel"]]
    assert f'up{{job="{job}"}}' in (ROOT / "alerts" / "alerts.yml").read_text()
    assert "admin" in [p["name"] for p in selected[0]["spec"]["ports"]]


def test_the_prometheus_rule_is_alerts_rules_and_alerts(tmp_path):
    promtool = need_binary("promtool")
    rule = one(render(EVERYTHING), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    sources = [yaml.safe_load((ROOT / "alerts" / name).read_text())["groups"]
               for name in ("rules.yml", "alerts.yml")]
    assert rule["spec"]["groups"] == sources[0] + sources[1]
    spec = tmp_path / "spec.yml"
    spec.write_text(yaml.safe_dump(rule["spec"]))
    done = subprocess.run([promtool, "check", "rules", str(spec)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    rules = sum(len(g["rules"]) for g in rule["spec"]["groups"])
    assert f"SUCCESS: {rules} rules found" in done.stdout


def test_dashboards_are_the_committed_json_one_configmap_each():
    objects = render(EVERYTHING)
    maps = [o for o in objects if o["kind"] == "ConfigMap"
            and o["metadata"]["labels"].get("grafana_dashboard") == "1"]
    committed = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
    assert len(maps) == len(committed) == 7
    by_file = {name: text for m in maps for name, text in m["data"].items()}
    assert sorted(by_file) == [p.name for p in committed]
    for path in committed:
        assert by_file[path.name].encode() == path.read_bytes(), path.name  # byte for byte
    for m in maps:
        assert m["metadata"]["annotations"] == {"grafana_folder": "LLM usage"}
    source = one(objects, "ConfigMap", "gw-llm-usage-exporter-datasource")
    assert source["metadata"]["labels"]["grafana_datasource"] == "1"
    datasources = yaml.safe_load(source["data"]["llm-usage-api.yaml"])["datasources"]
    assert {d["uid"]: d["url"] for d in datasources} == {
        "llm-usage-api": "http://gw-llm-usage-exporter-admin.llm.svc:9464",
        "llm-alertmanager-api": "http://kps-alertmanager.monitoring.svc:9093"}
    # The uids the dashboards' Infinity variables default to.
    overview = json.loads((ROOT / "grafana" / "dashboards" / "llm-overview.json").read_text())
    defaults = {v["current"]["value"] for v in overview["templating"]["list"]
                if v["type"] == "datasource" and v["query"] == datasources[0]["type"]}
    assert defaults == {d["uid"] for d in datasources}
    assert datasources[0]["secureJsonData"] == {"bearerToken": "$LLM_USAGE_ADMIN_TOKEN"}


def test_dashboard_labels_and_folder_are_yours_to_set():
    # Helm merges a map of values with the default's: null removes a default key.
    objects = render({"dashboards": {
        "enabled": True, "labels": {"grafana_dashboard": None, "dashboards": "llm"},
        "annotations": {"grafana_folder": None, "k8s-sidecar-target-directory": "/llm"}}})
    maps = [o for o in objects if o["kind"] == "ConfigMap" and "dashboards" in o[
        "metadata"]["labels"]]
    assert len(maps) == 7 and all("grafana_dashboard" not in m["metadata"]["labels"]
                                  for m in maps)
    assert [m["metadata"]["annotations"] for m in maps] == [
        {"k8s-sidecar-target-directory": "/llm"}] * 7


def test_the_charts_copies_equal_their_sources():
    done = subprocess.run([sys.executable, str(ROOT / "charts" / "sync.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def own_keys(schema: dict, prefix: str = "") -> set[str]:
    """The chart's own keys, by path: the schema's properties, not the insides of what is
    passed on as it is (resources, affinity, the inline config, label maps)."""
    keys = set()
    for name, sub in schema.get("properties", {}).items():
        keys.add(prefix + name)
        keys |= own_keys(sub, f"{prefix}{name}.")
    return keys


def test_every_value_is_documented_and_in_the_schema():
    """Every key of the chart's has a comment line of its own just above it in values.yaml,
    and the schema knows every key values.yaml sets."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    documented, seen, parents = set(), set(), []
    for i, line in enumerate(lines):
        key = re.match(r"^( *)([A-Za-z]\w*):", line)
        if not key:
            continue
        depth = len(key.group(1)) // 2
        parents[depth:] = [key.group(2)]
        path = ".".join(parents)
        seen.add(path)
        if lines[i - 1].strip().startswith("#"):
            documented.add(path)
    own = own_keys(json.loads((CHART / "values.schema.json").read_text()))
    assert sorted(own - documented) == []
    assert sorted(p for p in seen - own if not p.startswith(
        ("config.inline.", "resources.", "podSecurityContext.", "securityContext.",
         "dashboards.labels.", "dashboards.annotations."))) == []


def test_the_docs_show_the_install_and_real_values():
    section = (ROOT / "docs" / "fleet.md").read_text().split("## Kubernetes\n", 1)[1].split(
        "\n## ")[0]
    assert "helm install llm-gateway charts/llm-usage-exporter" in section
    own = own_keys(json.loads((CHART / "values.schema.json").read_text()))
    table = [line for line in section.splitlines() if line.startswith("| `")]
    named = {key for line in table for key in re.findall(r"`([\w.]+)`", line.split(" | ")[0])}
    assert len(named) > 20 and sorted(named - own) == []
    # The example values install as they are.
    example = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    objects = render(example, name="llm-gateway")
    assert one(objects, "ServiceMonitor")["metadata"]["labels"]["release"] == \
        "kube-prometheus-stack"
    # The kube-prometheus-stack settings a user must make are named.
    for setting in ("release: <its release name>", "serviceMonitorSelectorNilUsesHelmValues",
                    "enableFeatures: [exemplar-storage]", 'grafana_dashboard: "1"',
                    "folderAnnotation: grafana_folder", "kill -HUP 1",
                    "deploy/llm-gateway-llm-usage-exporter"):
        assert setting in section, setting
    deployment = one(objects, "Deployment")["metadata"]["name"]
    assert f"deploy/{deployment}" in section


def rendered_files(objects: list[dict], root: Path, secret: dict[str, str]):
    """The pod's command, environment and mounted files, laid out under `root`: every
    mount path of the container is root/<path>, the Secret's keys read from `secret`."""
    container = gateway_container(objects)
    entrypoint = re.search(r'(?m)^ENTRYPOINT \["([^"]+)"\]', (ROOT / "Dockerfile").read_text())
    command = [str(Path(sys.executable).parent / entrypoint.group(1))]
    mounts = {m["mountPath"]: root / m["mountPath"].lstrip("/") for m in container["volumeMounts"]}
    for path in mounts.values():
        path.mkdir(parents=True)
    # The config names mounted paths (history.path): each moved under root, in one pass.
    alternatives = "|".join(map(re.escape, mounts))
    mounted = re.compile(rf"(?<![\w/])({alternatives})/")
    [config_map] = [o for o in objects if o["kind"] == "ConfigMap"]
    for key, text in config_map["data"].items():
        text = mounted.sub(lambda m: f"{mounts[m.group(1)]}/", text)
        (mounts["/etc/llm-usage-exporter"] / key).write_text(text)
    args = [str(mounts["/etc/llm-usage-exporter"]) + a.removeprefix("/etc/llm-usage-exporter")
            if a.startswith("/etc/llm-usage-exporter/") else a for a in container["args"]]
    env = {**os.environ, "TMPDIR": str(mounts["/tmp"])}
    for e in container.get("env", ()):
        env[e["name"]] = e["value"] if "value" in e else secret[
            e["valueFrom"]["secretKeyRef"]["key"]]
    return command + args, env, mounts["/data"]


@pytest.mark.e2e
async def test_the_rendered_container_serves(aiohttp_server, replay, tmp_path,
                                             unused_tcp_port_factory):
    replay.routes["/v1/chat/completions"] = json_file("openai_chat_cached.json")
    upstream = str((await aiohttp_server(replay.app())).make_url("")).rstrip("/")
    proxy_port, admin_port = unused_tcp_port_factory(), unused_tcp_port_factory()
    objects = render({
        "config": {"inline": {"services": [{"name": "openai", "base_url": upstream,
                                            "api_key_env": "OPENAI_API_KEY"}]}},
        "secrets": {"existingSecret": "llm-gateway", "env": {"OPENAI_API_KEY": "openai"},
                    "adminTokenKey": "admin-token"},
        "service": {"port": proxy_port}, "adminService": {"port": admin_port}})
    secret = {"openai": "sk-upstream", "admin-token": "admin-secret"}
    argv, env, workdir = rendered_files(objects, tmp_path, secret)
    proc = await start(*argv, cwd=workdir, env=env, log=tmp_path / "gateway.log")
    try:
        # The probes' path and port; a gateway that stops instead fails the test at once.
        ready = asyncio.ensure_future(wait_ok(f"http://127.0.0.1:{admin_port}/healthz"))
        await asyncio.wait([ready, asyncio.ensure_future(proc.wait())],
                           return_when=asyncio.FIRST_COMPLETED)
        assert proc.returncode is None, (tmp_path / "gateway.log").read_text()
        await ready
        async with aiohttp.ClientSession() as s:
            async with s.post(f"http://127.0.0.1:{proxy_port}/openai/v1/chat/completions",
                              json={"model": "gpt-4o", "messages": []},
                              headers={"Authorization": "Bearer sk-client"}) as r:
                assert r.status == 200 and (await r.json())["model"].startswith("gpt-4o")
            # The upstream got the key from the Secret's variable, not the client's.
            assert replay.seen[-1].headers["Authorization"] == "Bearer sk-upstream"
            metrics = f"http://127.0.0.1:{admin_port}/metrics"
            async with s.get(metrics) as r:
                assert r.status == 401  # the admin token is required
            async with s.get(metrics, headers={"Authorization": "Bearer admin-secret"}) as r:
                assert 'llm_requests_total{' in await r.text()
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0
        assert (workdir / "llm-usage-history.db").is_file()  # on the claim's mount
    finally:
        await stop(proc)
