"""The tables of the providers' own figures (store/reconcile.py reads and writes them;
schema.py's migrations make them), apart so that both import them without a cycle."""

from __future__ import annotations

# The categories a provider's usage report is compared in.
RECONCILED = ("input_uncached", "cache_read", "cache_write", "output")
# The tables (schema.py's migrations make them): their usage per model and key, their cost
# per model, each day's last fetch, and each account's provider and our services
# (comma-separated, as last fetched: what a report, which has no config, compares with).
PROVIDER_TABLES = {
    "provider_usage": ({"account": str, "day": str, "model": str, "api_key": str,
                        "requests": int, **{c: int for c in RECONCILED}},
                       ("account", "day", "model", "api_key")),
    "provider_costs": ({"account": str, "day": str, "model": str, "fee_usd": float},
                       ("account", "day", "model")),
    "provider_fetches": ({"account": str, "day": str, "fetched_at": float, "status": str,
                          "cause": str, "digest": str, "stable": int}, ("account", "day")),
    "provider_accounts": ({"account": str, "provider": str, "services": str}, ("account",)),
}
# PostgreSQL's: requests NULL where the report counts none (Anthropic's).
PROVIDER_TABLES_SQL = (
    "CREATE TABLE provider_usage (account text, day text, model text, api_key text, "
    "requests bigint, " + ", ".join(f"{c} bigint NOT NULL DEFAULT 0" for c in RECONCILED)
    + ", PRIMARY KEY (account, day, model, api_key))",
    "CREATE TABLE provider_costs (account text, day text, model text, "
    "fee_usd double precision, PRIMARY KEY (account, day, model))",
    "CREATE TABLE provider_fetches (account text, day text, fetched_at double precision, "
    "status text, cause text, digest text, stable integer, PRIMARY KEY (account, day))",
    "CREATE TABLE provider_accounts (account text PRIMARY KEY, provider text, "
    "services text)",
)
