"""Work billed after the request that started it: batches, background responses and
fine-tuning jobs.

A batch is created by one request, polled by others, and its results downloaded later,
perhaps by another key and more than once; a background response is created queued and
fetched, with its usage, when done. Each is metered once: when its results (or its
completed response) pass through the gateway, attributed to the key that created it. The
ledger of created and metered jobs is kept in memory and, with a history, in its database,
so a restart meters nothing twice. A fine-tuning job created through the gateway is
followed as its client polls it: each state it is seen to reach is counted once, and its
trained tokens once it has succeeded.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass

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


class Jobs:
    """The ledger: who created each job, which file holds a batch's output, what was
    metered. `persist(event)` keeps each change (the history's writer); bounded in memory."""

    def __init__(self, persist=None, limit: int = 100_000):
        self.persist, self.limit = persist, limit
        self.created: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self.outputs: OrderedDict[str, str] = OrderedDict()  # output file -> batch
        self.metered: OrderedDict[str, float] = OrderedDict()
        self.states: OrderedDict[str, str] = OrderedDict()  # fine-tuning job -> states seen
        self.shared = None  # with --workers, the ledger in the database (SharedLedger)
        # Where fine-tuning is counted: fine_tuning_created(record, model),
        # fine_tuning_state(service, state), fine_tuning_trained(service, model, tokens).
        self.counts = None  # the Metrics

    def load(self, rows) -> None:
        """Take what the history remembers: (job_id, api_key, created_at, output_file_id,
        metered_at, states) rows."""
        for job_id, api_key, created_at, output_file_id, metered_at, states in rows:
            if api_key is not None:
                self._put(self.created, job_id, (api_key, created_at))
            if output_file_id:
                self._put(self.outputs, output_file_id, job_id)
            if metered_at is not None:
                self._put(self.metered, job_id, metered_at)
            if states:
                self._put(self.states, job_id, states)

    def create(self, job_id: str, api_key: str, at: float) -> None:
        self._put(self.created, job_id, (api_key, at))
        self._keep(("create", job_id, api_key, at))

    def output(self, batch_id: str, file_id: str) -> None:
        if self.outputs.get(file_id) != batch_id:
            self._put(self.outputs, file_id, batch_id)
            self._keep(("output", batch_id, file_id))

    def batch_of(self, job_id: str) -> str:
        """The batch whose output a file is, else the id itself (Anthropic's results)."""
        return self.outputs.get(job_id, job_id)

    def creator(self, job_id: str) -> tuple[str, float] | None:
        found = self.created.get(job_id)
        if found is None and self.shared is not None:  # created through another worker
            found = self.shared.creator(job_id)
        return found

    def claim(self, job_id: str, at: float) -> bool:
        """True the first time a job is metered, by any worker; never again for it."""
        if job_id in self.metered:
            return False
        self._put(self.metered, job_id, at)
        if self.shared is not None:
            return self.shared.claim(job_id, at)
        self._keep(("metered", job_id, at))
        return True

    def reached(self, job_id: str, state: str) -> bool:
        """True the first time a job is seen in `state`."""
        seen = self.states.get(job_id, "")
        if state in seen.split(","):
            return False
        states = f"{seen},{state}" if seen else state
        self._put(self.states, job_id, states)
        if self.shared is not None:
            return self.shared.reached(job_id, state)
        self._keep(("states", job_id, states))
        return True

    def _put(self, table: OrderedDict, key, value) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self.limit:
            table.popitem(last=False)

    def _keep(self, event: tuple) -> None:
        if self.persist is not None:
            self.persist(event)
