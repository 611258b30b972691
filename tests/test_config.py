"""Configuration: defaults, every problem named by its YAML path, and the CLI around it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from exporter.config.load import load_config, parse_config, single_upstream
from exporter.config.schema import ConfigError

ROOT = Path(__file__).parent.parent
EXAMPLE_ENV = {"OPENAI_API_KEY": "sk-x", "BATCH_JOBS_KEY": "sk-y",
               "LLM_USAGE_ADMIN_TOKEN": "t", "SMTP_USER": "u", "SMTP_PASSWORD": "p",
               "OPENAI_ADMIN_KEY": "sk-admin-x", "ANTHROPIC_ADMIN_KEY": "sk-ant-admin-x"}


def cli(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, **(env or {})}, timeout=60,
                          **kw)


def test_minimal_config_gets_every_default():
    c = parse_config({"services": [{"name": "openai", "base_url": "https://api.openai.com"}]})
    s = c.services[0]
    assert (c.listen, c.admin_listen, c.log_level) == ("127.0.0.1:8080", "127.0.0.1:9464", "info")
    assert (s.provider, s.connect_timeout_seconds, s.read_timeout_seconds) == (
        "openai", 10.0, 600.0)
    assert (c.limits.max_models, c.limits.max_api_keys) == (200, 1000)
    assert c.limits.max_request_body_bytes == 32 * 1024 * 1024
    assert c.default is s


def test_every_problem_is_named_by_its_path():
    with pytest.raises(ConfigError) as e:
        parse_config({
            "listen": "8080",
            "services": [
                {"name": "ok", "base_url": "ftp://x", "timeout": 3},
                {"name": "ok", "base_url": "http://y", "read_timeout_seconds": 0,
                 "api_key_env": "MISSING_KEY"},
                {"base_url": "http://z", "connect_timeout_seconds": "fast"}],
            "api_keys": [{"name": "a", "sha256": "abc"}, {"name": "b"}],
            "limits": {"max_models": True},
            "surprise": 1,
        }, env={})
    assert e.value.problems == [
        "surprise: unknown key (known: services, listen, admin_listen, default_service, "
        "api_keys, require_api_key, limits, attribution, history, pricing, budgets, "
        "deployments, reports, "
        "smtp, reconcile, pricing_data, timezone, admin_token_env, workers, log_level, "
        "log_format)",
        "services[0].timeout: unknown key (known: name, base_url, provider, api_key_env, "
        "connect_timeout_seconds, read_timeout_seconds, inject_stream_usage, pricing_provider, "
        "aws_credentials, aws_region)",
        "services[0].base_url: must be an http:// or https:// URL",
        "services[1].read_timeout_seconds: must be greater than 0",
        "services[2].name: required",
        "services[2].connect_timeout_seconds: must be float, not str",
        "listen: must be HOST:PORT, for example 127.0.0.1:8080",
        "api_keys[0].sha256: must be 64 lowercase hex digits (printf %s \"$KEY\" | sha256sum)",
        "limits.max_models: must be int, not bool",
        # Found in the YAML itself, though services[0] and [2] could not be built.
        "services[1].name: duplicate service name 'ok'",
    ]


def test_cross_checks_after_types_pass():
    with pytest.raises(ConfigError) as e:
        parse_config({"default_service": "nope",
                      "services": [{"name": "a", "base_url": "http://x", "api_key_env": "K"},
                                   {"name": "a", "base_url": "http://y"}],
                      "api_keys": [{"name": "b"}, {"name": "b", "key_env": "NOT_SET"}]}, env={})
    assert e.value.problems == [
        "services[1].name: duplicate service name 'a'",
        "default_service: no service named 'nope'",
        "api_keys[0]: set exactly one of sha256 and key_env",
        "api_keys[1].name: duplicate key name 'b'",
        # Unset variables last: check-config turns these into warnings.
        "services[0].api_key_env: environment variable K is not set",
        "api_keys[1].key_env: environment variable NOT_SET is not set",
    ]


def test_upstream_key_is_read_from_env_and_never_printed():
    c = parse_config({"services": [{"name": "a", "base_url": "http://x", "api_key_env": "K"}]},
                     env={"K": "sk-secret-upstream"})
    assert c.services[0].api_key == "sk-secret-upstream"
    assert "sk-secret-upstream" not in repr(c)


def test_example_config_is_valid():
    c = load_config(str(ROOT / "config.example.yaml"), env=EXAMPLE_ENV)
    assert [s.name for s in c.services] == ["openai", "anthropic", "gemini", "bedrock", "vllm",
                                            "llama-70b"]
    assert c.services[1].api_format == "anthropic"


def test_single_upstream_takes_the_provider_it_is_given():
    assert single_upstream("https://api.anthropic.com",
                           provider="anthropic").services[0].provider == "anthropic"
    assert single_upstream("https://llm.example.com").services[0].provider == \
        "openai-compatible"


def test_check_config_cli(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("services:\n  - name: a\n    base_url: nowhere\nlisten: 1\n")
    out = cli("check-config", str(bad))
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"{bad}: services[0].base_url: must be an http:// or https:// URL",
        f"{bad}: listen: must be str, not int"]
    broken = tmp_path / "broken.yaml"
    broken.write_text("services: [\n")
    assert cli("check-config", str(broken)).returncode == 1
    ok = cli("check-config", str(ROOT / "config.example.yaml"), env=EXAMPLE_ENV)
    assert (ok.returncode, ok.stdout.strip()) == (0, f"{ROOT / 'config.example.yaml'}: OK")


def _wait_healthy(url: str, proc, deadline: float = 20.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                return r.read()
        except OSError:
            time.sleep(0.05)  # polling a starting process, bounded by the deadline
    raise AssertionError(f"{url} never answered")


def test_serve_with_only_an_upstream_then_sigterm(unused_tcp_port_factory, tmp_path):
    listen, admin = unused_tcp_port_factory(), unused_tcp_port_factory()
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--upstream",
                             "http://127.0.0.1:9", "--listen", f"127.0.0.1:{listen}",
                             "--admin-listen", f"127.0.0.1:{admin}"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert b'"ok"' in _wait_healthy(f"http://127.0.0.1:{admin}/healthz", proc)
        with pytest.raises(urllib.error.HTTPError) as e:  # upstream port 9 refuses: 502
            urllib.request.urlopen(f"http://127.0.0.1:{listen}/v1/models", timeout=5)
        assert e.value.code == 502
        line = ('llm_requests_total{api_key="none",code="502",error_type="connect_error",'
                'model="unknown",operation="other",project="none",provider="self-hosted",'
                'service="default"} ')
        # A new series is read at 0 by a scrape before its count shows (metrics.py).
        deadline = time.monotonic() + 30
        while (line + "1.0") not in (metrics := urllib.request.urlopen(
                f"http://127.0.0.1:{admin}/metrics").read().decode()):
            assert line + "0.0" in metrics and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        # The guess is said at start, and how to change it.
        first = proc.stderr.readline().decode()
        assert first.endswith(" INFO exporter.config: --upstream http://127.0.0.1:9: provider "
                              "self-hosted guessed from the host (provider 'self-hosted' is "
                              "self-hosted: no cloud price); --provider NAME sets it\n"), first
        # The history file sits in the working directory, and holds the request's row.
        with sqlite3.connect(tmp_path / "llm-usage-history.db") as db:
            assert db.execute("SELECT status, error_type FROM requests").fetchall() == [
                (502, "connect_error")]
    finally:
        proc.kill()
        proc.wait()


def test_demo_runs_and_counts(unused_tcp_port_factory, tmp_path):
    listen, admin = unused_tcp_port_factory(), unused_tcp_port_factory()
    out = cli("demo", "--requests", "12", "--rate", "50", "--listen", f"127.0.0.1:{listen}",
              "--admin-listen", f"127.0.0.1:{admin}", "--history", str(tmp_path / "demo.db"))
    assert out.returncode == 0, out.stderr
    assert f"http://127.0.0.1:{admin}/metrics" in out.stdout
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("counted 12 requests (") and " 0 tokens" not in last, last
    assert not last.endswith("$0.000000"), last  # the simulated models are all priced
    assert "Traceback" not in out.stderr
    path = next(line.split()[-1] for line in out.stdout.splitlines()
                if line.strip().startswith("history:"))
    assert path == str(tmp_path / "demo.db")  # kept where asked; a temporary one is removed
    with sqlite3.connect(path) as db:  # every demo request is in the history
        assert db.execute("SELECT count(*) FROM requests").fetchone() == (12,)


@pytest.mark.parametrize("url,problem", [
    ("mysql://gateway@db/llm", "must be a postgresql:// URL, e.g. postgresql://gateway@db:5432/"
                               "llm_usage (a SQLite file goes in history.path)"),
    ("/var/lib/llm/history.db", "must be a postgresql:// URL, e.g. postgresql://gateway@db:5432/"
                                "llm_usage (a SQLite file goes in history.path)"),
    ("postgresql://gateway@db:port/llm", "its port must be a number from 0 to 65535"),
    ("postgresql://gateway:s3cret@db:5432/llm", "must not hold the password: set it in "
                                                "PGPASSWORD or in the variable "
                                                "history.password_env names"),
    ("postgresql://gateway@db:5432/llm?sslmode=require&password=s3cr%zzet",
     "must not hold the password: set it in PGPASSWORD or in the variable "
     "history.password_env names"),
    ("postgresql://gateway@db:5432", "must name the database: "
                                     "postgresql://USER@HOST:PORT/DATABASE"),
])
def test_a_history_url_check_config_cannot_use_is_named(tmp_path, url, problem):
    config = tmp_path / "c.yaml"
    config.write_text(f"history:\n  url: {url}\nservices:\n"
                      "  - {name: openai, base_url: 'https://api.openai.com'}\n")
    done = cli("check-config", str(config))
    assert (done.returncode, done.stderr) == (1, f"{config}: history.url: {problem}\n")


def test_a_password_env_is_for_a_postgresql_history(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("history:\n  password_env: DB_PASSWORD\nservices:\n"
                      "  - {name: openai, base_url: 'https://api.openai.com'}\n")
    done = cli("check-config", str(config))
    assert (done.returncode, done.stderr) == (
        1, f"{config}: history.password_env: a password is for a PostgreSQL history: set "
           "history.url\n")
    config.write_text("history:\n  url: postgresql://gateway@db:5432/llm\n"
                      "  password_env: DB_PASSWORD\nservices:\n"
                      "  - {name: openai, base_url: 'https://api.openai.com'}\n")
    done = cli("check-config", str(config), env={"DB_PASSWORD": ""})
    assert (done.returncode, done.stdout) == (0, f"{config}: OK\n")
    assert f"{config}: warning: history.password_env: environment variable DB_PASSWORD is " \
           "not set: set it before `serve`\n" in done.stderr
