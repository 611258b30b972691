"""The keys of a budget: a spending limit for one API key, project or end user (table.py's
part; gateway/keys.py enforces them, store/collector.py exports them)."""

from __future__ import annotations

from dataclasses import dataclass

from .schema import setting


def _amount(v):
    if v < 0:
        return "must be 0 or more (USD)"


PAYERS = ("api_key", "project", "user")  # what a budget can hold to a limit


def budget_of(budgets: dict, payer: tuple[str, str]) -> Budget | None:
    """A payer's budget among `budgets` (by payer): its own, else its kind's "*"."""
    return budgets.get(payer) or budgets.get((payer[0], "*"))


@dataclass(frozen=True)
class Budget:
    """A spending limit for one API key, project or end user, exported as llm_budget_usd
    (keys) or llm_project_budget_usd (projects) for the alerts."""

    api_key: str | None = setting(None, "the `api_key` label value, or * for every key not "
                                  "listed")
    project: str | None = setting(None, "the `project` label value, or * for every project "
                                  "not listed (instead of api_key)")
    user: str | None = setting(None, "an end user, or * for each end user not listed, each "
                               "held to it apart (instead of api_key)")
    daily: float | None = setting(None, "USD per calendar day in `timezone`", check=_amount)
    monthly: float | None = setting(None, "USD per calendar month in `timezone`",
                                    check=_amount)
    enforce: bool = setting(False, "refuse the key's, project's or user's requests with "
                            "429 once a limit is spent, until the day or month ends "
                            "(default: alert only)")

    @property
    def payer(self) -> tuple[str, str]:
        """What the budget holds: its kind (one of PAYERS) and its name."""
        for kind in PAYERS:
            if (name := getattr(self, kind)) is not None:
                return kind, name
        return "api_key", ""
