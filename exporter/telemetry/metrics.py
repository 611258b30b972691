"""Every metric the gateway exports: name, HELP, labels and buckets, in one place.

These names and labels are the project's public API (docs/reference/metrics.md lists each
one, made from these definitions): change them only with a deprecation period.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .. import __version__
from ..record import ErrorType, RequestRecord
from .exemplars import MAX_EXEMPLAR_ID as MAX_EXEMPLAR_ID  # bench.py reads it here
from .exemplars import ExemplarFile, ExemplarHistogram, exemplar_for
from .labels import OTHER, LabelLimiter
from .scrapes import Holds, Scrapes

# No `*_created` series: in the text format Prometheus stores each as a series of its own,
# which nearly doubled the series of every counter and histogram and the time to render
# /metrics; with --workers (multiprocess mode) there were none either.
prometheus_client.disable_created_metrics()

# Whole requests: embeddings return in ~10 ms, long reasoning or 10-minute streams at the top.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
# TTFT: sub-100 ms for small cached prompts, up to a minute for reasoning models that think
# before they speak; dense around 0.2-3 s where hosted chat models sit.
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 15,
                20, 30, 60)
# Per output token: 1 ms (small models on big GPUs) to 1 s (overloaded or CPU serving);
# 20-50 ms is typical of hosted models (25-50 tokens/s).
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1,
                0.15, 0.2, 0.3, 0.5, 1)
# Gateway overhead: the target is well under 0.5 ms, so resolution starts at 50 us;
# anything past 100 ms is a bug worth an alert, not a bucket.
OVERHEAD_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                    0.05, 0.1)


class Family(NamedTuple):
    """A metric built at scrape time by a collector elsewhere, declared here with the rest."""

    name: str
    documentation: str
    labels: tuple[str, ...] = ()


# Read from the request history at every scrape (store/collector.py), so they are right
# after a restart and agree across worker processes.
SPEND = Family("llm_spend_usd", "Fees of the current calendar day or month, in the "
               "configured time zone, from the request history.", ("api_key", "period"))
BUDGET = Family("llm_budget_usd", "Configured spending limit for the period.",
                ("api_key", "period"))
PROJECT_SPEND = Family("llm_project_spend_usd", "Fees of the current calendar day or month "
                       "by project, in the configured time zone, from the request history.",
                       ("project", "period"))
PROJECT_BUDGET = Family("llm_project_budget_usd", "Configured spending limit of a project "
                        "for the period.", ("project", "period"))
TUNING_IN_PROGRESS = Family("llm_fine_tuning_jobs_in_progress", "Fine-tuning jobs created "
                            "through the gateway and not yet seen to succeed, fail or be "
                            "cancelled, from the request history.")
HISTORY_ROWS = Family("llm_history_rows", "Rows in the history database.")
HISTORY_LAG = Family("llm_history_write_lag_seconds", "How long the oldest history row not yet "
                     "written has waited, in this process (0 when none waits).")
# The calendar day and month of llm_spend_usd, in the configured time zone: a month-end
# forecast is spend * (end - start) / (time() - start), whatever the zone.
PERIOD_START = Family("llm_period_start_timestamp_seconds", "Start of the current calendar "
                      "day or month in the configured time zone, as a Unix time.", ("period",))
PERIOD_END = Family("llm_period_end_timestamp_seconds", "End of the current calendar day or "
                    "month in the configured time zone, as a Unix time.", ("period",))

# A fine-tuning job's states (OpenAI's), and `created`: when it was created through the
# gateway.
FINE_TUNING_STATES = ("created", "validating_files", "queued", "running", "succeeded",
                      "failed", "cancelled")
# Outcomes whose series are made at zero the first time a service, provider, model, key
# and operation are seen: the failures the alerts' ratios read, so that the first failure
# of a model that has worked so far is seen by rate(), which cannot see a series born at 1.
# Three, not every status: each costs a series per model and key (a quarter more series in
# the benchmark's 40 models x 25 keys); others (503, 529, ...) appear when they occur.
ZERO_OUTCOMES = (("502", ErrorType.CONNECT_ERROR), ("504", ErrorType.TIMEOUT),
                 ("500", ErrorType.UPSTREAM_ERROR))


class Metrics:
    """The gateway's metrics, registered in the registry given (never the global one); in a
    worker process of --workers, the latency histograms' exemplars go to `exemplars`."""

    def __init__(self, registry: CollectorRegistry, *, max_models: int = 200,
                 max_api_keys: int = 1000, api_key_names=(), max_projects: int = 100,
                 projects=(), tag_labels=(), max_label_sets: int = 20_000,
                 exemplars: ExemplarFile | None = None, scrapes: Scrapes | None = None):
        self._children: dict[tuple, Any] = {}
        # New series of the counters totals are summed from, read at 0 before they count.
        self.holds = Holds(scrapes or Scrapes(), self._children)
        self._whos: set[tuple[str, ...]] = set()  # the label sets (`who`) seen so far
        self.max_label_sets = max_label_sets
        self._seen: set[tuple] = set()  # who (below) and operation
        self.model_label = LabelLimiter(max_models, always=("unknown",))
        self.api_key_label = LabelLimiter(max_api_keys, always=("none", *api_key_names))
        self.project_label = LabelLimiter(max_projects, always=("none", "other", *projects))
        # Tag keys made labels (attribution.tag_labels): each bounded like project.
        self.tag_labels = tuple((key, LabelLimiter(max_projects, always=("none", "other")))
                                for key in tag_labels)
        who = ["service", "provider", "model", "api_key", "project",
               *(f"tag_{key}" for key in tag_labels)]
        self.requests = Counter(
            "llm_requests", "Requests handled, by outcome. code is the HTTP status sent to "
            "the client (499: the client went away); error_type is none on success.",
            who + ["operation", "code", "error_type"], registry=registry)
        self.tokens = Counter(
            "llm_tokens", "Tokens in disjoint categories: summing any set of token_type "
            "values gives a true total.", who + ["direction", "token_type"], registry=registry)
        self.estimated_tokens = Counter(
            "llm_estimated_tokens", "Tokens estimated from text because the upstream "
            "reported no usage; already included in llm_tokens_total.",
            who + ["direction"], registry=registry)
        self.duration = ExemplarHistogram(
            "llm_request_duration_seconds", "Time from request arrival to the last byte "
            "sent to the client.", ["service", "provider", "model", "operation", "stream"],
            buckets=DURATION_BUCKETS, registry=registry, exemplars=exemplars)
        self.ttft = ExemplarHistogram(
            "llm_time_to_first_token_seconds", "Streams only: time from request arrival to "
            "the first content-bearing event written to the client.",
            ["service", "provider", "model"], buckets=TTFT_BUCKETS, registry=registry,
            exemplars=exemplars)
        self.tpot = Histogram(
            "llm_time_per_output_token_seconds", "Streams only: (duration - TTFT) / "
            "(output tokens - 1).", ["service", "provider", "model"],
            buckets=TPOT_BUCKETS, registry=registry)
        self.overhead = Histogram(
            "llm_gateway_overhead_seconds", "Time spent in the gateway itself: the request's "
            "duration less the time spent waiting on the upstream and on the client.",
            ["service"], buckets=OVERHEAD_BUCKETS, registry=registry)
        self.cost = Counter(
            "llm_cost_usd", "Fees in US dollars, in the same categories as llm_tokens_total: "
            "sum(increase(llm_cost_usd_total[1d])) is the day's bill.",
            who + ["direction", "token_type"], registry=registry)
        self.unpriced = Counter(
            "llm_unpriced_requests", "Requests that used tokens (or server tools) of a model "
            "with no known price for them; they cost nothing in llm_cost_usd_total.",
            ["service", "provider", "model"], registry=registry)
        self.assumed = Counter(
            "llm_assumed_price_tokens", "Tokens billed at an assumed price: their category "
            "has no price of its own in the table or the config, so its direction's text "
            "price was applied (already in llm_tokens_total and llm_cost_usd_total).",
            who + ["direction", "token_type"], registry=registry)
        self.units = Counter(
            "llm_billed_units", "What providers bill other than tokens: unit=audio_seconds "
            "(whisper-1, per second of audio) or characters (tts-1, per character of "
            "text); the fee is in llm_cost_usd_total with token_type the same.",
            who + ["unit"], registry=registry)
        self.tool_calls = Counter(
            "llm_tool_calls", "Calls of server-side tools the provider bills per call (web "
            "search); their fee is llm_cost_usd_total{direction=\"tool\"}.",
            who + ["tool"], registry=registry)
        self.fine_tuning_jobs = Counter(
            "llm_fine_tuning_jobs", "Fine-tuning jobs created through the gateway (status="
            "created) and each state they were seen to reach, once per job.",
            ["service", "status"], registry=registry)
        self.trained_tokens = Counter(
            "llm_fine_tuning_trained_tokens", "Tokens trained by fine-tuning jobs created "
            "through the gateway, counted once each has succeeded; their fee is "
            "llm_cost_usd_total{token_type=\"training\"}.", ["service", "model"],
            registry=registry)
        self.attribution = Counter(
            "llm_attribution_rejected", "Attribution values left out or cut to their bounds "
            "(field=project: not an allowed project, counted as other; user; tags); the "
            "request is served all the same.", ["field"], registry=registry)
        for field in ("project", "user", "tags"):
            self.attribution.labels(field)
        self.record_errors = Counter(
            "llm_record_errors", "Failures to account for a finished request (stage="
            "accounting: it is recorded with error_type accounting_error) or to hand its "
            "record to a sink (stage=metrics, history); the gateway goes on serving.",
            ["stage"], registry=registry)
        for stage in ("accounting", "metrics", "history"):  # at 0, so increase() sees the first
            self.record_errors.labels(stage)
        self.refused = Counter(
            "llm_connections_refused", "Client connections answered 503 and closed because "
            "limits.max_connections were open.", registry=registry)
        self.in_flight = Gauge(
            "llm_requests_in_flight", "Requests being handled now.", ["service"],
            registry=registry, multiprocess_mode="livesum")
        self.build_info = Gauge(
            "llm_build_info", "Always 1; the version label names the running release.",
            ["version"], registry=registry, multiprocess_mode="max")
        self.build_info.labels(__version__).set(1)
        self._held = {self.requests, self.tokens, self.estimated_tokens, self.cost,
                      self.unpriced, self.assumed, self.units, self.tool_calls}

    def observe(self, r: RequestRecord) -> None:
        """Count one finished request."""
        model = self.model_label(r.model)
        who = self._who(r, model)
        child = self._child
        seen = (*who, r.operation)
        if seen not in self._seen:
            self._seen.add(seen)
            for code, error_type in ZERO_OUTCOMES:
                child(self.requests, *seen, code, error_type)
        if not r.share:  # a further model of a request already counted: its usage only
            child(self.requests, *who, r.operation, str(r.code), r.error_type).inc()
        u = r.usage
        for direction, token_type, count in u.categories():
            child(self.tokens, *who, direction, token_type).inc(count)
        for direction, token_type, usd in r.fees:
            child(self.cost, *who, direction, token_type).inc(float(usd))  # Decimal until here
        if r.unpriced:
            child(self.unpriced, r.service, r.provider, model).inc()
        for direction, token_type, count in r.assumed:
            child(self.assumed, *who, direction, token_type).inc(count)
        if u.web_search_calls:
            child(self.tool_calls, *who, "web_search").inc(u.web_search_calls)
        if u.audio_seconds:
            child(self.units, *who, "audio_seconds").inc(u.audio_seconds)
        if u.input_characters:
            child(self.units, *who, "characters").inc(u.input_characters)
        if u.estimated_input:
            child(self.estimated_tokens, *who, "input").inc(u.estimated_input)
        if u.estimated_output:
            child(self.estimated_tokens, *who, "output").inc(u.estimated_output)
        if r.share:
            return
        exemplar = exemplar_for(r.request_id)
        child(self.duration, r.service, r.provider, model, r.operation,
              "true" if r.stream else "false").observe(r.duration, exemplar)
        if r.ttft is not None:
            child(self.ttft, r.service, r.provider, model).observe(r.ttft, exemplar)
            output = u.output_total
            if output > 1:
                child(self.tpot, r.service, r.provider, model).observe(
                    (r.duration - r.ttft) / (output - 1))
        child(self.overhead, r.service).observe(r.overhead)

    def _who(self, r: RequestRecord, model: str) -> tuple[str, ...]:
        """The labels saying whose a request's counts are, each bounded."""
        who = (r.service, r.provider, model, self.api_key_label(r.api_key),
               self.project_label(r.project))
        if self.tag_labels:
            tags = r.tags or {}
            who += tuple(bound(tags.get(key, "none")) for key, bound in self.tag_labels)
        if who not in self._whos:
            # Each label is capped, not their combinations: keys, models and projects a
            # client chooses could multiply. Past the cap, a new combination is `other`
            # but for its service, provider and model.
            if len(self._whos) >= self.max_label_sets:
                who = (*who[:3], *(OTHER,) * (len(who) - 3))
            self._whos.add(who)
        return who

    def attribution_rejected(self, field: str) -> None:
        self.attribution.labels(field).inc()

    def fine_tuning_services(self, services) -> None:
        """Make each service's job states at 0: increase() sees the first job's."""
        for service in services:
            for state in FINE_TUNING_STATES:
                self.fine_tuning_jobs.labels(service, state)

    def fine_tuning_created(self, r: RequestRecord, model: str) -> None:
        """Make a new job's trained tokens and training fee at 0, before they count."""
        model = self.model_label(model)
        self.trained_tokens.labels(r.service, model)
        self._child(self.cost, *self._who(r, model), "input", "training")

    def fine_tuning_state(self, service: str, state: str) -> None:
        self.fine_tuning_jobs.labels(service, state).inc()

    def fine_tuning_trained(self, service: str, model: str, tokens: int) -> None:
        self.trained_tokens.labels(service, self.model_label(model)).inc(tokens)

    def _child(self, metric, *labels):
        # labels() validates and locks on every call (about 2 us, profiled); a dict hit is
        # 20 times cheaper. Bounded: every label value here is capped or configured.
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            found = metric.labels(*labels)  # at 0, from the next scrape on
            if metric in self._held:
                found = self.holds.hold(key, found)
            self._children[key] = found
        return found
