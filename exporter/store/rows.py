"""What the writer writes: a request as a row, and the ledgers' events, each a typed value.

A row's columns are its fields: the INSERT is made from them, so the two cannot drift.
"""

from __future__ import annotations

import dataclasses
import json
from typing import ClassVar, NamedTuple

from ..record import TOKEN_FIELDS, RequestRecord

MAX_ERROR_CHARS = 500

RequestRow = NamedTuple("RequestRow", [
    ("request_id", str), ("started_at", float), ("service", str), ("provider", str),
    ("model", str), ("api_key", str), ("operation", str), ("stream", int), ("status", int),
    ("error_type", str), ("error_message", str | None),
    *((c, int) for c in TOKEN_FIELDS),
    ("estimated_input", int), ("estimated_output", int), ("fee_usd", float),
    ("unpriced", int), ("service_tier", str | None), ("ttft_ms", float | None),
    ("duration_ms", float), ("overhead_ms", float), ("upstream_request_id", str | None),
    ("web_search_calls", int), ("audio_seconds", float), ("input_characters", int),
    ("fees", str | None), ("share", int), ("project", str), ("end_user", str | None),
    ("tags", str | None)])
COLUMNS = RequestRow._fields
INSERT_SQL = (f"INSERT INTO requests ({', '.join(COLUMNS)}) "
              f"VALUES ({', '.join('?' * len(COLUMNS))})")


def row(r: RequestRecord) -> RequestRow:
    """A record as a row; no prompt or completion text."""
    u = r.usage
    return RequestRow(
        request_id=r.request_id, started_at=r.started, service=r.service,
        provider=r.provider, model=r.model, api_key=r.api_key, operation=r.operation,
        stream=int(r.stream), status=r.code, error_type=r.error_type,
        error_message=r.error_message[:MAX_ERROR_CHARS] or None,
        **{c: getattr(u, c) for c in TOKEN_FIELDS},
        estimated_input=u.estimated_input, estimated_output=u.estimated_output,
        fee_usd=float(r.fee), unpriced=int(r.unpriced), service_tier=r.service_tier,
        ttft_ms=None if r.ttft is None else r.ttft * 1000, duration_ms=r.duration * 1000,
        overhead_ms=r.overhead * 1000, upstream_request_id=r.upstream_request_id or None,
        web_search_calls=u.web_search_calls, audio_seconds=u.audio_seconds,
        input_characters=u.input_characters, fees=_fees(r.fees), share=int(r.share),
        project=r.project, end_user=r.end_user, tags=tags_text(r.tags))


def tags_text(tags: dict[str, str] | None) -> str | None:
    """Tags as the history keeps them: JSON, keys sorted, ASCII, so that one tag is always
    the same text in any row (query.py's tag filter looks for it so)."""
    return json.dumps(tags, sort_keys=True, separators=(",", ":")) if tags else None


def _fees(fees) -> str | None:
    """A record's fees as {"direction_type": usd} JSON; None when there are none."""
    if not fees:
        return None
    by: dict[str, float] = {}
    for direction, token_type, usd in fees:
        key = f"{direction}_{token_type}"
        by[key] = by.get(key, 0.0) + float(usd)
    return json.dumps(by, separators=(",", ":"))


# --- the ledgers' events: each an upsert of one column set, queued with the rows ---------

@dataclasses.dataclass(frozen=True)
class Event:
    sql: ClassVar[str]

    def args(self) -> tuple:
        return dataclasses.astuple(self)


@dataclasses.dataclass(frozen=True)
class JobCreated(Event):
    """A batch, background response or fine-tuning job was created with this key."""

    job_id: str
    api_key: str
    at: float
    sql = ("INSERT INTO jobs (job_id, api_key, created_at) VALUES (?, ?, ?) ON CONFLICT "
           "(job_id) DO UPDATE SET api_key = excluded.api_key, "
           "created_at = excluded.created_at")


@dataclasses.dataclass(frozen=True)
class JobSeen(JobCreated):
    """A batch was seen (its status read) with this key: its creator only if none is known,
    so a poller through another replica never takes the creator's place."""

    sql = ("INSERT INTO jobs (job_id, api_key, created_at) VALUES (?, ?, ?) ON CONFLICT "
           "(job_id) DO UPDATE SET api_key = coalesce(jobs.api_key, excluded.api_key), "
           "created_at = coalesce(jobs.created_at, excluded.created_at)")


@dataclasses.dataclass(frozen=True)
class JobOutput(Event):
    """A batch's results are in this file."""

    job_id: str
    output_file_id: str
    sql = ("INSERT INTO jobs (job_id, output_file_id) VALUES (?, ?) ON CONFLICT (job_id) "
           "DO UPDATE SET output_file_id = excluded.output_file_id")


@dataclasses.dataclass(frozen=True)
class Uptime(Event):
    """A deployment's run of uptime, from its first good probe to its latest so far."""

    deployment: str
    started_at: float
    ended_at: float
    gpus: int
    gpu_hourly_usd: float
    model: str
    type: str
    sql = ("INSERT INTO deployment_uptime (deployment, started_at, ended_at, gpus, "
           "gpu_hourly_usd, model, type) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT "
           "(deployment, started_at) DO UPDATE SET ended_at = excluded.ended_at")
