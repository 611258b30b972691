"""Read a YAML config into the key table, collecting every problem with its YAML path.

`check-config` prints them all at once; what no single key can check (unique names,
environment variables set, the default service) is checked here after the table is built.
"""

from __future__ import annotations

import dataclasses
import os

import yaml

from .budgets import PAYERS
from .schema import ConfigError, build
from .table import Config, PriceOverride, Service


def _repeated(names) -> set[int]:
    """The index of each name given before in `names` (None is no name)."""
    seen, out = set(), set()
    for i, name in enumerate(names):
        if name is not None and name in seen:
            out.add(i)
        seen.add(name)
    return out


def _duplicate_services(data) -> list[str]:
    """Service names used twice, read from the YAML itself: found even when a service has
    other problems (and the table could not be built)."""
    services = data.get("services") if isinstance(data, dict) else None
    services = services if isinstance(services, list) else []
    names = [s.get("name") if isinstance(s, dict) and isinstance(s.get("name"), str)
             else None for s in services]
    return [f"services[{i}].name: duplicate service name {names[i]!r}"
            for i in sorted(_repeated(names))]


def _cross_check(config: Config, env, problems: list[str], unset: list[str]) -> Config:
    """Check what no single key can: env vars set, the default service, unique keys.
    An environment variable that is not set goes to `unset`."""
    seen, services = set(), []
    for i, s in enumerate(config.services):
        seen.add(s.name)
        key = None
        if s.api_key_env:
            key = env.get(s.api_key_env)
            if not key:
                unset.append(f"services[{i}].api_key_env: environment variable "
                             f"{s.api_key_env} is not set")
        if s.aws_credentials == "gateway" and not s.aws_region \
                and "bedrock-runtime" not in s.base_url:
            problems.append(f"services[{i}].aws_region: needed with aws_credentials: gateway "
                            "when the base_url is not bedrock-runtime.REGION.amazonaws.com")
        services.append(dataclasses.replace(s, api_key=key))
    free = []  # a deployment's tokens cost nothing: its cost is its GPU time
    for i, d in enumerate(config.deployments):  # each deployment is a service too
        if d.name in seen:
            problems.append(f"deployments[{i}].name: {d.name!r} is a service's name already")
        seen.add(d.name)
        services.append(Service(d.name, d.base_url, d.provider, pricing_provider="none"))
        free.append(PriceOverride("*", 0.0, 0.0, service=d.name))
    if not services:
        problems.append("services: at least one service (or deployment) is required")
    if config.default_service is not None and config.default_service not in seen:
        problems.append(f"default_service: no service named {config.default_service!r}")
    for i, o in enumerate(config.pricing):
        if o.service is not None and o.service not in seen:
            problems.append(f"pricing[{i}].service: no service named {o.service!r}")
        if (o.input is None or o.output is None) and (
                o.training is None or o.input is not None or o.output is not None):
            problems.append(f"pricing[{i}]: set input and output (or, for a fine-tuning "
                            "price alone, only training)")
    held: dict[tuple[str, str], int] = {}
    for i, b in enumerate(config.budgets):
        named = [kind for kind in PAYERS if getattr(b, kind) is not None]
        if len(named) != 1:
            problems.append(f"budgets[{i}]: set one of api_key, project or user (what the "
                            "budget holds to its limit)" + (", not " + " and ".join(named)
                                                            if named else ""))
        elif b.payer in held:
            problems.append(f"budgets[{i}]: {b.payer[0]} {b.payer[1]} has a budget already "
                            f"(budgets[{held[b.payer]}]): one budget, with daily and monthly")
        else:
            held[b.payer] = i
        said = any(p.startswith((f"budgets[{i}].daily", f"budgets[{i}].monthly"))
                   for p in problems)  # a value refused already: not missing as well
        if b.daily is None and b.monthly is None and not said:
            problems.append(f"budgets[{i}]: set daily, monthly or both")
        if b.enforce and not config.history.enabled:
            problems.append(f"budgets[{i}].enforce: needs the history (history.enabled), "
                            "where the spend is kept")
    history = config.history
    if history.password_env and not history.url:
        problems.append("history.password_env: a password is for a PostgreSQL history: set "
                        "history.url")
    elif history.password_env and not env.get(history.password_env):
        unset.append(f"history.password_env: environment variable {history.password_env} "
                     "is not set")
    if config.admin_token_env and not env.get(config.admin_token_env):
        unset.append(f"admin_token_env: environment variable {config.admin_token_env} "
                     "is not set")
    repeated = _repeated(k.name for k in config.api_keys)
    for i, k in enumerate(config.api_keys):
        if (k.sha256 is None) == (k.key_env is None):
            problems.append(f"api_keys[{i}]: set exactly one of sha256 and key_env")
        elif k.key_env and not env.get(k.key_env):
            unset.append(f"api_keys[{i}].key_env: environment variable {k.key_env} is not set")
        if i in repeated:
            problems.append(f"api_keys[{i}].name: duplicate key name {k.name!r}")
        for j, name in enumerate(k.services):
            if name not in seen:
                problems.append(f"api_keys[{i}].services[{j}]: no service named {name!r}")
    repeated = _repeated(r.name for r in config.reports)
    for i, r in enumerate(config.reports):
        where = f"reports[{i}]"
        if i in repeated:
            problems.append(f"{where}.name: duplicate report name {r.name!r}")
        if not (r.directory or r.webhook_url or r.email_to):
            problems.append(f"{where}: set a directory, a webhook_url or email_to")
        if r.directory and not os.path.isdir(r.directory):
            problems.append(f"{where}.directory: {r.directory} is not a directory")
        if r.link_base and not r.webhook_url:
            problems.append(f"{where}.link_base: a link is posted to webhook_url: set it")
        if r.email_to and config.smtp is None:
            problems.append(f"{where}.email_to: needs smtp: the mail server")
        if not config.history.enabled:
            problems.append(f"{where}: needs the history (history.enabled), which it reads")
    for key in ("user_env", "password_env"):
        variable = getattr(config.smtp, key, None)
        if variable and not env.get(variable):
            unset.append(f"smtp.{key}: environment variable {variable} is not set")
    _check_reconcile(config, seen, problems, unset, env)
    if config.require_api_key and not config.api_keys:
        problems.append("require_api_key: no api_keys are configured, so every request "
                        "would be refused")
    return dataclasses.replace(config, services=tuple(services),
                               pricing=config.pricing + tuple(free))


def _check_reconcile(config: Config, services: set, problems: list[str], unset: list[str],
                     env) -> None:
    repeated = _repeated(a.name for a in config.reconcile)
    for i, a in enumerate(config.reconcile):
        where = f"reconcile[{i}]"
        if i in repeated:
            problems.append(f"{where}.name: duplicate account name {a.name!r}")
        if not env.get(a.admin_key_env):
            unset.append(f"{where}.admin_key_env: environment variable {a.admin_key_env} is "
                         "not set")
        if not a.services:
            problems.append(f"{where}.services: name the services whose traffic it pays for")
        for j, name in enumerate(a.services):
            if name not in services:
                problems.append(f"{where}.services[{j}]: no service named {name!r}")
        if a.project_id and a.provider != "openai":
            problems.append(f"{where}.project_id: an OpenAI project; for Anthropic, set "
                            "workspace_id")
        if a.workspace_id and a.provider != "anthropic":
            problems.append(f"{where}.workspace_id: an Anthropic workspace; for OpenAI, set "
                            "project_id")
        if not config.history.enabled:
            problems.append(f"{where}: needs the history (history.enabled), where the "
                            "providers' figures are kept beside ours")
        # Pruned days would be fetched again at every run, and compared with none of ours.
        elif a.backfill_days > config.history.retention_days:
            problems.append(f"{where}.backfill_days: {a.backfill_days} is more than "
                            f"history.retention_days ({config.history.retention_days:g}): "
                            "days the history no longer keeps cannot be compared")


def key_warnings(config: Config) -> list[str]:
    """Mistakes that are no errors: what would let a client's gateway key reach an
    upstream, or a client escape an enforced budget; a base URL that would double /v1."""
    out = []
    if config.require_api_key:
        out += [f"services[{i}]: require_api_key is on and the service has no api_key_env: "
                "clients' gateway keys are forwarded to it as its key"
                for i, s in enumerate(config.services) if not s.api_key_env]
    else:
        out += [f"budgets[{i}]: an enforced budget for every key (*) without require_api_key "
                "holds each key a client presents to its own budget: a new key is a new one"
                for i, b in enumerate(config.budgets) if b.api_key == "*" and b.enforce]
        out += [f"budgets[{i}]: an enforced project budget without require_api_key holds "
                "only the clients that name the project (X-LLM-Project): another name, or "
                "none, escapes it" for i, b in enumerate(config.budgets)
                if b.project is not None and b.enforce]
    # The form SDK docs give (https://api.openai.com/v1): the client's path has /v1 already.
    out += [f"services[{i}].base_url: {s.base_url} ends in /v1, and clients send /v1/... "
            f"themselves, so requests would go to {s.base_url.rstrip('/')}/v1/...: drop the /v1"
            for i, s in enumerate(config.services) if s.base_url.rstrip("/").endswith("/v1")]
    return out


def parse_config(data, env=os.environ, unset: list[str] | None = None) -> Config:
    """Build a Config from parsed YAML, or raise ConfigError listing every problem.

    An environment variable the config names but the environment lacks is a problem, or,
    given `unset`, is listed there (check-config: the variables are set where it serves).
    """
    problems: list[str] = []
    missing: list[str] = []
    config = build(Config, data if data is not None else {}, "", problems)
    problems += _duplicate_services(data)
    if config is not None:
        config = _cross_check(config, env, problems, missing)
    if unset is None:
        problems += missing
    else:
        unset += missing
    if problems:
        raise ConfigError(problems)
    return config


def load_config(path: str, env=os.environ, unset: list[str] | None = None) -> Config:
    """Read and check a YAML config file (`unset`: as parse_config)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError([f"{path}: {e.strerror}"]) from None
    except yaml.YAMLError as e:
        raise ConfigError([f"{path}: not valid YAML: {e}"]) from None
    return parse_config(data, env, unset)


def single_upstream(url: str, *, provider: str = "openai-compatible",
                    listen: str | None = None, admin_listen: str | None = None) -> Config:
    """Build the config of `serve --upstream URL`: one service named `default` (its provider
    guessed from the URL by the command line: accounting/table.py)."""
    data = {"services": [{"name": "default", "base_url": url, "provider": provider}]}
    if listen:
        data["listen"] = listen
    if admin_listen:
        data["admin_listen"] = admin_listen
    return parse_config(data)
