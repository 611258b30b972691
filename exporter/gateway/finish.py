"""The end of a request: its usage and fee, and the records it ends in.

A request ends in one record. A batch's results are metered here, when they pass, at the
batch price and for the key that created the batch; results in several models add one
record per further model, marked `share` (counted for tokens and fees, not as requests).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any, NamedTuple

from prometheus_client import Counter

from ..accounting.operations import RESPONSES
from ..accounting.pricing import Pricing
from ..accounting.reading import Reading
from ..accounting.settle import settle, settle_batch
from ..record import ErrorType, RequestRecord
from ..telemetry.logs import log_request
from .jobs import CREATE, RESPONSE, RESULTS, STATUS, TUNE, TUNING, Job, Jobs
from .tuning import follow

# The kinds of job request whose bill the ledger decides (a claim, a state, a creator).
READS_LEDGER = frozenset((RESULTS, RESPONSE, TUNE, TUNING))

log = logging.getLogger(__name__)
Sink = Callable[[RequestRecord], object]  # where every finished record goes


class Ended(NamedTuple):
    """A request the gateway is done with, to be billed."""

    rec: RequestRecord
    ok: bool  # the upstream answered 2xx
    request_body: Any  # the request's JSON, where it was read
    reading: Reading | None  # what its answer reported; None if nobody read it
    pricing: Pricing  # the prices as they were when it arrived
    job: Job | None  # the batch, response or fine-tuning job it is about


def account(ended: Ended, jobs: Jobs) -> list[RequestRecord]:
    """Bill a finished request that reads no job's ledger; return every record it ends in."""
    rec, reading, job = ended.rec, ended.reading, ended.job
    if ended.ok and job is not None and job.kind in (CREATE, STATUS):
        _track(rec, reading, jobs, job.kind == CREATE)
        return [rec]
    settle(rec, ended.ok, ended.request_body, reading, ended.pricing)
    whole = reading.whole if reading is not None else None
    if ended.ok and rec.operation == RESPONSES and job is None and whole is not None \
            and whole.get("background") and isinstance(whole.get("id"), str):
        jobs.create(whole["id"], rec.api_key, rec.started)  # metered when fetched done
    return [rec]


async def account_job(ended: Ended, jobs: Jobs) -> list[RequestRecord]:
    """The same for a request that reads a job (kind in READS_LEDGER): a batch's results,
    a background response, a fine-tuning job, whose claims the ledger decides."""
    rec, job = ended.rec, ended.job
    assert job is not None
    if not ended.ok:
        return account(ended, jobs)
    if job.kind == RESULTS:
        return await _results(ended, job, jobs)
    whole = ended.reading.whole if ended.reading is not None else None
    if job.kind in (TUNE, TUNING):
        return await follow(rec, whole, job.kind, ended.pricing, jobs)
    if not (whole is not None and whole.get("background") is True
            and whole.get("status") == "completed" and job.job_id is not None
            and await jobs.claim(job.job_id, rec.started)):
        return [rec]  # not a background response's first completed fetch: no cost
    _attribute(rec, await jobs.creator(job.job_id))
    return account(ended, jobs)  # its usage


async def through_cancel(work: Coroutine[Any, Any, list[RequestRecord]],
                        ) -> tuple[asyncio.Future[list[RequestRecord]], bool]:
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


def _track(rec: RequestRecord, reading: Reading | None, jobs: Jobs, created: bool) -> None:
    """Note who created a batch (or, polling it, who saw it), and where its output went."""
    whole = reading.whole if reading is not None else None
    if whole is None or not isinstance(whole.get("id"), str):
        return
    if whole.get("type") == "message_batch" or whole.get("object") == "batch":
        (jobs.create if created else jobs.seen)(whole["id"], rec.api_key, rec.started)
        output = whole.get("output_file_id")
        if isinstance(output, str) and output:
            jobs.output(whole["id"], output)


def _attribute(rec: RequestRecord, creator: tuple[str, float] | None) -> None:
    if creator is not None:
        rec.api_key = creator[0]


async def _results(ended: Ended, job: Job, jobs: Jobs) -> list[RequestRecord]:
    """Meter a batch's results once, each model at its batch price."""
    rec = ended.rec
    totals = ended.reading.totals if ended.reading is not None else None
    if not totals or job.job_id is None:
        return [rec]  # not a batch's results (an input file, say): nothing to bill
    # Claimed by the id it was fetched by (an output file's, or a batch's): another
    # replica may not know yet which batch a file is the output of.
    batch = await jobs.batch_of(job.job_id)
    if not await jobs.claim(job.job_id, rec.started,
                            (batch,) if batch != job.job_id else ()):
        return [rec]  # downloaded again: metered the first time
    _attribute(rec, await jobs.creator(batch))
    return settle_batch(rec, totals, ended.pricing)


def accounting_failed(rec: RequestRecord) -> RequestRecord:
    """The record of a request whose usage or fee could not be worked out: what is known,
    and an error type saying so (the gateway's fault: the alerts count it)."""
    log_request(log, logging.ERROR, rec.request_id, "its usage and fee could not be worked "
                "out", exc_info=True)
    rec.error_type = ErrorType.ACCOUNTING_ERROR
    rec.error_message = "the gateway could not work out this request's usage and fee"
    rec.fees, rec.fee, rec.assumed = [], Decimal(0), []
    return rec


def deliver(records: list[RequestRecord], sinks: list[Sink], failed: Failures) -> None:
    """Hand each record, made safe, to every sink; one that fails keeps the others going."""
    for r in records:
        r.make_safe()
        for sink in sinks:
            try:
                sink(r)
            except Exception:
                failed(_name(sink))


def _name(sink: Sink) -> str:
    owner = getattr(sink, "__self__", sink)
    return type(owner).__name__.lower()  # metrics, history, ...


class Failures:
    """Count failures by stage in llm_record_errors_total; log each stage's first failure,
    with its traceback, then at most once a minute."""

    def __init__(self, counter: Counter, clock: Callable[[], float] = time.monotonic):
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
