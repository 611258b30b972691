"""Fine-tuning jobs created through the gateway, followed as their client polls them.

OpenAI's `POST /v1/fine_tuning/jobs` answers the job; `GET /v1/fine_tuning/jobs/{id}`, the
list and `.../cancel` answer it again in a later state (validating_files, queued, running,
succeeded, failed, cancelled). Each state a job created here is seen to reach is counted
once; a succeeded job's `trained_tokens` once, and billed at the `training` price of the
config's pricing (the price table has none) as a record of its own: counted for its fee,
not as a request, for the key that created the job.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from decimal import Decimal
from typing import Any

from ..accounting.pricing import Pricing
from ..record import RequestRecord, Usage
from .jobs import FINE_TUNING, TUNE, Jobs

CREATED = "created"  # the state counted when a job is created through the gateway


async def follow(rec: RequestRecord, whole: dict[str, Any] | None, kind: str, pricing: Pricing,
                 jobs: Jobs) -> list[RequestRecord]:
    """Count what the answer says of fine-tuning jobs; return the records it ends in."""
    records = [rec]
    found = whole.get("data") if isinstance(whole, dict) and whole.get("object") == "list" \
        else [whole]
    named = whole.get("model") if whole is not None and found == [whole] else None
    if isinstance(named, str) and named and rec.model == "unknown":
        rec.model = named  # one job's request: its model, not `unknown` in every ranking
    for job in found if isinstance(found, list) else ():
        if not (isinstance(job, dict) and job.get("object") == "fine_tuning.job"
                and isinstance(job.get("id"), str)):
            continue
        job_id, state = job["id"], job.get("status")
        if kind == TUNE:
            jobs.create(job_id, rec.api_key, rec.started)
            if jobs.counts is not None and isinstance(job.get("model"), str):
                jobs.counts.fine_tuning_created(rec, job["model"])
            await _count(jobs, rec, job_id, CREATED)
        creator = await jobs.creator(job_id)
        if creator is None:  # not created through the gateway: not ours
            continue
        if isinstance(state, str) and state:
            await _count(jobs, rec, job_id, state[:32])
        tokens = job.get("trained_tokens")
        if state == "succeeded" and isinstance(tokens, int) and not isinstance(tokens, bool) \
                and tokens > 0 and await jobs.claim(job_id, rec.started):
            records.append(_trained(rec, job, tokens, pricing, jobs, creator))
    return records


async def _count(jobs: Jobs, rec: RequestRecord, job_id: str, state: str) -> None:
    if await jobs.reached(job_id, state) and jobs.counts is not None:
        jobs.counts.fine_tuning_state(rec.service, state)


def _trained(rec: RequestRecord, job: dict[str, Any], tokens: int, pricing: Pricing,
             jobs: Jobs, creator: tuple[str, float]) -> RequestRecord:
    """The record of a succeeded job's training: its tokens' fee, for its creator."""
    named = job.get("model")
    model = named if isinstance(named, str) else rec.model
    r = dataclasses.replace(rec, request_id=f"{rec.request_id}#training", share=True,
                            operation=FINE_TUNING, model=model, usage=Usage(), fees=[],
                            fee=Decimal(0), assumed=[],
                            api_key=creator[0])
    if jobs.counts is not None:
        jobs.counts.fine_tuning_trained(rec.service, model, tokens)
    price = training_price(pricing, rec.service, model)
    if price is None:
        r.unpriced = True
    else:
        usd = Decimal(tokens) * price / 1_000_000
        r.fees, r.fee = [("input", "training", usd)], usd
    return r


def training_price(pricing: Pricing, service: str, model: str) -> Decimal | None:
    """USD per million trained tokens of fine-tuning `model`: the config's only."""
    for o in pricing.overrides:
        if o.training is not None and o.service in (None, service) \
                and fnmatch.fnmatchcase(model, o.model):
            return Decimal(str(o.training))
    return None
