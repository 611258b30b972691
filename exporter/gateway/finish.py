"""The end of a request: its usage and fee, and the records it ends in.

A request ends in one record. A batch's results are metered here, when they pass, at the
batch price and for the key that created the batch; results in several models add one
record per further model, marked `share` (counted for tokens and fees, not as requests).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from decimal import Decimal

from ..accounting.batch import BatchMeter
from ..accounting.bill import count_usage, error_message, price
from ..accounting.operations import RESPONSES
from ..accounting.pricing import Pricing
from ..record import ErrorType, RequestRecord
from ..telemetry.logs import log_request
from .jobs import CREATE, RESPONSE, RESULTS, STATUS, TUNE, TUNING, Job, Jobs

# The kinds of job request whose bill the ledger decides (a claim, a state, a creator).
READS_LEDGER = frozenset((RESULTS, RESPONSE, TUNE, TUNING))
from .tuning import follow

log = logging.getLogger("llm_usage_exporter")


def account(rec: RequestRecord, ok: bool, body_json, meter, collected, pricing: Pricing,
            jobs: Jobs, job: Job | None) -> list[RequestRecord]:
    """Fill the record of a finished request that reads no job's ledger; return every
    record it ends in."""
    if not ok:
        if collected is not None and not rec.error_message:
            rec.error_message = error_message(collected)
        return [rec]
    if job is not None and job.kind in (CREATE, STATUS):
        _track(rec, collected, jobs, job.kind == CREATE)
        return [rec]
    whole = count_usage(rec, body_json, meter, collected)
    if rec.operation == RESPONSES and isinstance(whole, dict) and whole.get("background") \
            and isinstance(whole.get("id"), str) and job is None:
        jobs.create(whole["id"], rec.api_key, rec.started)  # metered when fetched done
    price(rec, pricing)
    return [rec]


async def account_job(rec: RequestRecord, ok: bool, body_json, meter, collected,
                      pricing: Pricing, jobs: Jobs, job: Job) -> list[RequestRecord]:
    """The same for a request that reads a job (kind in READS_LEDGER): a batch's results,
    a background response, a fine-tuning job, whose claims the ledger decides."""
    if not ok:
        return account(rec, ok, body_json, meter, collected, pricing, jobs, job)
    if job.kind == RESULTS:
        return await _results(rec, meter, pricing, jobs, job)
    _, _, whole = collected.parse() if collected is not None else (None, None, None)
    if job.kind in (TUNE, TUNING):
        return await follow(rec, whole, job.kind, pricing, jobs)
    if not (isinstance(whole, dict) and whole.get("background") is True
            and whole.get("status") == "completed"
            and await jobs.claim(job.job_id, rec.started)):
        return [rec]  # not a background response's first completed fetch: no cost
    _attribute(rec, await jobs.creator(job.job_id))
    return account(rec, ok, body_json, meter, collected, pricing, jobs, job)  # its usage


async def through_cancel(work) -> tuple[asyncio.Future, bool]:
    """Await `work` to its end even if this task is cancelled meanwhile (a shutdown that
    stops waiting): a job's claim, once asked of the ledger, is decided, and the request's
    record must follow it. Return the finished work (its result() is the records, or
    raises what it raised) and whether a cancel came."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            cancelled = True
        except Exception:
            pass  # the caller's result() raises it
    return task, cancelled


def _track(rec: RequestRecord, collected, jobs: Jobs, created: bool) -> None:
    """Note who created a batch (or, polling it, who saw it), and where its output went."""
    _, _, whole = collected.parse() if collected is not None else (None, None, None)
    if not isinstance(whole, dict) or not isinstance(whole.get("id"), str):
        return
    if whole.get("type") == "message_batch" or whole.get("object") == "batch":
        (jobs.create if created else jobs.seen)(whole["id"], rec.api_key, rec.started)
        output = whole.get("output_file_id")
        if isinstance(output, str) and output:
            jobs.output(whole["id"], output)


def _attribute(rec: RequestRecord, creator) -> None:
    if creator is not None:
        rec.api_key = creator[0]


async def _results(rec: RequestRecord, meter: BatchMeter, pricing: Pricing, jobs: Jobs,
                   job: Job) -> list[RequestRecord]:
    """Meter a batch's results once, each model at its batch price."""
    if meter is None or not meter.totals:
        return [rec]  # not a batch's results (an input file, say): nothing to bill
    # Claimed by the id it was fetched by (an output file's, or a batch's): another
    # replica may not know yet which batch a file is the output of.
    batch = await jobs.batch_of(job.job_id)
    if not await jobs.claim(job.job_id, rec.started,
                            (batch,) if batch != job.job_id else ()):
        return [rec]  # downloaded again: metered the first time
    _attribute(rec, await jobs.creator(batch))
    records = []
    for i, ((model, _), usage) in enumerate(sorted(meter.totals.items())):
        r = rec if i == 0 else dataclasses.replace(
            rec, request_id=f"{rec.request_id}#{i + 1}", share=True, fees=[], assumed=[])
        r.model, r.usage = model, usage
        price(r, pricing, batch=True)
        records.append(r)
    return records


def accounting_failed(rec: RequestRecord) -> RequestRecord:
    """The record of a request whose usage or fee could not be worked out: what is known,
    and an error type saying so (the gateway's fault: the alerts count it)."""
    log_request(log, logging.ERROR, rec.request_id, "its usage and fee could not be worked "
                "out", exc_info=True)
    rec.error_type = ErrorType.ACCOUNTING_ERROR
    rec.error_message = "the gateway could not work out this request's usage and fee"
    rec.fees, rec.fee, rec.assumed = [], Decimal(0), []
    return rec


def deliver(records: list[RequestRecord], sinks, failed) -> None:
    """Hand each record, made safe, to every sink; one that fails keeps the others going."""
    for r in records:
        r.make_safe()
        for sink in sinks:
            try:
                sink(r)
            except Exception:
                failed(_name(sink))


def _name(sink) -> str:
    owner = getattr(sink, "__self__", sink)
    return type(owner).__name__.lower()  # metrics, history, ...


class Failures:
    """Count failures by stage in llm_record_errors_total; log each stage's first failure,
    with its traceback, then at most once a minute."""

    def __init__(self, counter, clock=time.monotonic):
        self.counter, self.clock = counter, clock
        self.logged: dict[str, float] = {}

    def count(self, stage: str) -> None:
        self.counter.labels(stage).inc()

    def __call__(self, stage: str) -> None:
        self.count(stage)
        now = self.clock()
        if now - self.logged.get(stage, -60.0) >= 60:
            self.logged[stage] = now
            log.exception("a request's record failed in %s; requests are still served, "
                          "and llm_record_errors_total{stage=%r} counts it", stage, stage)
