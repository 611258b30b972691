"""The metrics of the gateway's work besides requests: the history's writer, the
deployments' prober and the scheduled reports (README.md documents each one).

Declared apart from metrics.py's, not with them, only because one module of both passed
300 lines; they are still all in telemetry/, and the docs test reads both."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


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
