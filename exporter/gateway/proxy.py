"""The one hot path: stream the request up, stream the response down, meter both.

Every request ends in exactly one RequestRecord, whatever happens: the upstream fails,
times out or resets; the client goes away; the body is too large or not JSON.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import zlib
from http import HTTPStatus
from time import perf_counter

from ..accounting.batch import BatchMeter
from ..accounting.body import ResponseBody
from ..accounting.operations import (
    MESSAGES,
    OTHER,
    operation_for,
)
from ..accounting.pricing import Pricing, pricing_for
from ..accounting.stream import MEDIA, StreamMeter
from ..config.table import Config, Service
from ..record import ErrorType as E
from ..record import RequestRecord
from ..store.spend import Spend
from ..telemetry.logs import log_request
from ..telemetry.metrics import Metrics
from ..wire.request import BodyTimeout, BodyTooLarge, Request
from ..wire.upstream import ClientStalled, ConnectError, Connection, Origin, Pool, UpstreamError
from .errors import error_body, error_type_for
from .finish import (
    READS_LEDGER,
    Failures,
    account,
    account_job,
    accounting_failed,
    deliver,
    through_cancel,
)
from .headers import DECODABLE, client_headers, upstream_headers
from .jobs import JOB_OPERATIONS, RESULTS, Jobs, job_request
from .keys import Keys
from .relay import Relay
from .request_body import inspect

log = logging.getLogger("llm_usage_exporter")
_ids = random.Random()
# Requested model names remembered with the name the upstream reported for them: far more
# than any deployment uses, and a bound on what a client sending random names can grow.
REPORTED_MODELS = 10_000

class Proxy:
    """Forward requests to the configured services and record each one."""

    def __init__(self, config: Config, metrics: Metrics, env, spend: Spend | None = None):
        self.services = {s.name: s for s in config.services}
        self.default = config.default
        self.max_body = config.limits.max_request_body_bytes
        self.client_timeout = config.limits.client_timeout_seconds
        self.spend = spend  # the history's, for the budgets enforced
        self.metrics = metrics
        self.reload(config, env)
        self.pool = Pool()
        self.origins = {s.name: Origin(s.base_url) for s in config.services}
        self.in_flight = {s.name: metrics.in_flight.labels(s.name) for s in config.services}
        self.sinks = [metrics.observe]  # every finished RequestRecord goes to each sink
        self.reported_models: dict[tuple[str, str], str] = {}  # (service, asked) -> ran
        self.jobs = Jobs()  # batches, background responses: app.py gives it a memory
        self.jobs.counts = metrics  # and fine-tuning jobs
        metrics.fine_tuning_services(s.name for s in config.services if s.api_format == "openai")
        self.failed = Failures(metrics.record_errors)

    def reload(self, config: Config, env, pricing: Pricing | None = None) -> None:
        """Take the prices, keys and budgets of `config` (SIGHUP): for the next requests."""
        pricing, keys = pricing or pricing_for(config), Keys(config, env, self.spend)
        self.pricing, self.keys = pricing, keys  # together, between two requests
        if self.spend is not None:  # the writer reads the spend back only while needed
            self.spend.active = keys.enforcing
        self.metrics.api_key_label.seen.update(k.name for k in config.api_keys)

    def route(self, request: Request) -> tuple[Service, str]:
        """Pick the service from the first path segment; return it and the upstream path."""
        raw = request.raw_path
        first = request.path[1:].partition("/")[0]
        service = self.services.get(first)
        if service is None:
            return self.default, raw
        return service, raw[len(first) + 1:] or "/"

    async def handle(self, request: Request) -> None:
        t0 = perf_counter()
        service, upstream_path = self.route(request)
        operation = operation_for(request.path)
        job = job_request(request.method, request.path)  # batches, background responses
        if job is not None and job.kind in JOB_OPERATIONS:
            operation = JOB_OPERATIONS[job.kind]
        # Not os.urandom: a system call, 3.6% of the CPU profiled at 32 concurrent requests.
        # An identifier needs to be unique, not secret; the generator is seeded from urandom.
        rid = request.header(b"x-request-id") or "%032x" % _ids.getrandbits(128)
        keys, pricing = self.keys, self.pricing  # as they were when it arrived (SIGHUP)
        label, key = keys.identify(request.header)
        rec = RequestRecord(rid, time.time(), service.name, service.provider, label, operation)
        api_format = "anthropic" if operation == MESSAGES else service.api_format
        gauge = self.in_flight[service.name]
        gauge.inc()
        waited = 0.0  # seconds spent waiting on the upstream or the client
        upstream: Connection | None = None
        meter: StreamMeter | None = None
        body_json = None
        collected: ResponseBody | None = None
        read_timeout = service.read_timeout_seconds
        try:
            # --- the request ----------------------------------------------------------
            refusal = keys.refuse(label, key, service.name)
            if refusal is not None:
                return self._fail(request, rec, api_format, rid, *refusal)
            length = request.content_length
            if length is not None and length > self.max_body:
                return self._fail(request, rec, api_format, rid, 413, E.TOO_LARGE,
                                  f"request body of {length} bytes is over the gateway's "
                                  f"limit of {self.max_body} bytes")
            strip_usage = False
            parsed = operation != OTHER and request.body_exists
            if parsed:
                t = perf_counter()
                try:
                    data = await request.read(self.max_body)
                except BodyTooLarge:
                    return self._fail(request, rec, api_format, rid, 413, E.TOO_LARGE,
                                      f"request body is over the gateway's limit of "
                                      f"{self.max_body} bytes")
                waited += perf_counter() - t
                body_json, data, strip_usage = inspect(operation, data, service, rec,
                                                       request.raw_path)
                if key is not None and key.models and (refusal := keys.refuse_model(
                        label, key, rec.model if rec.model != "unknown" else None)):
                    return self._fail(request, rec, api_format, rid, *refusal)
            elif request.body_exists:
                data = request.iter_body()
            else:
                data = None
            headers = upstream_headers(request, service, rid, parsed or job is not None)

            origin = self.origins[service.name]
            target = (origin.path + upstream_path).encode("utf-8", "surrogateescape")
            t = perf_counter()
            try:
                upstream = await self.pool.request(
                    origin, request.method, target, headers, data, length=length,
                    connect_timeout=service.connect_timeout_seconds, read_timeout=read_timeout,
                    idempotent=request.header(b"idempotency-key") is not None)
            except ConnectError as e:
                return self._fail(request, rec, api_format, rid, 502, E.CONNECT_ERROR,
                                  f"cannot connect to the upstream: {e}")
            except TimeoutError:
                return self._fail(request, rec, api_format, rid, 504, E.TIMEOUT,
                                  "the upstream did not answer in time")
            except UpstreamError as e:
                return self._fail(request, rec, api_format, rid, 502, E.UPSTREAM_ERROR,
                                  f"the upstream failed before answering: {e}")
            waited += perf_counter() - t

            # --- the response ---------------------------------------------------------
            status = rec.code = upstream.status
            rec.error_type = error_type_for(status)
            wbits = DECODABLE.get(upstream.header(b"content-encoding").decode("latin-1").lower())
            if job is not None and job.kind == RESULTS:
                meter = BatchMeter(zlib.decompressobj(wbits) if wbits else None)
            elif operation != OTHER or job is not None:
                if upstream.header(b"content-type").startswith(b"text/event-stream"):
                    rec.stream = True
                    meter = StreamMeter(operation, strip_usage)
                elif operation not in MEDIA or \
                        upstream.header(b"content-type").startswith(b"application/json"):
                    # Not speech's audio: nothing to read there.
                    collected = ResponseBody(decoder=zlib.decompressobj(wbits) if wbits else None)
            headers, length = client_headers(upstream, rec)
            if meter is not None and meter.rewrites:
                length = None  # the meter may leave out the usage it asked for
            request.start(status, upstream.reason, headers, length)
            if rec.stream:
                request.flush()  # the client learns the status before the first event

            relay = Relay(request, rec, t0, meter, collected)
            t = perf_counter()
            try:
                await upstream.pipe(relay, read_timeout, self.client_timeout)
            except (TimeoutError, UpstreamError) as e:
                timeout = isinstance(e, TimeoutError)
                if request.head is not None:  # nothing sent yet: still time for a 502/504
                    request.head = None
                    return self._fail(request, rec, api_format, rid, 504 if timeout else 502,
                                      E.TIMEOUT if timeout else E.UPSTREAM_ERROR,
                                      "the upstream went silent before its answer's body"
                                      if timeout else f"the upstream failed mid-answer: {e}")
                return self._interrupted(rec, request, E.TIMEOUT if timeout else
                                         E.STREAM_INTERRUPTED,
                                         "the upstream went silent for longer than "
                                         "read_timeout_seconds" if timeout else
                                         f"the upstream broke off the response: {e}")
            finally:
                waited += perf_counter() - t - relay.busy
            request.finish(meter.finish() if meter is not None else b"")
        except (ConnectionResetError, asyncio.CancelledError) as e:
            # The client went away: a failed write, or the server cancelling the handler.
            # The upstream request must close now so nobody pays for tokens nobody reads:
            # release() in `finally` closes the upstream connection, as the body is unread.
            rec.code, rec.error_type = 499, E.CLIENT_DISCONNECT
            rec.error_message = "the client closed the connection"
            if isinstance(e, asyncio.CancelledError):
                raise
        except (BodyTimeout, ClientStalled) as e:  # the client's slowness, not the upstream's
            message = ("the client paused sending the request's body for too long"
                       if isinstance(e, BodyTimeout) else
                       "the client took nothing of the answer for too long")
            if not request.started:
                return self._fail(request, rec, api_format, rid, 408, E.CLIENT_TIMEOUT,
                                  message)
            return self._interrupted(rec, request, E.CLIENT_TIMEOUT, message)
        except Exception as e:  # never let one request take the gateway down
            log_request(log, logging.ERROR, rid, "failed inside the gateway", exc_info=True)
            if not request.started:
                return self._fail(request, rec, api_format, rid, 502, E.GATEWAY_ERROR,
                                  f"the gateway failed: {type(e).__name__}")
            return self._interrupted(rec, request, E.GATEWAY_ERROR, type(e).__name__)
        finally:
            gauge.dec()
            if upstream is not None:
                upstream.release()
            rec.duration = perf_counter() - t0
            rec.overhead = max(rec.duration - waited, 0.0)
            if rec.error_type == E.NONE and meter is not None and meter.error_type:
                rec.error_type = E.UPSTREAM_ERROR
                rec.error_message = f"{meter.error_type}: {meter.error_message}"[:500]
            requested = rec.model
            ok = upstream is not None and 200 <= upstream.status < 300
            cancelled = False
            try:
                if job is not None and job.kind in READS_LEDGER:  # a round trip, off the loop
                    done, cancelled = await through_cancel(account_job(
                        rec, ok, body_json, meter, collected, pricing, self.jobs, job))
                    records = done.result()
                else:
                    records = account(rec, ok, body_json, meter, collected, pricing,
                                      self.jobs, job)
            except Exception:  # the request still ends in its record, saying so
                records = [accounting_failed(rec)]  # logged there, with the request id
                self.failed.count("accounting")
            self._name_model(rec, requested)
            deliver(records, self.sinks, self.failed)
            if cancelled:
                raise asyncio.CancelledError

    def _name_model(self, rec: RequestRecord, requested: str) -> None:
        """Give an error the model name its successes carry.

        Successes name the model the upstream ran (gpt-4o-2024-08-06), errors only the one
        asked for (gpt-4o): without this, one model's errors and successes would be two
        label values, and no error ratio could be computed for it.
        """
        key = (rec.service, requested)
        if rec.model != requested:
            if key in self.reported_models or len(self.reported_models) < REPORTED_MODELS:
                self.reported_models[key] = rec.model
        else:
            rec.model = self.reported_models.get(key, requested)

    def _fail(self, request: Request, rec: RequestRecord, api_format: str, rid: str,
              status: int, error_type: str, message: str, headers: bytes = b"") -> None:
        """Answer with a gateway error in the client's API format, and record it (a key's
        Refusal is these arguments: it never reaches an upstream)."""
        rec.code, rec.error_type, rec.error_message = status, error_type, message
        if status >= 500:
            log_request(log, logging.WARNING, rid, "to service %s: %s: %s", rec.service,
                        error_type, message)
        request.respond(status, HTTPStatus(status).phrase.encode(),
                        error_body(api_format, status, error_type, message),
                        b"Content-Type: application/json\r\nX-Request-ID: %s\r\n%s"
                        % (rid.encode("utf-8", "surrogateescape"), headers))

    @staticmethod
    def _interrupted(rec: RequestRecord, request: Request, error_type: str,
                     message: str) -> None:
        """Cut the client's connection so it sees a broken response, not a complete one."""
        rec.error_type, rec.error_message = error_type, message
        log_request(log, logging.WARNING, rec.request_id, "to service %s: %s: %s", rec.service,
                    error_type, message)
        request.transport.abort()
