"""Who may call, with what, and for how much: the client's key, and the budgets enforced.

Without `require_api_key` every key passes and is only named (its `api_key` label). With it,
a request whose key is not in `api_keys` is refused with 401 before anything reaches an
upstream. Either way a configured key is held to its services and models (403), and a key
whose enforced budget is spent, or whose project's or end user's is, is refused with 429
until its day or month ends.
"""

from __future__ import annotations

import fnmatch
import math
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple
from zoneinfo import ZoneInfo

from ..config.budgets import budget_of
from ..config.table import ApiKey, Config
from ..record import ErrorType, RequestRecord
from ..store.spend import Spend, payers
from ..store.zones import periods
from .headers import key_digest

# The official SDKs retry a 429 (twice, by default) unless told not to: a spent budget does
# not come back in seconds.
NO_RETRY = b"x-should-retry: false\r\n"
WHO = {"api_key": "API key", "project": "project", "user": "end user"}


class Refusal(NamedTuple):
    status: int
    error_type: ErrorType
    message: str
    headers: bytes = NO_RETRY


class Keys:
    """The configured keys by digest, and the budgets to enforce against the history's spend."""

    def __init__(self, config: Config, env: Mapping[str, str], spend: Spend | None = None,
                 clock: Callable[[], float] = time.time):
        self.by_digest = config.keys_by_digest(env)
        self.required = config.require_api_key
        # Every budget, enforced or not: a listed key's alert-only budget is its own, and
        # holds it out of the enforced "*" one.
        self.budgets = {b.payer: b for b in config.budgets}
        enforced = [b.payer[0] for b in config.budgets if b.enforce]
        self.enforcing = spend is not None and bool(enforced)
        self.users = "user" in enforced  # an end user's budget is enforced
        self.spend, self.clock = spend, clock
        self.tz = ZoneInfo(config.timezone)

    def identify(self, header: Callable[[bytes], str | None],
                 raw_path: str = "") -> tuple[str, ApiKey | None]:
        """The client key's `api_key` label, and its entry if it is a configured key (in a
        header, or for Gemini's clients the query's `key`)."""
        digest = key_digest(header, raw_path)
        if digest is None:
            return "none", None
        entry = self.by_digest.get(digest)
        return (entry.name, entry) if entry is not None else ("key-" + digest[:8], None)

    def refuse(self, label: str, entry: ApiKey | None, service: str) -> Refusal | None:
        """Why the key may not call the service; None if it may. The model is checked once
        the body is read (refuse_model), and then the budgets (spent): a forbidden model's
        403 does not go away tomorrow, a 429 does."""
        if entry is None and self.required:
            return Refusal(401, ErrorType.KEY_UNKNOWN, "the gateway requires an API key, and "
                           "none was given" if label == "none" else "this API key is not one "
                           "of the gateway's keys")
        if entry is not None and entry.services and service not in entry.services:
            return Refusal(403, ErrorType.KEY_FORBIDDEN, f"API key {label} may not use the service "
                           f"{service} (it may use: {', '.join(entry.services)})")
        return None

    @staticmethod
    def refuse_model(label: str, entry: ApiKey | None, model: str | None) -> Refusal | None:
        """Why the model asked for is not the key's to use; None if it is, or none is named."""
        if entry is None or not entry.models or model is None:
            return None
        if any(fnmatch.fnmatchcase(model, pattern) for pattern in entry.models):
            return None
        return Refusal(403, ErrorType.KEY_FORBIDDEN, f"API key {label} may not use the model "
                       f"{model} (it may use: {', '.join(entry.models)})")

    def spent(self, rec: RequestRecord) -> Refusal | None:
        """The 429 of a request whose key, project or end user has spent an enforced
        budget, else None."""
        if self.spend is None:  # no history
            return None
        now = self.clock()
        for payer in payers(rec.api_key, rec.project, rec.end_user):
            budget = budget_of(self.budgets, payer)
            if budget is None or not budget.enforce:
                continue
            spent = [(period, used, limit) for period, used, limit in zip(
                ("day", "month"), self.spend.of(payer, now), (budget.daily, budget.monthly),
                strict=True) if limit is not None and used >= limit]
            if not spent:  # the common case: no calendar arithmetic (10 us) on the way
                continue
            period, used, limit = spent[-1]  # both spent: refused until the month ends
            end = periods(now, self.tz)[period][1]
            wait = max(math.ceil(end - now), 1)
            return Refusal(429, ErrorType.BUDGET_EXCEEDED, f"{WHO[payer[0]]} {payer[1]} has "
                           f"spent its {'daily' if period == 'day' else 'monthly'} budget: "
                           f"{_usd(used)} of {_usd(limit)}; it renews in {_span(wait)}",
                           NO_RETRY + b"retry-after: %d\r\n" % wait)
        return None


def _usd(amount: float) -> str:
    return "$" + f"{amount:.6f}".rstrip("0").rstrip(".")


def _span(seconds: int) -> str:
    days, hours, minutes = seconds // 86400, seconds % 86400 // 3600, seconds % 3600 // 60
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{max(minutes, 1)} min"
