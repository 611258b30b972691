"""The metrics of the gateway's work besides requests: the history's writer, the
deployments' prober, the scheduled reports and the reconciliation with the providers'
bills (docs/reference/metrics.md lists each one).

Declared apart from metrics.py's, not with them, only because one module of both passed
300 lines; they are still all in telemetry/, and the docs test reads both."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from .metrics import Family


class HistoryMetrics:
    """The request history's own health, in every worker process alike."""

    def __init__(self, registry: CollectorRegistry):
        self.dropped = Counter(
            "llm_history_dropped", "History rows dropped: the write queue was full, or the "
            "database never took them back before the gateway stopped.", registry=registry)
        self.write_errors = Counter(
            "llm_history_write_errors", "Failed attempts to write to the history database: a "
            "batch is tried again until the database takes it; a row it refuses is lost.",
            registry=registry)
        self.queue_size = Gauge(
            "llm_history_queue_size", "History rows waiting to be written.",
            registry=registry, multiprocess_mode="livesum")


class DeploymentMetrics:
    """The models the team serves itself: health, GPUs allocated, their time and cost.

    Set by the prober only (one process at a time): `livemostrecent` shows its values
    while it lives, and a replacement's as soon as it probes."""

    def __init__(self, registry: CollectorRegistry):
        gauge = {"registry": registry, "multiprocess_mode": "livemostrecent"}
        self.info = Gauge(
            "llm_deployment_info", "Always 1: what each deployment serves, and on what.",
            ["deployment", "model", "type", "gpu_type"], **gauge)
        self.up = Gauge(
            "llm_deployment_up", "1 when the deployment's last health probe (/health, else "
            "/v1/models) answered 2xx in time, else 0.", ["deployment"], **gauge)
        self.gpus = Gauge("llm_deployment_gpus", "GPUs allocated to the deployment.",
                          ["deployment"], **gauge)
        self.idle_after = Gauge(
            "llm_deployment_idle_alert_seconds", "Time up without a request after which "
            "LLMDeploymentIdle fires (idle_alert_minutes).", ["deployment"], **gauge)
        self.gpu_seconds = Counter(
            "llm_deployment_gpu_seconds", "GPU-seconds allocated while the deployment was "
            "up: GPUs times the time between two probes that both found it up.",
            ["deployment"], registry=registry)
        self.cost = Counter(
            "llm_deployment_cost_usd", "GPU-seconds times the hourly GPU price / 3600: what "
            "the deployment's time up cost.", ["deployment"], registry=registry)
        self.hosted = Counter(
            "llm_deployment_hosted_equivalent_usd", "What the deployment's traffic would "
            "have cost at the list price of the hosted model it is compared to (compare_to).",
            ["deployment", "model"], registry=registry)
        self.last_request = Gauge(
            "llm_deployment_last_request_timestamp_seconds", "Unix time the deployment's "
            "last request ended (its start-up time until one does).", ["deployment"],
            registry=registry, multiprocess_mode="max")


class ReportMetrics:
    """Scheduled reports, in the one process that makes them."""

    def __init__(self, registry: CollectorRegistry):
        self.reports = Counter(
            "llm_reports", "Scheduled reports delivered (outcome=delivered), and attempts "
            "that failed (outcome=failed: tried again after a backoff).",
            ["report", "outcome"], registry=registry)


class ReconcileMetrics:
    """Fetches of the providers' usage and cost reports, in the one process that fetches."""

    def __init__(self, registry: CollectorRegistry):
        self.failures = Counter(
            "llm_reconcile_fetch_failures", "Fetches of a provider account's usage or cost "
            "report that failed, by cause (auth, rate_limited, server_error, unreachable, "
            "rejected, malformed); tried again after a backoff.", ["account", "cause"],
            registry=registry)


# Read from the history at scrape time (store/reconcile_collector.py): the same from every
# replica of a fleet, so aggregate with max. `period` is the last whole UTC day (`day`) or
# the UTC month of that day up to its end (`month`), the providers' days.
RECONCILE_DRIFT = Family(
    "llm_reconcile_drift_usd", "Our fees less the provider's billed cost, by account and "
    "model, for the last whole UTC day or the month to that day.",
    ("account", "provider", "model", "period"))
RECONCILE_PROVIDER_FEE = Family(
    "llm_reconcile_provider_fee_usd", "The provider's billed cost, by account and model, for "
    "the last whole UTC day or the month to that day.", ("account", "provider", "model",
                                                         "period"))
RECONCILE_ALERT_SHARE = Family(
    "llm_reconcile_drift_alert_ratio", "The share of the provider's cost past which "
    "LLMReconcileDrift fires (drift_alert_share).", ("account",))
RECONCILE_LAST_SUCCESS = Family(
    "llm_reconcile_last_success_timestamp_seconds", "Unix time of the account's last fetch "
    "that stored its figures.", ("account",))
RECONCILE_FAILED_DAYS = Family(
    "llm_reconcile_failed_days", "Days of the account whose last fetch failed (their "
    "figures are missing or stale).", ("account",))
