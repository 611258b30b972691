"""A simulated LLM upstream speaking the OpenAI and Anthropic formats.

For `demo` (no API key needed) and the benchmark: realistic usage with cached, cache-write
and reasoning tokens, streams with a real first-token delay, and a few errors. Models named
`local-*` answer as some self-hosted servers do: with no usage at all, so the gateway
estimates their tokens.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid

from aiohttp import web

from ..accounting.body import estimate_tokens, request_text_chars
from .answers import anthropic_content, chat_deltas, chat_message, response_events

NO_USAGE = "local-"  # model names whose answers carry no usage
WORDS = ("the quick brown fox jumps over a lazy dog while gateways count every token "
         "and prometheus scrapes the totals").split()


class Simulator:
    """Answer like a provider would; delays and error rate are settable for the demo."""

    def __init__(self, *, first_token_delay: float = 0.25, token_delay: float = 0.02,
                 error_rate: float = 0.05, output_tokens: int = 24, seed: int | None = None):
        self.first_token_delay = first_token_delay
        self.token_delay = token_delay
        self.error_rate = error_rate
        self.output_tokens = output_tokens
        self.rng = random.Random(seed)
        self.jobs: dict[str, tuple[float, str]] = {}  # fine-tuning: id -> (created, model)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.chat)
        app.router.add_post("/v1/responses", self.responses)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/messages/count_tokens", self.count_tokens)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/fine_tuning/jobs", self.fine_tune)
        app.router.add_get("/v1/fine_tuning/jobs/{id}", self.fine_tuning_job)
        return app

    # --- helpers ------------------------------------------------------------------------
    def _plan(self, body: dict) -> dict:
        """Decide the token counts of one answer."""
        prompt = max(estimate_tokens(request_text_chars(body)), 8)
        out = body.get("max_tokens") or body.get("max_completion_tokens") \
            or body.get("max_output_tokens") or self.output_tokens
        out = max(1, min(int(out), self.output_tokens))
        model = str(body.get("model") or "sim-model")
        cached = (prompt // 2) if self.rng.random() < 0.5 else 0
        reasoning = out * 2 if model.startswith(("o1", "o3", "o4", "gpt-5")) or "reason" in model \
            else 0
        return {"model": model, "prompt": prompt, "cached": cached, "out": out,
                "reasoning": reasoning}

    @staticmethod
    async def _request(request: web.Request, anthropic: bool):
        """The request's JSON object, or the 400 the provider answers to anything else."""
        try:
            body = await request.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            return body
        message = "We could not parse the JSON body of your request."
        if anthropic:
            return web.json_response({"type": "error", "error": {
                "type": "invalid_request_error", "message": message}}, status=400)
        return web.json_response({"error": {"message": message, "type": "invalid_request_error",
                                            "param": None, "code": None}}, status=400)

    def _error(self, anthropic: bool) -> web.Response | None:
        if self.error_rate <= 0 or self.rng.random() >= self.error_rate:
            return None
        status = self.rng.choice((429, 429, 500, 529 if anthropic else 503))
        message = {429: "Rate limit reached", 500: "The server had an error",
                   503: "The engine is overloaded", 529: "Overloaded"}[status]
        if anthropic:
            kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
            body = {"type": "error", "error": {"type": kind, "message": message}}
        else:
            body = {"error": {"message": message, "type": "server_error" if status >= 500
                              else "requests", "param": None, "code": None}}
        return web.json_response(body, status=status)

    async def _sse(self, request: web.Request, events, anthropic: bool) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        try:
            await resp.prepare(request)
            for i, (name, data) in enumerate(events):
                if i == 1 and self.first_token_delay:
                    await asyncio.sleep(self.first_token_delay)
                elif i > 1 and self.token_delay:
                    await asyncio.sleep(self.token_delay)
                line = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
                await resp.write((f"event: {name}\n" if anthropic else "").encode()
                                 + b"data: " + line.encode() + b"\n\n")
            await resp.write_eof()
        except ConnectionResetError:
            pass  # the gateway closed the stream because its client went away: as it should
        return resp

    async def _wait_whole(self, plan: dict) -> None:
        delay = self.first_token_delay + self.token_delay * plan["out"]
        if delay:
            await asyncio.sleep(delay)

    def _words(self, n: int):
        return [self.rng.choice(WORDS) + " " for _ in range(n)]

    # --- OpenAI -------------------------------------------------------------------------
    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._request(request, anthropic=False)
        if isinstance(body, web.Response):
            return body  # not a JSON object: a 400, as the real APIs answer
        if (err := self._error(False)) is not None:
            return err
        chat = request.path.endswith("/chat/completions")
        plan = self._plan(body)
        n = body.get("n") if chat and isinstance(body.get("n"), int) else 1
        n = max(1, min(n, 8))  # each choice's tokens are billed: n answers cost n times
        completion = n * plan["out"] + plan["reasoning"]
        usage = {"prompt_tokens": plan["prompt"], "completion_tokens": completion,
                 "total_tokens": plan["prompt"] + completion,
                 "prompt_tokens_details": {"cached_tokens": plan["cached"], "audio_tokens": 0},
                 "completion_tokens_details": {"reasoning_tokens": plan["reasoning"],
                                               "audio_tokens": 0}}
        ident = "chatcmpl-" + uuid.uuid4().hex[:24]
        base = {"id": ident, "object": "chat.completion.chunk" if chat else "text_completion",
                "created": int(time.time()), "model": plan["model"]}
        words = self._words(plan["out"])
        reports = not plan["model"].startswith(NO_USAGE)
        answers = [chat_message(body, "".join(self._words(plan["out"]) if i else words))
                   for i in range(n)] if chat else []
        if not body.get("stream"):
            await self._wait_whole(plan)
            choices = [{"index": i, "message": m, "logprobs": None, "finish_reason": f}
                       for i, (m, f) in enumerate(answers)] if chat \
                else [{"index": 0, "text": "".join(words), "finish_reason": "stop"}]
            return web.json_response({**base, "object": "chat.completion" if chat
                                      else "text_completion", "choices": choices,
                                      **({"usage": usage} if reports else {})})
        with_usage = reports and (body.get("stream_options") or {}).get("include_usage") is True
        extra = {"usage": None} if with_usage else {}

        def chunk(delta, finish=None, index=0):
            choice = ({"index": index, "delta": delta, "finish_reason": finish} if chat
                      else {"index": 0, "text": delta.get("content", ""), "finish_reason": finish})
            return {**base, "choices": [choice], **extra}

        events = []
        for i, (message, finish) in enumerate(answers or [({"content": "".join(words)},
                                                            "stop")]):
            events += [("", chunk(d, None, i)) for d in chat_deltas(message, plan["out"])]
            events.append(("", chunk({}, finish, i)))
        if with_usage:
            events.append(("", {**base, "choices": [], "usage": usage}))
        events.append(("", "[DONE]"))
        return await self._sse(request, events, False)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        body = await self._request(request, anthropic=False)
        if isinstance(body, web.Response):
            return body  # not a JSON object: a 400, as the real APIs answer
        if (err := self._error(False)) is not None:
            return err
        plan = self._plan(body)
        words = self._words(plan["out"])
        usage = {"input_tokens": plan["prompt"],
                 "input_tokens_details": {"cached_tokens": plan["cached"]},
                 "output_tokens": plan["out"] + plan["reasoning"],
                 "output_tokens_details": {"reasoning_tokens": plan["reasoning"]},
                 "total_tokens": plan["prompt"] + plan["out"] + plan["reasoning"]}
        ident = "resp_" + uuid.uuid4().hex[:24]
        part = {"type": "output_text", "text": "".join(words), "annotations": []}
        item = {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
                "content": [part]}
        done = {"id": ident, "object": "response", "created_at": int(time.time()),
                "status": "completed", "model": plan["model"], "output": [item],
                "usage": usage}
        if not body.get("stream"):
            await self._wait_whole(plan)
            return web.json_response(done)
        return await self._sse(request, [("", e) for e in response_events(done, words)], False)

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await self._request(request, anthropic=False)
        if isinstance(body, web.Response):
            return body  # not a JSON object: a 400, as the real APIs answer
        if (err := self._error(False)) is not None:
            return err
        inputs = body.get("input")
        inputs = inputs if isinstance(inputs, list) else [inputs]
        tokens = max(estimate_tokens(request_text_chars(body)), 1)
        data = [{"object": "embedding", "index": i,
                 "embedding": [round(self.rng.uniform(-1, 1), 6) for _ in range(8)]}
                for i in range(len(inputs))]
        return web.json_response({"object": "list", "data": data,
                                  "model": str(body.get("model") or "sim-embedding"),
                                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": m, "object": "model", "owned_by": "simulator"}
            for m in ("gpt-4o-mini", "o4-mini", "claude-sonnet-4-5")]})

    # A fine-tuning job: queued, running for TUNING_SECONDS, then succeeded.
    TUNING_SECONDS = 60

    async def fine_tune(self, request: web.Request) -> web.Response:
        body = await self._request(request, anthropic=False)
        if isinstance(body, web.Response):
            return body
        job_id = "ftjob-" + uuid.uuid4().hex[:24]
        self.jobs[job_id] = (time.time(), str(body.get("model") or "gpt-4o-mini-2024-07-18"))
        return await self.fine_tuning_job(request, job_id)

    async def fine_tuning_job(self, request: web.Request, job_id: str | None = None):
        job_id = job_id or request.match_info["id"]
        if job_id not in self.jobs:
            return web.json_response({"error": {"message": f"no job {job_id}", "type":
                                                "invalid_request_error"}}, status=404)
        started, model = self.jobs[job_id]
        age = time.time() - started
        state = "validating_files" if age < 1 else "running" if age < self.TUNING_SECONDS \
            else "succeeded"
        return web.json_response({
            "object": "fine_tuning.job", "id": job_id, "model": model, "status": state,
            "created_at": int(started), "training_file": "file-demo", "result_files": [],
            "fine_tuned_model": f"ft:{model}:demo::{job_id[-8:]}" if state == "succeeded"
            else None, "trained_tokens": 48_000 if state == "succeeded" else None})

    # --- Anthropic ----------------------------------------------------------------------
    async def count_tokens(self, request: web.Request) -> web.Response:
        """The prompt's tokens, as the simulator would count them in an answer (free)."""
        body = await self._request(request, anthropic=True)
        if isinstance(body, web.Response):
            return body
        return web.json_response({"input_tokens": self._plan(body)["prompt"]})

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = await self._request(request, anthropic=True)
        if isinstance(body, web.Response):
            return body  # not a JSON object: a 400, as the real APIs answer
        if (err := self._error(True)) is not None:
            return err
        plan = self._plan(body)
        words = self._words(plan["out"])
        write_5m = plan["prompt"] // 4 if self.rng.random() < 0.3 else 0
        write_1h = plan["prompt"] // 8 if self.rng.random() < 0.1 else 0
        # As Anthropic counts: input_tokens exclude the cache's reads and writes.
        uncached = plan["prompt"] - plan["cached"] - write_5m - write_1h
        usage = {"input_tokens": uncached, "cache_read_input_tokens": plan["cached"],
                 "cache_creation_input_tokens": write_5m + write_1h,
                 "cache_creation": {"ephemeral_5m_input_tokens": write_5m,
                                    "ephemeral_1h_input_tokens": write_1h},
                 "output_tokens": plan["out"]}
        content, stop = anthropic_content(body, "".join(words))
        message = {"id": "msg_" + uuid.uuid4().hex[:24], "type": "message", "role": "assistant",
                   "model": plan["model"], "stop_reason": stop, "stop_sequence": None}
        if not body.get("stream"):
            await self._wait_whole(plan)
            return web.json_response({**message, "content": content, "usage": usage})
        start_usage = {**usage, "output_tokens": 1}
        events = [("message_start", {"type": "message_start", "message": {
            **message, "content": [], "stop_reason": None, "usage": start_usage}})]
        [block] = content
        tool = block["type"] == "tool_use"
        events.append(("content_block_start", {
            "type": "content_block_start", "index": 0,
            "content_block": {**block, "input": {}} if tool else {"type": "text", "text": ""}}))
        pieces = [json.dumps(block["input"])] if tool else words
        events += [("content_block_delta", {"type": "content_block_delta", "index": 0, "delta":
                    {"type": "input_json_delta", "partial_json": w} if tool else
                    {"type": "text_delta", "text": w}}) for w in pieces]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
        # Its counts cumulative, the input's too, as the API sends them.
        events.append(("message_delta", {"type": "message_delta", "delta": {
            "stop_reason": stop, "stop_sequence": None},
            "usage": {k: usage[k] for k in ("input_tokens", "cache_creation_input_tokens",
                                             "cache_read_input_tokens", "output_tokens")}}))
        events.append(("message_stop", {"type": "message_stop"}))
        return await self._sse(request, events, True)
