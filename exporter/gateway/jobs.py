"""Work billed after the request that started it: batches, background responses and
fine-tuning jobs.

A batch is created by one request, polled by others, and its results downloaded later,
perhaps by another key, through another replica and more than once; a background response
is created queued and fetched, with its usage, when done. Each is metered once: when its
results (or its completed response) pass through the gateway, attributed to the key that
created it. A fine-tuning job created through the gateway is followed as its client polls
it: each state it is seen to reach is counted once, and its trained tokens once it has
succeeded. With a history, the ledger of created and metered jobs is in its database,
shared by every process and replica and kept across restarts; memory holds what this
process has seen, so a job's later requests through it need no round trip.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..record import RequestRecord
from ..store.ledger import JobLedger
from ..store.rows import Event, JobCreated, JobOutput, JobSeen

CREATE, STATUS, RESULTS, RESPONSE = "create", "status", "results", "response"
TUNE, TUNING = "tune", "tuning"  # create a fine-tuning job; read (or cancel, list) them
BATCH, FINE_TUNING = "batch", "fine_tuning"  # operation labels
# The operation label of requests that read a job: its results, or the response itself.
JOB_OPERATIONS = {RESULTS: BATCH, RESPONSE: "responses", TUNE: FINE_TUNING,
                  TUNING: FINE_TUNING}
_PATHS = (
    ("POST", re.compile(r"/v1/(?:messages/)?batches$"), CREATE),
    ("GET", re.compile(r"/v1/batches/([^/]+)$"), STATUS),
    ("GET", re.compile(r"/v1/files/([^/]+)/content$"), RESULTS),
    ("GET", re.compile(r"/v1/messages/batches/([^/]+)/results$"), RESULTS),
    ("GET", re.compile(r"/v1/responses/(resp_[^/]+)$"), RESPONSE),
    ("POST", re.compile(r"/v1/fine_tuning/jobs$"), TUNE),
    ("GET", re.compile(r"/v1/fine_tuning/jobs(?:/([^/]+))?$"), TUNING),
    ("POST", re.compile(r"/v1/fine_tuning/jobs/([^/]+)/cancel$"), TUNING),
)


@dataclass(frozen=True)
class Job:
    """What a request does to a job: create it, read its status, its results or itself."""

    kind: str
    job_id: str | None  # from the path: a batch, an output file or a response id


def job_request(method: str, path: str) -> Job | None:
    # Most requests are none of these: four substring tests instead of eight patterns.
    if "/batches" not in path and "/files/" not in path and "/responses/" not in path \
            and "/fine_tuning/" not in path:
        return None
    path = path.rstrip("/")
    for verb, pattern, kind in _PATHS:
        if method == verb and (found := pattern.search(path)):
            return Job(kind, found.group(1) if found.groups() else None)
    return None


class FineTuningCounts(Protocol):
    """Where fine-tuning jobs are counted (telemetry's Metrics)."""

    def fine_tuning_created(self, r: RequestRecord, model: str) -> None: ...

    def fine_tuning_state(self, service: str, state: str) -> None: ...

    def fine_tuning_trained(self, service: str, model: str, tokens: int) -> None: ...


class Jobs:
    """The ledger: who created each job, which file holds a batch's output, what was
    metered, the states a fine-tuning job was seen in. `persist(event)` queues a creation
    for the history's writer; `ledger` decides claims for every process (None without a
    history: this process's memory alone decides). Bounded in memory."""

    def __init__(self, persist: Callable[[Event], None] | None = None,
                 ledger: JobLedger | None = None, counts: FineTuningCounts | None = None,
                 limit: int = 100_000):
        self.persist, self.ledger, self.limit = persist, ledger, limit
        self.counts = counts  # where fine-tuning jobs are counted (the Metrics)
        self.created: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self.outputs: OrderedDict[str, str] = OrderedDict()  # output file -> batch
        self.metered: OrderedDict[str, float] = OrderedDict()
        self.states: OrderedDict[str, str] = OrderedDict()  # fine-tuning job -> states seen
        self.polled: OrderedDict[str, str] = OrderedDict()  # jobs seen, told to the ledger

    def create(self, job_id: str, api_key: str, at: float) -> None:
        """The job was created with this key."""
        self._put(self.created, job_id, (api_key, at))
        self._keep(JobCreated(job_id, api_key, at))

    def seen(self, job_id: str, api_key: str, at: float) -> None:
        """The job was seen with this key: its creator, unless one is known already (in a
        fleet, the ledger decides: another replica may have created it)."""
        if job_id in self.created or job_id in self.polled:
            return
        if self.ledger is None:
            self._put(self.created, job_id, (api_key, at))
        self._put(self.polled, job_id, api_key)
        self._keep(JobSeen(job_id, api_key, at))

    def output(self, batch_id: str, file_id: str) -> None:
        if self.outputs.get(file_id) != batch_id:
            self._put(self.outputs, file_id, batch_id)
            self._keep(JobOutput(batch_id, file_id))

    async def batch_of(self, job_id: str) -> str:
        """The batch whose output a file is, else the id itself (Anthropic's results)."""
        found = self.outputs.get(job_id)
        if found is None and self.ledger is not None:
            found = await asyncio.to_thread(self.ledger.batch_of, job_id)
            if found is not None:
                self._put(self.outputs, job_id, found)
        return found or job_id

    async def creator(self, job_id: str) -> tuple[str, float] | None:
        found = self.created.get(job_id)
        if found is None and self.ledger is not None:  # created through another process
            found = await asyncio.to_thread(self.ledger.creator, job_id)
            if found is not None:
                self._put(self.created, job_id, found)
        return found

    async def claim(self, job_id: str, at: float, also: tuple[str, ...] = ()) -> bool:
        """True the first time a job is metered, by any process; never again for it.
        Decided on `job_id`, the id in the path its results were fetched by, which every
        process knows; `also`, its other ids known here (a batch's own)."""
        if job_id in self.metered or any(other in self.metered for other in also):
            return False
        won = True if self.ledger is None else \
            await asyncio.to_thread(self.ledger.claim, job_id, at, also)
        for claimed in (job_id, *also):
            self._put(self.metered, claimed, at)
        return won

    async def reached(self, job_id: str, state: str) -> bool:
        """True the first time a job is seen in `state`, by any process."""
        seen = self.states.get(job_id, "")
        if state in seen.split(","):
            return False
        won = True if self.ledger is None else \
            await asyncio.to_thread(self.ledger.reached, job_id, state)
        self._put(self.states, job_id, f"{seen},{state}" if seen else state)
        return won

    def _put(self, table: OrderedDict[str, Any], key: str, value: Any) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self.limit:
            table.popitem(last=False)

    def _keep(self, event: Event) -> None:
        if self.persist is not None:
            self.persist(event)
