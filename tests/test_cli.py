"""The first hour of a new user: each command as a user types it, in a subprocess; each
mistake one exact line on standard error and its exit status, never a traceback; and the
README's commands and URLs work as written."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import doc_blocks, docs_text

from exporter.cli.parser import build_parser
from exporter.devtools.simulator import Simulator

ROOT = Path(__file__).parent.parent
README = docs_text()  # and the site's pages: their commands and URLs
PROG = "llm-usage-exporter"


def run(*args, cwd=ROOT, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=60, **kw)


@pytest.mark.parametrize("args,line", [
    (("serve", "--upstrem", "https://api.openai.com"),
     f"{PROG}: unrecognized arguments: --upstrem https://api.openai.com "
     f"(see {PROG} serve --help)"),
    (("serve",), f"{PROG} serve: give --config FILE (several services) or --upstream URL "
                 f"(one) (see {PROG} serve --help)"),
    (("demo", "--rate", "0"),
     f"{PROG} demo: argument --rate: must be more than 0, not 0 (see {PROG} demo --help)"),
    (("demo", "--rate", "-1"),
     f"{PROG} demo: argument --rate: must be more than 0, not -1 (see {PROG} demo --help)"),
    (("demo", "--requests", "many"),
     f"{PROG} demo: argument --requests: 'many' is not a number (see {PROG} demo --help)"),
    (("serve", "--config", "missing.yaml"), "config: missing.yaml: No such file or directory"),
    (("prices", "gpt-4o", "--config", "missing.yaml"),
     "missing.yaml: No such file or directory"),
    (("export",), "no history database llm-usage-history.db in this folder: pass --config "
                  "FILE (the gateway's config, for its history.path) or --db PATH (or a "
                  "PostgreSQL URL)"),
    (("export", "--db", "none.db"), "--db: no file none.db"),
    (("export", "--db", "mysql://gateway@db/llm"),
     "--db: must be a postgresql:// URL, e.g. postgresql://gateway@db:5432/llm_usage (a "
     "SQLite file goes in history.path)"),
    (("serve", "--upstream", "api.openai.com"), "--upstream: must be an http:// or https:// URL"),
    (("serve", "--upstream", "https://api.openai.com", "--listen", "27083"),
     "--listen: must be HOST:PORT, for example 127.0.0.1:8080"),
    (("export", "--db", "postgresql://gateway:s3cret@db:5432/llm"),
     "--db: must not hold the password: set it in PGPASSWORD or in the variable "
     "history.password_env names"),
])
def test_a_mistake_is_one_line_and_status_2(args, line, tmp_path):
    done = run(*args, cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, line + "\n")


@pytest.mark.parametrize("args,flag", [
    (("report", "--db", "postgresql://gateway@127.0.0.1:1/llm"), "--db"),
    (("export", "--db", "postgresql://gateway@127.0.0.1:1/llm"), "--db"),
    (("demo", "--history", "postgresql://gateway@127.0.0.1:1/llm"), "--history"),
])
def test_a_history_server_not_there_is_one_line_and_status_1(args, flag, tmp_path):
    done = run(*args, cwd=tmp_path, env={**os.environ, "PGPASSWORD": "do-not-print-me"})
    assert (done.returncode, done.stderr) == (
        1, f"{flag}: cannot use the PostgreSQL history at 127.0.0.1:1: connection to server "
           'at "127.0.0.1", port 1 failed: Connection refused\n')


def test_a_history_path_that_cannot_be_written_is_one_line_and_status_1(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("history:\n  path: /nonexistent/folder/h.db\nservices:\n"
                      "  - name: a\n    base_url: https://api.openai.com\n")
    done = run("serve", "--config", str(config))
    assert (done.returncode, done.stderr) == (
        1, "config: history.path: /nonexistent/folder/h.db: its folder /nonexistent/folder "
           "does not exist\n")
    done = run("check-config", str(config))
    assert (done.returncode, done.stderr) == (
        1, f"{config}: history.path: /nonexistent/folder/h.db: its folder /nonexistent/folder"
           " does not exist\n")


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_a_port_in_use_is_one_line_and_status_1(command, tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    extra = ("--upstream", "http://127.0.0.1:9") if command == "serve" else ("--requests", "1")
    try:
        done = run(command, *extra, "--listen", f"127.0.0.1:{port}", "--admin-listen",
                   "127.0.0.1:0", cwd=tmp_path, env={**os.environ, "TMPDIR": str(tmp_path)})
    finally:
        taken.close()
    *before, last = done.stderr.splitlines()
    assert (done.returncode, last) == (
        1, f"{PROG} {command}: cannot listen on 127.0.0.1:{port}: address already in use: "
           "another process holds it; stop it, or choose another port (--listen, "
           "--admin-listen or the config's; with make demo, DEMO_ARGS=\"--listen ...\")")
    assert all(" INFO " in line for line in before), before  # serve's guess, said first
    assert not list(tmp_path.glob("llm-usage-demo-*"))  # the demo's folder is gone


def test_the_demo_leaves_nothing_behind(tmp_path, unused_tcp_port_factory):
    listen, admin = unused_tcp_port_factory(), unused_tcp_port_factory()
    done = run("demo", "--requests", "2", "--rate", "50", "--listen", f"127.0.0.1:{listen}",
               "--admin-listen", f"127.0.0.1:{admin}", cwd=tmp_path,
               env={**os.environ, "TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert "removed at the end" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_export_into_a_closed_pipe_ends_quietly(tmp_path):
    db = tmp_path / "h.db"
    with sqlite3.connect(db) as conn:  # an empty but real history
        conn.execute("CREATE TABLE requests (started_at REAL, api_key TEXT)")
    done = subprocess.run(
        f"{shlex.quote(sys.executable)} -m exporter export --db {db} --kind usage "
        "--from 2026-01-01 | head -c 1", shell=True, capture_output=True, text=True,
        cwd=ROOT, timeout=60)
    assert "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr


def test_config_example_passes_check_config_as_shipped():
    done = run("check-config", "config.example.yaml", env={
        k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_TOKEN"))})
    assert done.returncode == 0 and done.stdout == "config.example.yaml: OK\n"
    assert all(line.startswith("config.example.yaml: warning: ")
               for line in done.stderr.splitlines())


def test_check_config_names_a_duplicate_service_among_other_problems(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("services:\n  - name: a\n    base_url: https://api.openai.com\n"
                      "  - name: a\n    base_url: not-a-url\n")
    done = run("check-config", str(config))
    assert done.returncode == 1
    assert f"{config}: services[1].name: duplicate service name 'a'" in done.stderr
    assert f"{config}: services[1].base_url: must be an http:// or https:// URL" in done.stderr


async def test_simulator_answers_a_body_that_is_not_json_as_the_apis_do(aiohttp_client):
    client = await aiohttp_client(Simulator(seed=1).app())
    r = await client.post("/v1/chat/completions", data=b"not json")
    assert r.status == 400 and (await r.json())["error"]["type"] == "invalid_request_error"
    r = await client.post("/v1/messages", data=b"[1, 2]")
    assert r.status == 400 and (await r.json())["type"] == "error"


async def test_the_simulators_anthropic_usage_counts_as_anthropic_does(aiohttp_client):
    """input_tokens exclude the cache's reads and writes; message_delta repeats the input."""
    client = await aiohttp_client(Simulator(seed=3, first_token_delay=0, token_delay=0,
                                            error_rate=0).app())
    ask = {"model": "claude-haiku-4-5", "max_tokens": 16,
           "messages": [{"role": "user", "content": "x" * 400}]}  # 100 tokens, by 4 chars
    for _ in range(12):
        u = (await (await client.post("/v1/messages", json=ask)).json())["usage"]
        assert u["input_tokens"] + u["cache_read_input_tokens"] + \
            u["cache_creation_input_tokens"] == 100, u
    r = await client.post("/v1/messages", json={**ask, "stream": True})
    events = [json.loads(line[6:]) for line in (await r.text()).splitlines()
              if line.startswith("data: ")]
    start = events[0]["message"]["usage"]
    delta = next(e for e in events if e["type"] == "message_delta")["usage"]
    assert delta["input_tokens"] == start["input_tokens"] and delta["output_tokens"] == 16
    counted = await client.post("/v1/messages/count_tokens", json=ask)  # as the SDK asks
    assert (counted.status, await counted.json()) == (200, {"input_tokens": 100})


async def test_admin_index_lists_the_endpoints(admin, tmp_path):
    from prometheus_client import CollectorRegistry

    from exporter.store.database import Database
    api = await admin(CollectorRegistry(), db=Database(str(tmp_path / "h.db")), token="t")
    r = await api.get("/")
    assert r.status == 200  # open, like /healthz: it tells nothing of the traffic
    assert set((await r.json())["endpoints"]) == {"/", "/metrics", "/healthz",
                                                  "/api/requests", "/api/usage",
                                                  "/api/deployments", "/api/report",
                                                  "/api/forecast"}


# --- the README as written --------------------------------------------------------------

def blocks(language: str) -> list[str]:
    return [body for _, body in doc_blocks(language)]


def commands() -> list[list[str]]:
    """Every `llm-usage-exporter ...` command the README shows, as arguments: the lines of
    its shell blocks, and the commands written inline (not the table's [--flag] syntax)."""
    lines = [line for block in blocks("sh") for line in block.splitlines()]
    lines += [c for c in re.findall(rf"`({PROG} [^`]+)`", README) if "[" not in c]
    found = []
    for line in lines:
        words = shlex.split(line, comments=True)
        if words and words[0] == PROG:
            found.append(words[1:])
    return found


def test_every_command_the_readme_shows_parses():
    assert len(commands()) >= 3
    parser = build_parser()
    for args in commands():
        try:
            parser.parse_args(args)
        except SystemExit as e:  # --version prints and exits 0; a wrong flag exits 2
            assert e.code == 0, args


def test_the_readme_config_checks_and_its_base_urls_reach_its_services():
    assert ["serve", "--config", "deploy/local.yaml"] in commands()
    assert run("check-config", "deploy/local.yaml").stdout == "deploy/local.yaml: OK\n"
    services = {s["name"] for s in yaml.safe_load(
        (ROOT / "deploy" / "local.yaml").read_text())["services"]}
    paths = re.findall(r'base_url="http://127\.0\.0\.1:8080/([^"/]+)', "".join(blocks("python")))
    assert paths and set(paths) <= services


async def test_the_readme_urls_answer(admin, tmp_path):
    from prometheus_client import CollectorRegistry
    from test_api import ROWS, write_history

    from exporter.store.database import Database
    api = await admin(CollectorRegistry(),
                      db=write_history(Database(str(tmp_path / "h.db")), ROWS))
    urls = re.findall(r"http://127\.0\.0\.1:9464(/[^'\s`)]*)", "".join(blocks("sh")) + README)
    assert "/api/usage?group_by=api_key&order=fee&limit=5&from=2026-11-01&tz=Europe/Paris" \
        in urls
    for url in set(urls):
        r = await api.get(url)
        assert r.status == 200, (url, await r.text())


def test_readme_scrape_example_reads_the_token_where_prometheus_yml_does():
    readme = yaml.safe_load(next(b for b in blocks("yaml") if "scrape_configs" in b))
    shipped = (ROOT / "alerts" / "prometheus.yml").read_text()
    path = readme["scrape_configs"][0]["authorization"]["credentials_file"]
    assert f"credentials_file: {path}" in shipped


def test_compose_demo_prints_grafana():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["gateway-demo"]["environment"]["GRAFANA_URL"] == \
        "http://localhost:3000"


def test_check_config_warns_where_managed_keys_would_reach_an_upstream(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("require_api_key: true\napi_keys:\n  - name: a\n    sha256: "
                      + "ab" * 32 + "\nservices:\n  - name: openai\n"
                      "    base_url: https://api.openai.com\n    api_key_env: SOME_KEY\n"
                      "  - name: vllm\n    base_url: http://127.0.0.1:8000\n")
    done = run("check-config", str(config), env={**os.environ, "SOME_KEY": "x"})
    assert (done.returncode, done.stdout) == (0, f"{config}: OK\n")
    assert f"{config}: warning: services[1]: require_api_key is on and the service has no " \
           "api_key_env: clients' gateway keys are forwarded to it as its key\n" in done.stderr
    assert "services[0]" not in done.stderr


def test_reading_commands_upgrade_an_older_history_and_name_an_unwritable_output(tmp_path):
    from exporter.store.database import Database
    db = tmp_path / "old.db"
    Database(str(db)).migrate()
    with sqlite3.connect(db) as conn:  # as a release before m010 left it
        conn.execute("ALTER TABLE requests DROP COLUMN share")
        conn.execute("DROP INDEX idx_jobs_output_file_id")
        for table in ("reports_sent", "leases", "batches", "counters"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name >= 'm010'")
    done = run("export", "--db", str(db), "--from", "2026-11-01")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("requests,successful,failed,")
    done = run("report", "--db", str(db), "--output", str(tmp_path / "no" / "r.pdf"))
    assert (done.returncode, done.stderr) == (
        1, f"{tmp_path / 'no' / 'r.pdf'}: No such file or directory\n")


def test_prices_finds_the_models_own_provider_and_says_how_to_name_one():
    done = run("prices", "claude-sonnet-4-5")
    assert done.returncode == 0 and done.stdout.splitlines()[0] == (
        "claude-sonnet-4-5 (provider openai-compatible, service tier default): priced as "
        "claude-sonnet-4-5 by table provider anthropic (provider 'openai-compatible' is a "
        "guess: priced by the model's own name)")
    done = run("prices", "house-model-7b")
    assert done.returncode == 1 and done.stderr.rstrip().endswith(
        "If a provider sells it under this name, pass --provider NAME.")


def test_check_config_warns_of_a_base_url_that_doubles_v1(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("services:\n  - name: openai\n    base_url: https://api.openai.com/v1\n")
    done = run("check-config", str(config))
    assert done.stderr == (
        f"{config}: warning: services[0].base_url: https://api.openai.com/v1 ends in /v1, and "
        "clients send /v1/... themselves, so requests would go to "
        "https://api.openai.com/v1/v1/...: drop the /v1\n")


def test_a_negative_budget_is_one_problem_in_dollars(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("services:\n  - {name: x, base_url: 'http://x'}\n"
                      "budgets:\n  - {api_key: a, daily: -5}\n")
    done = run("check-config", str(config))
    assert done.stderr == f"{config}: budgets[0].daily: must be 0 or more (USD)\n"


def test_prices_with_a_config_needs_none_of_its_secrets_and_names_a_services_override():
    # config.example.yaml names variables set only where the gateway runs: no problem here.
    done = run("prices", "gpt-4o-audio-preview", "--config", "config.example.yaml",
               env={k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"})
    assert done.returncode == 0, done.stderr
    assert "pricing[0] prices gpt-4o-audio-preview* for the service openai only: pass " \
           "--service openai to see its prices" in done.stdout.splitlines()
    done = run("prices", "gpt-4o-audio-preview", "--config", "config.example.yaml",
               "--service", "openai")
    assert done.stdout.splitlines()[0] == (
        "gpt-4o-audio-preview (provider openai, service tier default): priced as "
        "gpt-4o-audio-preview* by the config (pricing_provider: openai)")
    assert "only: pass" not in done.stdout


async def test_the_simulators_responses_stream_works_with_the_sdks_stream_helper(aiohttp_server):
    import openai
    server = await aiohttp_server(Simulator(seed=2, first_token_delay=0, token_delay=0,
                                            error_rate=0).app())
    client = openai.AsyncOpenAI(api_key="sk-demo", base_url=str(server.make_url("/v1")))
    async with client.responses.stream(model="gpt-5-mini", input="Tell me a story.") as s:
        text = "".join([e.delta async for e in s if e.type == "response.output_text.delta"])
        final = await s.get_final_response()
    assert text and final.output_text == text and final.usage.output_tokens > 0
    await client.close()


async def test_the_simulator_answers_structured_output_tools_and_n_as_the_apis_do(
        aiohttp_server):
    """What instructor and the SDKs' parse helpers need: JSON that fits the schema asked
    for, a call of the tool forced, n choices (each billed), in streams too."""
    import anthropic
    import openai
    from pydantic import BaseModel

    class Invoice(BaseModel):
        customer: str
        total_usd: float
        lines: list[int]
        paid: bool

    server = await aiohttp_server(Simulator(seed=3, first_token_delay=0, token_delay=0,
                                            error_rate=0).app())
    client = openai.AsyncOpenAI(api_key="sk-demo", base_url=str(server.make_url("/v1")))
    ask = [{"role": "user", "content": "Read this invoice."}]
    parsed = await client.chat.completions.parse(model="gpt-4o", messages=ask,
                                                 response_format=Invoice)
    assert isinstance(parsed.choices[0].message.parsed, Invoice)
    tool = openai.pydantic_function_tool(Invoice)
    called = await client.chat.completions.parse(
        model="gpt-4o", messages=ask, tools=[tool],
        tool_choice={"type": "function", "function": {"name": "Invoice"}})
    [call] = called.choices[0].message.tool_calls
    assert isinstance(call.function.parsed_arguments, Invoice)
    assert called.choices[0].finish_reason == "tool_calls"
    async with client.chat.completions.stream(model="gpt-4o", messages=ask, tools=[tool],
                                              tool_choice="required") as s:
        final = await s.get_final_completion()
    assert isinstance(final.choices[0].message.tool_calls[0].function.parsed_arguments, Invoice)
    three = await client.chat.completions.create(model="gpt-4o", messages=ask, n=3,
                                                 max_tokens=5)
    # Three answers of 5 tokens: 15 completion tokens, as OpenAI bills every choice.
    assert [c.index for c in three.choices] == [0, 1, 2]
    assert three.usage.completion_tokens == 15
    await client.close()
    claude = anthropic.AsyncAnthropic(api_key="sk-ant-demo", base_url=str(server.make_url("")))
    schema = {"name": "invoice", "description": "an invoice",
              "input_schema": Invoice.model_json_schema()}
    message = await claude.messages.create(
        model="claude-haiku-4-5", max_tokens=50, messages=ask, tools=[schema],
        tool_choice={"type": "tool", "name": "invoice"})
    assert message.stop_reason == "tool_use"
    Invoice.model_validate(message.content[0].input)
    async with claude.messages.stream(model="claude-haiku-4-5", max_tokens=50, messages=ask,
                                      tools=[schema], tool_choice={"type": "any"}) as s:
        streamed = await s.get_final_message()
    Invoice.model_validate(streamed.content[0].input)
    await claude.close()


@pytest.mark.parametrize("command", ["export", "report", "reconcile", "check-config"])
def test_a_config_file_that_is_not_there_is_named_once(command, tmp_path):
    missing = tmp_path / "nope.yaml"
    args = ("check-config", str(missing)) if command == "check-config" else \
        (command, "--config", str(missing))
    done = run(*args)
    assert (done.returncode in (1, 2), done.stderr) == \
        (True, f"{missing}: No such file or directory\n")
