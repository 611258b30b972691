"""The key table: frozen dataclasses, a default, a check and a doc line for every key.

The YAML file mirrors these classes (load.py reads it). Secrets never appear in the file:
keys are read from environment variables named there.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from .attribution import Attribution
from .budgets import Budget
from .checks import (
    check_database_url,
    check_env_var,
    check_hostport,
    check_name,
    check_positive,
    check_sha256,
    check_timezone,
    check_url,
    one_of,
)
from .reconcile import ReconcileAccount
from .reports import ScheduledReport, Smtp
from .schema import setting

PROVIDER_FORMATS = {"anthropic": "anthropic"}  # every other provider speaks OpenAI's format


@dataclass(frozen=True)
class Service:
    """One upstream the gateway forwards to, reachable at /<name>/..."""

    name: str = setting(doc="service name: the `service` label and the path prefix /<name>/",
                        check=check_name)
    base_url: str = setting(doc="upstream URL without /v1, e.g. https://api.openai.com",
                            check=check_url)
    provider: str = setting("openai", "the `provider` label: openai, anthropic, vllm, ... "
                            "(anthropic selects Anthropic's error format and key header)",
                            check=check_name)
    api_key_env: str | None = setting(
        None, "environment variable holding an upstream key that replaces the client's "
        "(sent as the API asks: Authorization: Bearer, x-api-key to Anthropic's Messages, "
        "x-goog-api-key to Gemini's own API)",
        check=check_env_var)
    connect_timeout_seconds: float = setting(10.0, "time allowed to connect to the upstream",
                                             check=check_positive)
    read_timeout_seconds: float = setting(
        600.0, "longest silence allowed between two reads from the upstream: a reasoning "
        "model may think for minutes before its first byte", check=check_positive)
    inject_stream_usage: bool = setting(
        True, "ask OpenAI-style streams for usage (stream_options.include_usage) when the "
        "client did not, and remove it from what the client receives", check=None)
    pricing_provider: str | None = setting(
        None, "the price table's provider for this service's models: a table id (openai, "
        "anthropic, google, deepseek, ...), auto (by each model's name) or none (never a "
        "cloud price). Default: the provider label's, auto for openai-compatible, none for "
        "self-hosted servers", check=check_name)
    aws_credentials: str = setting(
        "client", "Bedrock: whose credentials reach AWS. client: the request passes as it "
        "came (a Bedrock API key as Authorization: Bearer). gateway: the client's SigV4 "
        "signature is dropped and the request signed again with the gateway's own AWS "
        "credentials (environment, profile, web identity)", check=one_of("client", "gateway"))
    aws_region: str | None = setting(
        None, "Bedrock: the region signed for with aws_credentials: gateway (default: the "
        "base_url's, bedrock-runtime.REGION.amazonaws.com)", check=check_name)
    api_key: str | None = field(default=None, repr=False, metadata={"internal": True})

    @property
    def api_format(self) -> str:
        return PROVIDER_FORMATS.get(self.provider, "openai")


@dataclass(frozen=True)
class ApiKey:
    """A client key: its name (the `api_key` label instead of a hash), and what it may use."""

    name: str = setting(doc="the `api_key` label value for this key", check=check_name)
    sha256: str | None = setting(None, "SHA-256 hex digest of the key (safe to commit; "
                                 "`llm-usage-exporter keys new NAME` makes a key and its "
                                 "digest)", check=check_sha256)
    key_env: str | None = setting(None, "or: environment variable holding the key itself",
                                  check=check_env_var)
    services: tuple[str, ...] = setting((), "the services this key may use (default: every "
                                        "one); others are refused with 403")
    models: tuple[str, ...] = setting((), "the models this key may ask for, * and ? "
                                      "matching any text, e.g. gpt-4o-mini* (default: every "
                                      "one); others are refused with 403")
    project: str | None = setting(None, "the project this key's requests are charged to "
                                  "(the `project` label); a header cannot change it",
                                  check=check_name)


@dataclass(frozen=True)
class Limits:
    """Bounds that keep the gateway and Prometheus safe from unusual clients."""

    max_request_body_bytes: int = setting(
        32 << 20, "larger request bodies are refused with 413 (images inline as base64 are "
        "large; OpenAI accepts up to about 20 MB of images)", check=check_positive)
    max_models: int = setting(200, "distinct `model` label values; later ones become `other`",
                              check=check_positive)
    max_api_keys: int = setting(1000, "distinct `api_key` label values; later ones become "
                                "`other`", check=check_positive)
    max_projects: int = setting(100, "distinct `project` (and each tag_KEY) label values; "
                                "later ones become `other`", check=check_positive)
    max_label_sets: int = setting(
        20_000, "distinct combinations of service, provider, model, api_key, project and "
        "tags; later ones count as api_key, project and tags `other`", check=check_positive)
    # Every wait has a limit, generous enough for a phone on a slow network.
    head_timeout_seconds: float = setting(
        60.0, "time a client has to send a request's line and headers; then 408 and the "
        "connection closed", check=check_positive)
    body_timeout_seconds: float = setting(
        120.0, "longest silence while a client sends a request's body; then 408 (or the "
        "request cut), recorded as client_timeout", check=check_positive)
    client_timeout_seconds: float = setting(
        120.0, "longest a client may take nothing of an answer while the gateway holds the "
        "upstream back for it; then the answer is cut, recorded as client_timeout (not "
        "counted against the upstream)", check=check_positive)
    max_connections: int = setting(
        4096, "client connections at once; more are answered 503 and closed (each costs "
        "a file descriptor)", check=check_positive)


def _price(v):
    if v < 0:
        return "must be 0 or more (USD per million tokens)"


def _usd(doc, default=None):
    return setting(default, doc, check=_price)


@dataclass(frozen=True)
class PriceOverride:
    """Prices in USD per million tokens that win over the genai-prices table."""

    model: str = setting(doc="model name as the upstream reports it; * and ? match any text, "
                         "e.g. gpt-4o-2024-* or * for every model of a self-hosted service")
    input: float | None = _usd("input text (required, but in an entry of training only)")
    output: float | None = _usd("output text (required, but in an entry of training only)")
    service: str | None = setting(None, "only for this service (default: every service)")
    cache_read: float | None = _usd("cache reads (default: anthropic 0.1 x input, else input)")
    cache_write: float | None = _usd("5-minute cache writes (default: anthropic 1.25 x input, "
                                     "else input)")
    cache_write_1h: float | None = _usd("1-hour cache writes (default: anthropic 2 x input, "
                                        "else cache_write)")
    reasoning: float | None = _usd("reasoning output (default: output)")
    input_audio: float | None = _usd("audio input (default: input)")
    output_audio: float | None = _usd("audio output (default: output)")
    input_image: float | None = _usd("image input (default: input)")
    output_image: float | None = _usd("image output (default: output)")
    training: float | None = _usd("fine-tuning: per million trained tokens (the price table "
                                  "has none; default: unpriced)")

    def per_category(self) -> dict:
        return {"input_text": self.input, "output_text": self.output,
                "cache_read": self.cache_read, "cache_write_5m": self.cache_write,
                "cache_write_1h": self.cache_write_1h, "reasoning": self.reasoning,
                "input_audio": self.input_audio, "output_audio": self.output_audio,
                "input_image": self.input_image, "output_image": self.output_image}


@dataclass(frozen=True)
class HistoryConfig:
    """The request history: one row per request, in SQLite or, for a fleet, PostgreSQL."""

    enabled: bool = setting(True, "record every request in the history database")
    path: str = setting("llm-usage-history.db", "SQLite database file, relative to the "
                        "working directory (without `url`)")
    url: str | None = setting(
        None, "PostgreSQL database shared by every replica, postgresql://USER@HOST:PORT/DB "
        "(libpq parameters such as ?sslmode=require may follow); instead of `path`",
        check=check_database_url)
    password_env: str | None = setting(
        None, "environment variable holding the PostgreSQL password (default: libpq's "
        "PGPASSWORD or ~/.pgpass); never in the file", check=check_env_var)
    retention_days: float = setting(90.0, "rows older than this are deleted, hourly (on "
                                    "PostgreSQL, a whole UTC day at a time)",
                                    check=check_positive)
    queue_size: int = setting(10000, "rows waiting to be written; past it rows are dropped "
                              "and counted in llm_history_dropped_total", check=check_positive)


@dataclass(frozen=True)
class Deployment:
    """A model the team serves itself on reserved GPUs: a service costed by its GPU time."""

    name: str = setting(doc="the `deployment` label, and its service name: traffic to "
                        "/<name>/... goes to it", check=check_name)
    model: str = setting(doc="the model it serves, as the `model` label of its info")
    base_url: str = setting(doc="its OpenAI-compatible server without /v1, e.g. "
                            "http://10.0.0.7:8000", check=check_url)
    type: str = setting("deployment", "deployment or fine-tuning (a fine-tuned model)",
                        check=one_of("deployment", "fine-tuning"))
    gpus: int = setting(1, "GPUs allocated to it", check=check_positive)
    gpu_type: str | None = setting(None, "the `gpu_type` label, e.g. H100-80GB (default "
                                   "unknown)")
    gpu_hourly_usd: float | None = setting(None, "price of one GPU for one hour (default: "
                                           "no cost)", check=_price)
    provider: str = setting("vllm", "the `provider` label of its traffic (vllm, tgi, sglang, "
                            "ollama, ...)", check=check_name)
    probe_interval_seconds: float = setting(15.0, "how often its health is probed (/health, "
                                            "else /v1/models)", check=check_positive)
    probe_timeout_seconds: float = setting(5.0, "a probe without an answer this long finds "
                                           "it down", check=check_positive)
    idle_alert_minutes: float = setting(60.0, "LLMDeploymentIdle fires after this long up "
                                        "with no request", check=check_positive)
    compare_to: str | None = setting(None, "a hosted model (e.g. gpt-4o-mini) whose list "
                                     "price its traffic is also costed at, for comparison")


@dataclass(frozen=True)
class Config:
    """The whole gateway configuration."""

    services: tuple[Service, ...] = setting(doc="the upstreams (at least one)")
    listen: str = setting("127.0.0.1:8080", "HOST:PORT for client traffic", check=check_hostport)
    admin_listen: str = setting("127.0.0.1:9464", "HOST:PORT for /metrics, /healthz and /api/*, "
                                "never exposed where client traffic arrives", check=check_hostport)
    default_service: str | None = setting(None, "service also reachable at / (default: the "
                                          "first service)")
    api_keys: tuple[ApiKey, ...] = setting((), "names for client keys (default: key-<first 8 "
                                           "hex digits of the key's SHA-256>)")
    require_api_key: bool = setting(
        False, "managed keys: refuse with 401 every request whose key is not in api_keys, "
        "before it reaches an upstream")
    limits: Limits = setting(Limits(), "bounds on bodies and label values")
    attribution: Attribution = setting(Attribution(), "the project, end user and tags a "
                                       "request is charged to")
    history: HistoryConfig = setting(HistoryConfig(), "the request history")
    pricing: tuple[PriceOverride, ...] = setting((), "price overrides and additions, tried in "
                                                 "order before the genai-prices table")
    budgets: tuple[Budget, ...] = setting((), "spending limits per API key, project or "
                                           "end user")
    deployments: tuple[Deployment, ...] = setting((), "models served on the team's own GPUs, "
                                                  "each also a service")
    reports: tuple[ScheduledReport, ...] = setting((), "reports made on a schedule and "
                                                   "delivered")
    smtp: Smtp | None = setting(None, "the mail server of reports sent by e-mail")
    reconcile: tuple[ReconcileAccount, ...] = setting(
        (), "provider accounts whose own usage and cost reports are compared with the "
        "gateway's, every day")
    pricing_data: str | None = setting(
        None, "a newer genai-prices data file (its data.json, downloaded by you) to price "
        "from instead of the one bundled with the package; never fetched by the gateway")
    timezone: str = setting("UTC", "IANA time zone of the calendar days and months of "
                            "llm_spend_usd and budgets", check=check_timezone)
    admin_token_env: str | None = setting(
        None, "environment variable holding a bearer token that /metrics and /api/* then "
        "require", check=check_env_var)
    workers: int = setting(1, "gateway processes sharing the listen ports (SO_REUSEPORT); "
                           "each can use about one core", check=check_positive)
    log_level: str = setting("info", "debug, info, warning or error",
                             check=one_of("debug", "info", "warning", "error"))
    log_format: str = setting("text", "text (one line per event) or json (one object per "
                              "line)", check=one_of("text", "json"))

    @property
    def default(self) -> Service:
        name = self.default_service or self.services[0].name
        return next(s for s in self.services if s.name == name)

    def admin_token(self, env=os.environ) -> str | None:
        return env.get(self.admin_token_env) if self.admin_token_env else None

    def keys_by_digest(self, env=os.environ) -> dict[str, ApiKey]:
        """Map SHA-256 hex digests of client keys to their entries."""
        keys = {}
        for k in self.api_keys:
            secret = env.get(k.key_env) if k.key_env else None
            if k.sha256 or secret:  # an unset variable names no key (check-config says so)
                keys[k.sha256 or hashlib.sha256(secret.encode()).hexdigest()] = k
        return keys
