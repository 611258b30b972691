"""The keys of `reconcile:`: the provider accounts whose own usage and cost reports the
gateway's figures are compared with (table.py's part; exporter/reconcile/ does the work)."""

from __future__ import annotations

from dataclasses import dataclass

from .checks import check_env_var, check_name, check_positive, check_url, one_of
from .schema import setting

# Each provider's admin API, where `base_url` is not given.
DEFAULT_BASE_URLS = {"openai": "https://api.openai.com",
                     "anthropic": "https://api.anthropic.com"}


def _share(v):
    if not 0 < v < 1:
        return "must be a fraction between 0 and 1, e.g. 0.02 for 2%"


@dataclass(frozen=True)
class ReconcileAccount:
    """A provider account (OpenAI organization or project, Anthropic organization or
    workspace) whose usage and cost reports are fetched each day and compared with ours."""

    name: str = setting(doc="the `account` label, and the account's name in reports",
                        check=check_name)
    provider: str = setting(doc="openai or anthropic: whose admin API it is",
                            check=one_of("openai", "anthropic"))
    admin_key_env: str = setting(doc="environment variable holding the admin key (OpenAI's "
                                 "sk-admin-..., Anthropic's sk-ant-admin...); never in the "
                                 "file, never logged", check=check_env_var)
    services: tuple[str, ...] = setting(doc="our services whose traffic this account pays "
                                        "for, by name")
    base_url: str | None = setting(None, "the admin API's URL without /v1 (default "
                                   "https://api.openai.com or https://api.anthropic.com; "
                                   "another for a proxy)", check=check_url)
    api_keys: dict[str, str] = setting(doc="their API key id -> our `api_key` label, e.g. "
                                       "{key_abc123: search-team}; other ids are matched by "
                                       "the keys' last characters where the provider lists "
                                       "them, else reported as unmapped", default_factory=dict)
    project_id: str | None = setting(None, "OpenAI: only this project's usage and cost "
                                     "(project_ids=...), so traffic of other projects is no "
                                     "drift")
    workspace_id: str | None = setting(None, "Anthropic: only this workspace's usage "
                                       "(workspace_ids[]=...); its cost report is of the "
                                       "workspace's lines")
    refetch_days: int = setting(3, "the last days fetched again at every run (providers "
                                "publish late); an older day is fetched again until two "
                                "fetches six hours apart agree", check=check_positive)
    backfill_days: int = setting(35, "how far back days are fetched at all: a month to date "
                                 "and its first days' late figures", check=check_positive)
    every_hours: float = setting(24.0, "how often the reports are fetched (a failed fetch "
                                 "is tried again sooner, with a backoff)", check=check_positive)
    drift_alert_share: float = setting(0.02, "LLMReconcileDrift fires when the month's fee "
                                       "drift passes this share of the provider's fee",
                                       check=_share)
