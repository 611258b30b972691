"""The cost report's Reconciliation section: per provider account and UTC day, our fees
beside the provider's own bill, as the reconciliation job fetched it (exporter/reconcile/).

Apart from sections.py's because it reads the providers' tables, not the usage API's,
and knows each account's services only from what the job noted at its last fetch.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ..store.database import Database
from ..store.query import Filters
from ..store.reconcile import daily_fees
from .content import Section, Table, totalled


def section(db: Database, filters: Filters) -> list[Section]:
    """The section, or none where no account has been fetched."""
    first = datetime.fromtimestamp(filters.start, UTC).date().isoformat()
    last = datetime.fromtimestamp(max(filters.start, filters.end - 1), UTC).date().isoformat()
    try:
        found = daily_fees(db, first, last)
    except db.Error:  # a history of a release before the reconciliation, read-only
        return []
    if not found:
        return []
    rows = [{"account": account, "provider": provider, "day": day, "fee_usd": ours,
             "provider_fee_usd": theirs, "drift_usd": ours - theirs,
             "drift_share": (ours - theirs) / theirs if theirs else None}
            for account, provider, day, ours, theirs in found]
    table = totalled(Table("Ours against the providers' bills, per UTC day", [
        ("day", "Day (UTC)", "text"), ("account", "Account", "text"),
        ("provider", "Provider", "text"), ("fee_usd", "Our fee", "usd"),
        ("provider_fee_usd", "Billed", "usd"), ("drift_usd", "Drift", "usd"),
        ("drift_share", "Drift share", "pct")], sorted(rows, key=lambda r: (r["day"],
                                                                          r["account"]))))
    return [Section("Reconciliation", [table], notes=[
        f"The providers' days are UTC: {first} to {last}, the days the period touches. "
        "This report's filters do not apply here: an account's fee is all of its services' "
        "traffic, and its bill all the account paid for (scope it to the gateway's project "
        "or workspace). Drift is ours less billed. Per model and key, with the likely "
        "cause of each drift: llm-usage-exporter reconcile."])]
