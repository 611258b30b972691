"""Local fakes of OpenAI's and Anthropic's admin usage and cost APIs, in their documented
shapes: daily buckets over the window asked for, a few buckets a page (has_more and a
next_page cursor), the admin key checked, and faults queued per path (a 429, a 500, a
page that is no JSON); a day's figures can be changed between fetches (a provider's lag).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from aiohttp import web

OPENAI_KINDS = ("completions", "embeddings", "images", "audio_speeches", "audio_transcriptions")


@dataclass
class Seen:
    path: str
    query: list[tuple[str, str]]
    headers: dict


@dataclass
class FakeAdmin:
    """`provider` is openai or anthropic; `results[endpoint][day]` the results of a day's
    bucket (endpoint: `completions`, ..., `costs` for OpenAI; `messages`, `cost_report`
    for Anthropic); `faults[path]` answers to give, in order, before the real ones."""

    provider: str
    key: str
    page_size: int = 2  # buckets a page: a week's window is four pages
    results: dict = field(default_factory=dict)
    faults: dict = field(default_factory=dict)
    malformed: set = field(default_factory=set)  # (endpoint, day) whose bucket is broken
    keys: list = field(default_factory=list)  # the key list: {"id", hint field}, one a page
    seen: list[Seen] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handle)
        return app

    def set(self, endpoint: str, day: str, results: list[dict]) -> None:
        self.results.setdefault(endpoint, {})[day] = results

    def asked(self, endpoint: str) -> list[Seen]:
        return [s for s in self.seen if s.path.endswith("/" + endpoint)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(Seen(request.path, list(request.query.items()), request.headers.copy()))
        given = request.headers.get("Authorization") if self.provider == "openai" else \
            request.headers.get("x-api-key")
        wanted = f"Bearer {self.key}" if self.provider == "openai" else self.key
        if given != wanted or (self.provider == "anthropic"
                               and request.headers.get("anthropic-version") != "2023-06-01"):
            return web.json_response({"error": {"message": "invalid admin key",
                                                "type": "authentication_error"}}, status=401)
        queued = self.faults.get(request.path)
        if queued:
            fault = queued.pop(0)
            if fault == "not json":
                return web.Response(text="<html>gateway timeout</html>", status=200)
            if isinstance(fault, str) and fault.startswith("http"):  # a redirect there
                raise web.HTTPFound(fault)
            if fault == "same page":  # more, forever, at the same cursor
                queued.insert(0, fault)
                return web.json_response({"object": "page", "data": [], "has_more": True,
                                          "next_page": "again"})
            return web.json_response({"error": {"message": "try later"}}, status=fault,
                                     headers={"Retry-After": "0"} if fault == 429 else None)
        endpoint = request.path.rsplit("/", 1)[1]
        if endpoint == "api_keys":  # one a page, after the last one's id
            after = request.query.get("after_id" if self.provider == "anthropic" else "after")
            at = next((i + 1 for i, k in enumerate(self.keys) if k["id"] == after), 0)
            page = self.keys[at:at + 1]
            return web.json_response({"data": page, "has_more": at + 1 < len(self.keys),
                                      "first_id": page[0]["id"] if page else None,
                                      "last_id": page[-1]["id"] if page else None})
        days = self.window(request.query)
        start = int(request.query.get("page", "0"))
        page = days[start:start + self.page_size]
        more = start + self.page_size < len(days)
        return web.json_response({
            "object": "page", "data": [self.bucket(endpoint, d) for d in page],
            "has_more": more, "next_page": str(start + self.page_size) if more else None})

    def window(self, query) -> list[dt.date]:
        if self.provider == "openai":
            first = dt.datetime.fromtimestamp(int(query["start_time"]), dt.UTC).date()
            end = dt.datetime.fromtimestamp(int(query["end_time"]), dt.UTC).date()
        else:
            first = dt.date.fromisoformat(query["starting_at"][:10])
            end = dt.date.fromisoformat(query["ending_at"][:10])
        return [first + dt.timedelta(days=i) for i in range((end - first).days)]

    def bucket(self, endpoint: str, day: dt.date) -> dict:
        results = self.results.get(endpoint, {}).get(day.isoformat(), [])
        if (endpoint, day.isoformat()) in self.malformed:
            results = [{"input_tokens": "many", "amount": None}]
        midnight = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        if self.provider == "openai":
            kind = "costs.result" if endpoint == "costs" else f"usage.{endpoint}.result"
            return {"object": "bucket", "start_time": int(midnight.timestamp()),
                    "end_time": int(midnight.timestamp()) + 86400,
                    "results": [{"object": f"organization.{kind}", **r} for r in results]}
        after = midnight + dt.timedelta(days=1)
        return {"starting_at": midnight.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "ending_at": after.strftime("%Y-%m-%dT%H:%M:%SZ"), "results": results}


def openai_usage(model: str, key_id: str | None, requests: int, input_tokens: int,
                 cached: int, output: int) -> dict:
    """A completions result grouped by model and api_key_id, as OpenAI documents it."""
    return {"input_tokens": input_tokens, "input_cached_tokens": cached,
            "output_tokens": output, "input_audio_tokens": 0, "output_audio_tokens": 0,
            "num_model_requests": requests, "project_id": None, "user_id": None,
            "api_key_id": key_id, "model": model, "batch": None}


def openai_cost(line_item: str, usd: str) -> dict:
    return {"amount": {"value": float(usd), "currency": "usd"}, "line_item": line_item,
            "project_id": None}


def anthropic_usage(model: str, key_id: str | None, uncached: int, read: int, write_5m: int,
                    write_1h: int, output: int) -> dict:
    """A messages usage result grouped by model and api_key_id, as Anthropic documents it."""
    return {"uncached_input_tokens": uncached, "cache_read_input_tokens": read,
            "cache_creation": {"ephemeral_5m_input_tokens": write_5m,
                               "ephemeral_1h_input_tokens": write_1h},
            "output_tokens": output, "server_tool_use": {"web_search_requests": 0},
            "api_key_id": key_id, "workspace_id": None, "model": model,
            "service_tier": "standard", "context_window": "0-200k"}


def anthropic_cost(model: str | None, description: str, token_type: str | None,
                   cents: str) -> dict:
    """A cost_report result grouped by description: the amount in cents, a decimal string."""
    return {"currency": "USD", "amount": cents, "workspace_id": None,
            "description": description, "cost_type": "tokens" if model else "web_search",
            "context_window": "0-200k" if model else None, "model": model,
            "service_tier": "standard" if model else None, "token_type": token_type}
