"""Fine-tuning jobs created through the gateway: each state counted once, the trained tokens
once the job succeeded, billed at the config's training price to the key that created it,
and not again after a restart."""

from __future__ import annotations

import json
from decimal import Decimal as D
from zoneinfo import ZoneInfo

import openai
from aiohttp import web
from conftest import until
from prometheus_client import CollectorRegistry

from exporter.store.collector import HistoryCollector
from exporter.store.writer import History
from exporter.telemetry.background import HistoryMetrics

JOBS = "/v1/fine_tuning/jobs"
BASE = "gpt-4o-mini-2024-07-18"
# OpenAI's training price for gpt-4o-mini: $3.00 per million trained tokens. The price
# table has no training prices: the config gives it.
PRICING = [{"model": "gpt-4o-mini-2024-07-18", "training": 3.0}]


def job(state: str, trained: int | None = None, job_id: str = "ftjob-abc") -> dict:
    return {"object": "fine_tuning.job", "id": job_id, "model": BASE, "created_at": 1764806400,
            "finished_at": None, "fine_tuned_model": None, "organization_id": "org-x",
            "result_files": [], "status": state, "validation_file": None,
            "training_file": "file-train", "hyperparameters": {"n_epochs": 3},
            "trained_tokens": trained, "error": None, "seed": 42}


class Upstream:
    """The fine-tuning API of a job moving through its states as the test says."""

    def __init__(self, replay):
        self.state, self.trained = "validating_files", None
        replay.routes[JOBS] = self.answer
        replay.routes[JOBS + "/ftjob-abc"] = self.answer
        replay.routes[JOBS + "/ftjob-other"] = self.other

    async def answer(self, request, body):
        return web.json_response(job(self.state, self.trained))

    async def other(self, request, body):  # created elsewhere: not the gateway's to count
        return web.json_response(job("succeeded", 1000, "ftjob-other"))


def samples(gw, name: str) -> dict:
    return {tuple(sorted(s.labels.items())): s.value for m in gw.collect()
            for s in m.samples if s.name == name and s.value}


async def test_a_job_is_followed_to_its_trained_tokens_once(gateway, replay, db):
    upstream = Upstream(replay)
    history = History(db, HistoryMetrics(CollectorRegistry()), linger=0)
    gw = await gateway(history=history, pricing=PRICING, env={"TUNER": "sk-tuner"},
                       api_keys=[{"name": "tuners", "key_env": "TUNER"}])
    tuner = openai.AsyncOpenAI(base_url=gw.url + "/openai/v1", api_key="sk-tuner")
    other = openai.AsyncOpenAI(base_url=gw.url + "/openai/v1", api_key="sk-someone")
    created = await tuner.fine_tuning.jobs.create(model=BASE, training_file="file-train")
    assert created.id == "ftjob-abc" and created.status == "validating_files"
    exported = CollectorRegistry()  # what /metrics reads from the history at a scrape
    HistoryCollector(exported, db, ZoneInfo("UTC"))

    def in_progress() -> float | None:
        return exported.get_sample_value("llm_fine_tuning_jobs_in_progress")
    await until(lambda: in_progress() == 1)
    for state in ("running", "running", "succeeded"):
        upstream.state, upstream.trained = state, 5768 if state == "succeeded" else None
        await other.fine_tuning.jobs.retrieve("ftjob-abc")  # polled by another key
    await until(lambda: in_progress() == 0)  # seen to succeed (once it is accounted)
    await other.fine_tuning.jobs.retrieve("ftjob-abc")  # succeeded, seen again
    await other.fine_tuning.jobs.retrieve("ftjob-other")  # not created through the gateway
    await gw.records.wait(7)  # six requests and the training's own record
    # Each request about one job names its model, as the answer does: none is `unknown`.
    assert {r.model for r in gw.records if not r.share} == {BASE}
    assert samples(gw, "llm_fine_tuning_jobs_total") == {
        (("service", "openai"), ("status", state)): 1.0
        for state in ("created", "validating_files", "running", "succeeded")}
    assert samples(gw, "llm_fine_tuning_trained_tokens_total") == {
        (("model", BASE), ("service", "openai")): 5768.0}
    # 5,768 trained tokens at $3 per million: $0.017304, for the key that created the job.
    [training] = [r for r in gw.records if r.operation == "fine_tuning" and r.share]
    assert (training.api_key, training.model, training.fee, training.fees) == (
        "tuners", BASE, D("0.017304"), [("input", "training", D("0.017304"))])
    assert {k: v for k, v in samples(gw, "llm_cost_usd_total").items()} == {
        (("api_key", "tuners"), ("direction", "input"), ("model", BASE), ("project", "none"),
         ("provider", "openai"), ("service", "openai"), ("token_type", "training")): 0.017304}
    requests = samples(gw, "llm_requests_total")
    assert sum(requests.values()) == 6  # the training's record is no request of its own
    assert all(dict(k)["operation"] == "fine_tuning" for k in requests)

    await gw.listener.cleanup()  # a restart: the ledger is in the history
    history2 = History(db, HistoryMetrics(CollectorRegistry()), linger=0)
    gw2 = await gateway(history=history2, pricing=PRICING)
    replay.routes[JOBS] = lambda request, body: _list()
    again = openai.AsyncOpenAI(base_url=gw2.url + "/openai/v1", api_key="sk-x")
    await again.fine_tuning.jobs.list()  # the list holds the job, succeeded
    await again.fine_tuning.jobs.retrieve("ftjob-abc")
    await gw2.records.wait(2)
    assert samples(gw2, "llm_fine_tuning_jobs_total") == {}
    assert samples(gw2, "llm_fine_tuning_trained_tokens_total") == {}


async def _list():
    return web.Response(text=json.dumps({"object": "list", "data": [
        job("succeeded", 5768)], "has_more": False}), content_type="application/json")


async def test_processes_sharing_the_history_count_a_job_once(db):
    from exporter.gateway.jobs import Jobs
    from exporter.store.ledger import JobLedger
    from exporter.store.rows import JobCreated
    db.migrate()
    # Two processes' ledgers (workers, or replicas of a fleet), each with its own memory.
    first, second = Jobs(ledger=JobLedger(db)), Jobs(ledger=JobLedger(db))
    first.create("ftjob-abc", "tuners", 1.0)
    with db.connect(write=True) as conn:  # as the writer persists the creation
        event = JobCreated("ftjob-abc", "tuners", 1.0)
        conn.execute(event.sql, event.args())
    assert (await second.creator("ftjob-abc"))[0] == "tuners"  # read from the database
    assert [await first.reached("ftjob-abc", "running"),
            await second.reached("ftjob-abc", "running"),
            await second.reached("ftjob-abc", "succeeded")] == [True, False, True]
    assert [await second.claim("ftjob-abc", 2.0), await first.claim("ftjob-abc", 3.0)] == [
        True, False]


async def test_usage_counts_the_training_record_as_no_request(gateway, replay, db):
    import time
    from zoneinfo import ZoneInfo

    from exporter.store.query import Filters
    from exporter.store.reads import usage_rows
    from exporter.store.usage import UsageQuery
    upstream = Upstream(replay)
    history = History(db, HistoryMetrics(CollectorRegistry()), linger=0)
    gw = await gateway(history=history, pricing=PRICING)
    client = openai.AsyncOpenAI(base_url=gw.url + "/openai/v1", api_key="sk-t")
    await client.fine_tuning.jobs.create(model=BASE, training_file="file-train")
    upstream.state, upstream.trained = "succeeded", 5768
    await client.fine_tuning.jobs.retrieve("ftjob-abc")
    await gw.records.wait(3)
    await gw.listener.cleanup()
    q = UsageQuery(Filters(time.time() - 60, time.time() + 60, ZoneInfo("UTC")))
    [row] = usage_rows(db, q).all()
    assert (row["requests"], row["successful"], round(row["fee_usd"], 10)) == (2, 2, 0.017304)


async def test_results_fetched_before_the_fleet_knows_their_batch_are_claimed_once(db):
    """Replica b fetches a batch's output file before a's note of which batch it is the
    output of has reached the history: b claims by the file's id, and a, knowing both, is
    refused; a batch claimed by its own id (by an older release) refuses its file too."""
    from exporter.gateway.jobs import Jobs
    from exporter.store.ledger import JobLedger
    db.migrate()
    a, b = Jobs(ledger=JobLedger(db)), Jobs(ledger=JobLedger(db))
    a.output("batch_abc", "file-out")  # in a's memory; its writer has not written it yet
    assert await b.batch_of("file-out") == "file-out"
    assert await b.claim("file-out", 1.0)
    assert await a.batch_of("file-out") == "batch_abc"
    assert not await a.claim("file-out", 2.0, ("batch_abc",))
    c = Jobs(ledger=JobLedger(db))
    with db.connect(write=True) as conn:  # an older release claimed batch_xyz by its id
        conn.execute("INSERT INTO jobs (job_id, metered_at) VALUES ('batch_xyz', 3.0)")
    assert not await c.claim("file-xyz", 4.0, ("batch_xyz",))


def test_a_state_seen_is_not_pruned_by_the_retention_run_after_it(db):
    """The ledger's rows carry a time: a retention run right after a state was seen (the
    demo's first upkeep, here) pruned a row without one, and the state counted again."""
    import time
    from zoneinfo import ZoneInfo

    from exporter.store.batches import prune
    from exporter.store.ledger import JobLedger
    db.migrate()
    ledger = JobLedger(db)
    assert ledger.reached("ftjob-1", "created")
    with db.connect(write=True) as conn:
        prune(conn, time.time(), 90, ZoneInfo("UTC"))
    assert not ledger.reached("ftjob-1", "created")  # counted once
