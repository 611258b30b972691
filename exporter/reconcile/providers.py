"""The providers' usage and cost reports, page by page, as our four token categories.

OpenAI (`/v1/organization/usage/{completions,embeddings,images,audio_speeches,
audio_transcriptions}` and `/v1/organization/costs`) and Anthropic
(`/v1/organizations/usage_report/messages` and `/v1/organizations/cost_report`), in UTC day
buckets grouped by model and API key id. Parsing a bucket is pure; a bucket that does not
parse fails its day only, a page that does not parse fails every day not yet read.

Token semantics, where the reports and our columns differ:
- OpenAI's `input_tokens` include every modality and the cache's reads
  (`input_cached_tokens`) and writes (`input_cache_write_tokens`): uncached input is
  `input_uncached_tokens` where sent, else the difference (its OpenAPI description).
- Anthropic's `uncached_input_tokens` exclude cache reads and writes; writes of both TTLs
  (`cache_creation.ephemeral_5m_input_tokens`, `..._1h_...`) are one category, as in
  llm_tokens_total. Its report counts no requests (None).
- Fees: the cost reports' lines name a model (OpenAI's line_item "gpt-4o-2024-08-06,
  input", Anthropic's `model` when grouped by description) but not a key, so fees are
  compared per day and model; a line naming no model is the model `none`.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field, replace
from decimal import Decimal

from ..config.reconcile import ReconcileAccount
from ..store.reconcile import Figures
from .client import AdminClient, FetchError
from .keys import relabel

OPENAI_USAGE = ("completions", "embeddings", "images", "audio_speeches",
                "audio_transcriptions")
ANTHROPIC_VERSION = "2023-06-01"
PAGE_LIMIT = "31"  # buckets per page: both APIs' most for daily buckets
# Pages of one report in one fetch: 35 days of buckets grouped by model and key are a few;
# a thousand is a server that never says it is done.
MAX_PAGES = 1000
NO_MODEL = "none"
NO_KEY = "(no key)"  # usage of no API key: the provider's console or workbench


@dataclass
class Fetched:
    """What one fetch of days first..last found: each good day's figures, each failed
    day's cause."""

    days: list[str]
    usage: dict[str, dict[tuple[str, str], Figures]] = field(
        default_factory=lambda: defaultdict(dict))
    costs: dict[str, dict[str, Decimal]] = field(default_factory=lambda: defaultdict(dict))
    failed: dict[str, str] = field(default_factory=dict)
    problem: str | None = None  # the first failure, for the one log line of the fetch

    def add(self, f: Figures) -> None:
        """Sum into the day's row of the same model and key (two ids mapped to one label)."""
        rows = self.usage[f.day]
        was = rows.get((f.model, f.api_key))
        if was is not None:
            f = replace(f, requests=None if f.requests is None else (was.requests or 0)
                        + f.requests, **{c: getattr(was, c) + getattr(f, c) for c in (
                            "input_uncached", "cache_read", "cache_write", "output")})
        rows[(f.model, f.api_key)] = f

    def fail(self, day: str | None, cause: str) -> None:
        for d in [day] if day else self.days:
            self.failed.setdefault(d, cause)


def days_between(first: str, last: str) -> list[str]:
    start = dt.date.fromisoformat(first)
    return [(start + dt.timedelta(days=i)).isoformat()
            for i in range((dt.date.fromisoformat(last) - start).days + 1)]


def _count(result: dict, *path: str) -> int:
    value = result
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{'.'.join(path)} is not a count: {value!r}")
    return value


class Fetcher:
    """One account's reports: `fetch(first, last)` reads every page of each."""

    def __init__(self, account: ReconcileAccount, client: AdminClient,
                 tails: dict[str, str] | None = None):
        """`tails`: our key names and their last characters (keys.py), to map the ids the
        account's table does not."""
        self.account, self.client, self.tails = account, client, tails or {}

    def key(self, key_id) -> str:
        """Our api_key label of their key id: the configured table's, else unmapped."""
        if key_id is None:  # their console's or workbench's own use; not our `none`, a
            return NO_KEY   # client of the gateway's that sent no key
        return self.account.api_keys.get(key_id) or f"unmapped:{key_id}"

    def fetch(self, first: str, last: str) -> Fetched:
        got = Fetched(days_between(first, last))
        try:
            self.read(got, first, last)
            relabel(got, self.account, self.client, self.tails)
        except FetchError as e:
            got.fail(None, e.cause)
            got.problem = got.problem or str(e)
        return got

    def pages(self, got: Fetched, path: str, params: list[tuple[str, str]], parse) -> None:
        """Page through `path`, handing each bucket's results to `parse(day, result)`."""
        cursor, seen = None, set()
        while True:
            page = self.client.get(path, params + ([("page", cursor)] if cursor else []))
            data, more = page.get("data"), page.get("has_more")
            if not isinstance(data, list) or not isinstance(more, bool):
                raise FetchError("malformed", f"{path}: a page without data or has_more")
            for bucket in data:
                day = self.bucket_day(bucket)
                if day not in got.days:
                    continue  # a bucket outside the days asked for: not ours to store
                try:
                    results = bucket["results"]
                    if not isinstance(results, list):
                        raise TypeError("results is not a list")
                    for result in results:
                        parse(day, result)
                except (KeyError, TypeError, ValueError, ArithmeticError, AttributeError) as e:
                    got.fail(day, "malformed")
                    got.usage.pop(day, None)
                    got.costs.pop(day, None)
                    got.problem = got.problem or f"{path}: day {day}: {e}"
            if not more:
                return
            cursor = page.get("next_page")
            if not isinstance(cursor, str) or not cursor:
                raise FetchError("malformed", f"{path}: has_more without a next_page")
            # A cursor given twice would page forever, in a thread nothing can stop.
            if cursor in seen or len(seen) >= MAX_PAGES:
                why = "repeats" if cursor in seen else f"past {MAX_PAGES} pages"
                raise FetchError("malformed", f"{path}: next_page {why}")
            seen.add(cursor)


class OpenAIFetcher(Fetcher):
    """An OpenAI organization's (or one project's) usage and costs."""

    @staticmethod
    def headers(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    @staticmethod
    def bucket_day(bucket) -> str:
        start = bucket.get("start_time") if isinstance(bucket, dict) else None
        if isinstance(start, bool) or not isinstance(start, int):
            raise FetchError("malformed", "a bucket without a start_time")
        return dt.datetime.fromtimestamp(start, dt.UTC).date().isoformat()

    def read(self, got: Fetched, first: str, last: str) -> None:
        window = [("start_time", str(int(_midnight(first)))),
                  ("end_time", str(int(_midnight(last)) + 86400)),
                  ("bucket_width", "1d"), ("limit", PAGE_LIMIT)]
        if self.account.project_id:
            window.append(("project_ids", self.account.project_id))
        for kind in OPENAI_USAGE:
            def usage(day, r, kind=kind):
                requests = _count(r, "num_model_requests")
                tokens = kind in ("completions", "embeddings")  # the others count none
                total = _count(r, "input_tokens") if tokens else 0
                cached = _count(r, "input_cached_tokens") if tokens else 0
                written = _count(r, "input_cache_write_tokens") if tokens else 0
                # input_tokens include the cache's reads and writes; input_uncached_tokens,
                # where the API sends it, is the rest.
                uncached = _count(r, "input_uncached_tokens") if tokens and \
                    "input_uncached_tokens" in r else total - cached - written
                if uncached < 0:
                    raise ValueError("input_cached_tokens and input_cache_write_tokens above "
                                     "input_tokens")
                got.add(Figures(day, r.get("model") or "unknown", self.key(r.get("api_key_id")),
                                requests, input_uncached=uncached, cache_read=cached,
                                cache_write=written,
                                output=_count(r, "output_tokens") if kind == "completions"
                                else 0))
            self.pages(got, f"/v1/organization/usage/{kind}",
                       window + [("group_by", "model"), ("group_by", "api_key_id")], usage)

        def cost(day, r):
            amount = r["amount"]
            if str(amount.get("currency", "")).lower() != "usd":
                raise ValueError(f"a cost in {amount.get('currency')!r}, not USD")
            item = r.get("line_item")
            model = item.split(", ", 1)[0] if isinstance(item, str) and ", " in item \
                else NO_MODEL
            fees = got.costs[day]
            fees[model] = fees.get(model, Decimal(0)) + Decimal(str(amount["value"]))
        self.pages(got, "/v1/organization/costs", window + [("group_by", "line_item")], cost)


class AnthropicFetcher(Fetcher):
    """An Anthropic organization's (or one workspace's) usage and costs."""

    @staticmethod
    def headers(key: str) -> dict[str, str]:
        return {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}

    @staticmethod
    def bucket_day(bucket) -> str:
        start = bucket.get("starting_at") if isinstance(bucket, dict) else None
        try:
            return dt.datetime.fromisoformat(str(start).replace("Z", "+00:00")) \
                .astimezone(dt.UTC).date().isoformat()
        except ValueError:
            raise FetchError("malformed", "a bucket without a starting_at") from None

    def read(self, got: Fetched, first: str, last: str) -> None:
        after = (dt.date.fromisoformat(last) + dt.timedelta(days=1)).isoformat()
        window = [("starting_at", f"{first}T00:00:00Z"), ("ending_at", f"{after}T00:00:00Z"),
                  ("bucket_width", "1d"), ("limit", PAGE_LIMIT)]
        workspace = self.account.workspace_id
        if workspace:
            window.append(("workspace_ids[]", workspace))

        def usage(day, r):
            got.add(Figures(day, r.get("model") or "unknown", self.key(r.get("api_key_id")),
                            None, input_uncached=_count(r, "uncached_input_tokens"),
                            cache_read=_count(r, "cache_read_input_tokens"),
                            cache_write=_count(r, "cache_creation", "ephemeral_5m_input_tokens")
                            + _count(r, "cache_creation", "ephemeral_1h_input_tokens"),
                            output=_count(r, "output_tokens")))
        self.pages(got, "/v1/organizations/usage_report/messages",
                   window + [("group_by[]", "model"), ("group_by[]", "api_key_id")], usage)

        def cost(day, r):
            if str(r.get("currency", "USD")).upper() != "USD":
                raise ValueError(f"a cost in {r.get('currency')!r}, not USD")
            if workspace and r.get("workspace_id") != workspace:
                return
            model = r.get("model") or NO_MODEL
            fees = got.costs[day]
            # In cents, as a decimal string: "123.45" is $1.2345.
            fees[model] = fees.get(model, Decimal(0)) + Decimal(str(r["amount"])) / 100
        costs = [w for w in window if w[0] != "workspace_ids[]"] + [("group_by[]", "description")]
        if workspace:
            costs.append(("group_by[]", "workspace_id"))
        self.pages(got, "/v1/organizations/cost_report", costs, cost)


FETCHERS = {"openai": OpenAIFetcher, "anthropic": AnthropicFetcher}


def _midnight(day: str) -> float:
    return dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp()

