"""The price table: genai-prices' data, looked up by exact provider and model, at a moment.

Its bundled snapshot is pinned with the package; `pricing_data:` in the config loads a newer
file in the package's own format (its `data.json`, downloaded by the user), so prices can
be refreshed without an upgrade. Nothing here ever fetches anything.
"""

from __future__ import annotations

import ipaddress
import json
import re
from datetime import datetime
from importlib.metadata import version
from urllib.parse import urlsplit

from genai_prices import types
from genai_prices.data_snapshot import DataSnapshot, get_snapshot

from .providers import AUTO, GUESSED, NONE, PREFIXED, SELF_HOSTED_GUESS, UNCLAIMED

BUNDLED = f"genai-prices {version('genai-prices')}"


class TableError(ValueError):
    """A price data file that cannot be used."""


def load(path: str | None = None) -> tuple[DataSnapshot, str]:
    """The bundled snapshot, or the one in a data file; and a name for it."""
    if path is None:
        return get_snapshot(), BUNDLED
    try:
        with open(path, "rb") as f:
            raw = json.load(f)
    except OSError as e:
        raise TableError(f"{path}: {e.strerror}") from None
    except ValueError as e:
        raise TableError(f"{path}: not JSON: {e}") from None
    if not isinstance(raw, list) or not raw:
        raise TableError(f"{path}: not genai-prices data (a list of providers)")
    try:
        # The package's own reader of its data format (what its updater uses).
        providers = types._providers_from_raw(raw)  # noqa: SLF001
    except Exception as e:  # its validation raises several kinds
        raise TableError(f"{path}: not genai-prices data: {e}") from None
    return DataSnapshot(providers, from_auto_update=False), f"{path} (pricing_data)"


class Table:
    """Find a model's prices in one table provider, or by the model's name."""

    def __init__(self, path: str | None = None):
        self.snapshot, self.name = load(path)
        self.providers = {p.id: p for p in self.snapshot.providers}
        self.ids = set(self.providers)

    def find(self, table: str, model: str) -> tuple[str, types.ModelInfo] | None:
        """(provider id, model info) of `model` as priced by `table` (an id, AUTO, or a
        prefixed provider such as litellm), or None."""
        if table == NONE:
            return None
        ref = model.lower()
        if table in PREFIXED or table == AUTO:
            head, sep, rest = ref.partition("/")
            if sep and head in self.providers:  # "anthropic/claude-...": its own table
                found = self._in(head, rest)
                if found or table in PREFIXED:
                    return found
        if table == AUTO:
            owner = self.owner(ref)
            return self._in(owner, ref) if owner else self._in(UNCLAIMED, ref)
        return self._in(table, ref)

    def owner(self, model: str) -> str | None:
        """The provider whose model names match `model` (claude-* is Anthropic's)."""
        for p in self.snapshot.providers:
            if p.model_match is not None and p.model_match.is_match(model.lower()):
                return p.id
        return None

    def _in(self, provider_id: str, ref: str) -> tuple[str, types.ModelInfo] | None:
        provider = self.providers.get(provider_id)
        if provider is None:
            return None
        info = provider.find_model(ref, all_providers=self.snapshot.providers)
        return (provider_id, info) if info is not None else None

    def guess(self, url: str) -> str:
        """The provider label for an upstream URL: the table provider whose API it is
        (api.openai.com, generativelanguage.googleapis.com, *.openai.azure.com, ...); a host
        on this machine or a private network is a server the team runs; else a guess."""
        for p in self.snapshot.providers:
            if re.match(p.api_pattern, url):
                return p.id
        return SELF_HOSTED_GUESS if _private(urlsplit(url).hostname or "") else GUESSED

    def is_anthropic(self, model: str) -> bool:
        """Whether Anthropic makes this model (its cache rules then apply, whoever resells it)."""
        anthropic = self.providers.get("anthropic")
        if anthropic is None:
            return False
        head, sep, rest = model.lower().partition("/")
        ref = rest if sep and head == "anthropic" else model.lower()  # OpenRouter's names
        return anthropic.find_model(ref) is not None or (
            anthropic.model_match is not None and anthropic.model_match.is_match(ref))


def signature(info: types.ModelInfo, at: datetime) -> tuple[bool, ...]:
    """Which of a model's dated and time-of-day prices are in force at `at`: two moments
    with the same signature have the same prices (so a sheet can be kept for it)."""
    flags = []
    if not isinstance(info.prices, types.ModelPrice):
        flags += [c.constraint is None or c.constraint.active(at) for c in info.prices]
    flags += [v.constraint.active(at) for v in info.price_variants or () if v.constraint]
    return tuple(flags)


def _private(host: str) -> bool:
    """A loopback or private address, or a name only a local network resolves."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "." not in host or host.endswith((".local", ".internal", ".lan", ".svc",
                                                  ".cluster.local", ".localhost", ".home"))
    return address.is_private or address.is_loopback or address.is_link_local
