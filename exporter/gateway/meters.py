"""Which meter reads an upstream's answer: by what the request is and what the answer says
it is (its content type and encoding)."""

from __future__ import annotations

import zlib

from ..accounting.batch import BatchMeter
from ..accounting.body import ResponseBody
from ..accounting.eventstream import EventStreamMeter
from ..accounting.operations import INVOKE, OTHER
from ..accounting.reading import Meter
from ..accounting.stream import MEDIA, StreamMeter
from ..record import RequestRecord
from ..wire.upstream import Connection
from .headers import DECODABLE, invoke_usage
from .jobs import RESULTS, Job


def meter_for(rec: RequestRecord, job: Job | None, upstream: Connection,
              strip_usage: bool) -> Meter | None:
    """The meter of this answer, or None for one nobody reads; marks a stream as one."""
    encoding = upstream.header(b"content-encoding").decode("latin-1").lower()
    wbits = DECODABLE.get(encoding)
    decoder = zlib.decompressobj(wbits) if wbits else None
    content_type = upstream.header(b"content-type")
    if job is not None and job.kind == RESULTS:
        return BatchMeter(decoder)
    if rec.operation == OTHER and job is None:
        return None
    if content_type.startswith(b"text/event-stream"):
        rec.stream = True
        return StreamMeter(rec.operation, strip_usage)
    if content_type.startswith(b"application/vnd.amazon.eventstream"):
        rec.stream = True
        return EventStreamMeter(rec.operation)
    if rec.operation == INVOKE:  # the maker's own body; Bedrock's usage in its headers
        return ResponseBody(rec.operation, decoder=decoder, reported=invoke_usage(upstream))
    if rec.operation not in MEDIA or content_type.startswith(b"application/json"):
        return ResponseBody(rec.operation, decoder=decoder)
    return None  # speech's audio: nothing to read there
