"""Our figures beside a provider's, one row per day, account, model and key, with the drift
and its likely cause. Pure: given both sides, no I/O.

Fees are compared per day and model, on a row whose `api_key` is `*` (every key): the
providers' cost reports name the model of each line but not the key. Requests and tokens
are compared per key on the rows beneath it; their fee columns hold ours alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..store.provider_tables import RECONCILED
from ..store.reconcile import Figures

ALL_KEYS = "*"
# Where one token category alone drifts, what most often reads it wrong.
ONE_CATEGORY = {"input_uncached": "input the upstream's usage did not report (tool or "
                "image tokens?)",
                "cache_read": "cached tokens lost (a stream's usage, a parser's miss?)",
                "cache_write": "cache writes lost (a 1-hour write read as none?)",
                "output": "output of streams cut before their usage (client gone?)"}
# Our share of their tokens below which a row looks like traffic the gateway never saw.
UNSEEN = 0.5


@dataclass
class Row:
    day: str
    account: str
    provider: str
    model: str
    api_key: str
    fee_usd: float = 0.0
    provider_fee_usd: float | None = None
    drift_usd: float | None = None
    drift_share: float | None = None
    requests: int = 0
    provider_requests: int | None = None
    input_uncached_tokens: int = 0
    provider_input_uncached_tokens: int = 0
    cache_read_tokens: int = 0
    provider_cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    provider_cache_write_tokens: int = 0
    output_tokens: int = 0
    provider_output_tokens: int = 0
    estimated_tokens: int = 0
    likely_cause: str = ""

    def add(self, f: Figures, theirs: bool) -> None:
        prefix = "provider_" if theirs else ""
        for c in RECONCILED:
            name = f"{prefix}{c}_tokens"
            setattr(self, name, getattr(self, name) + getattr(f, c))
        if theirs:
            if f.requests is not None:
                self.provider_requests = (self.provider_requests or 0) + f.requests
        else:
            self.requests += f.requests or 0
            self.fee_usd += f.fee_usd or 0.0
            self.estimated_tokens += f.estimated

    def tokens(self, theirs: bool) -> tuple[int, ...]:
        prefix = "provider_" if theirs else ""
        return tuple(getattr(self, f"{prefix}{c}_tokens") for c in RECONCILED)

    def as_dict(self) -> dict:
        """Its columns, the amounts rounded off the float sums' last digits."""
        out = asdict(self)
        for name in ("fee_usd", "provider_fee_usd", "drift_usd"):
            if out[name] is not None:
                out[name] = round(out[name], 10) + 0.0  # -0.0 is 0.0
        if out["drift_share"] is not None:
            out["drift_share"] = round(out["drift_share"], 6) + 0.0
        return out


def ordered(blocks: list[list[Row]]) -> list[Row]:
    """Blocks of several accounts as one list: the largest fee drift first."""
    return [row for block in sorted(blocks, key=lambda b: (-abs(b[0].drift_usd or 0.0),
                                                           b[0].day, b[0].account, b[0].model))
            for row in block]


def compare(account: str, provider: str, ours: list[Figures], theirs: list[Figures],
            fees: dict[tuple[str, str], float]) -> list[list[Row]]:
    """One account's rows in blocks: a model's day (api_key `*`, with the fees), then its
    keys (the largest token drift first)."""
    keyed: dict[tuple[str, str, str], Row] = {}
    models: dict[tuple[str, str], Row] = {}
    for side, figures in ((False, ours), (True, theirs)):
        for f in figures:
            row = keyed.get((f.day, f.model, f.api_key))
            if row is None:
                row = keyed[(f.day, f.model, f.api_key)] = Row(f.day, account, provider,
                                                                f.model, f.api_key)
            row.add(f, side)
            head = models.get((f.day, f.model))
            if head is None:
                head = models[(f.day, f.model)] = Row(f.day, account, provider, f.model,
                                                      ALL_KEYS)
            head.add(f, side)
    for (day, model), fee in fees.items():
        row = models.setdefault((day, model), Row(day, account, provider, model, ALL_KEYS))
        row.provider_fee_usd = (row.provider_fee_usd or 0.0) + fee
    for row in models.values():
        if row.provider_fee_usd is None and row.fee_usd:
            row.provider_fee_usd = 0.0  # fees of ours they bill nothing for: all drift
        if row.provider_fee_usd is not None:
            row.drift_usd = row.fee_usd - row.provider_fee_usd
            row.drift_share = row.drift_usd / row.provider_fee_usd \
                if row.provider_fee_usd else None
    for row in (*models.values(), *keyed.values()):
        row.likely_cause = likely_cause(row)
    beneath: dict[tuple[str, str], list[Row]] = {}
    for (day, model, _), row in keyed.items():
        beneath.setdefault((day, model), []).append(row)
    return [[head, *sorted(beneath.get(key, ()), key=lambda r: (-token_drift(r), r.api_key))]
            for key, head in models.items()]


def token_drift(row: Row) -> int:
    """Tokens of every category that one side has and the other has not."""
    return sum(abs(a - b) for a, b in zip(row.tokens(False), row.tokens(True), strict=True))


def likely_cause(row: Row) -> str:
    """What most often makes a drift of this shape, in a few words; empty when none."""
    ours, theirs = row.tokens(False), row.tokens(True)
    if row.model == "none" and row.drift_usd:
        return "billed for no model (server tools, storage): compare it as a whole"
    if row.api_key.startswith("unmapped:"):
        return "their key is in no api_keys entry of the account: map it to our label"
    if ours != theirs:
        below = all(a <= b for a, b in zip(ours, theirs, strict=True))
        bypassed = "traffic that bypassed the gateway (scope the account to its project " \
                   "or workspace)"
        if not sum(ours):
            return bypassed
        uncached, read = RECONCILED.index("input_uncached"), RECONCILED.index("cache_read")
        if ours[read] < theirs[read] and ours[uncached] > theirs[uncached]:
            return "cache reads counted as uncached input (a stream's usage lost?)"
        if row.estimated_tokens:
            return "estimated tokens: the upstream reported none for some requests"
        apart = [i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b]
        if len(apart) == 1:  # one category alone: what the gateway reads of it
            i = apart[0]
            return f"{'fewer' if ours[i] < theirs[i] else 'more'} " \
                   f"{RECONCILED[i].replace('_', ' ')} tokens than billed, the other " \
                   f"categories alike: {ONE_CATEGORY[RECONCILED[i]]}"
        if below and sum(ours) / sum(theirs) < UNSEEN:
            return bypassed
        if below:
            return "fewer tokens than billed: traffic that bypassed the gateway, or " \
                   "requests it could not meter"
        return "more tokens than billed: requests the provider did not bill (failed, " \
               "or another account's)"
    if row.drift_usd:
        if row.fee_usd == 0 and sum(ours):
            return "unpriced model: add a price under pricing:"
        return "the same tokens priced apart: a price override, or a price that changed"
    return ""
