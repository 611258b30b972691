"""Spend and budgets: each key's day and month against its budget, the forecast, the fee by
token category, what caching saved, the requests nobody could price, and our fees against
the providers' own bills.

Seed pages 003 (cost metrics, forecasts, usage alerts) and 001 (fee per model and key).
"""

from __future__ import annotations

from .kit import (
    BUCKET,
    BY_KEY,
    BY_MODEL,
    DASHED,
    Column,
    api_variable,
    common_variables,
    dashboard,
    gauge_panel,
    ledger_stat,
    promql,
    stat_panel,
    table_panel,
    trend_panel,
)

UID = "llm-spend"
KEY = 'api_key=~"$api_key"'


def spend(period: str) -> str:
    # max by: several gateways sharing one history each export the same figure.
    return f'max by (api_key) (llm_spend_usd{{period="{period}",{KEY}}})'


def budget(period: str) -> str:
    return f'max by (api_key) (llm_budget_usd{{period="{period}",{KEY}}})'


def cost(extra: str = "") -> str:
    return f"llm_cost_usd_total{{{BY_KEY}{extra}}}"


def build():
    against = [
        gauge_panel("Today's spend against budget", "Each API key's spend of the calendar day "
                    "in the gateway's time zone (llm_spend_usd, from the request history) as "
                    "a share of its daily budget (llm_budget_usd). Keys without a daily "
                    "budget are not shown; amber from 80% (LLMBudgetWarning), red at 100% "
                    "(LLMBudgetExceeded).", "percentunit",
                    f"{spend('day')} / {budget('day')}", "{{api_key}}"),
        gauge_panel("This month's spend against budget", "The same for the calendar month: "
                    "spend so far over the monthly budget.", "percentunit",
                    f"{spend('month')} / {budget('month')}", "{{api_key}}"),
        gauge_panel("Month-end forecast against budget", "The month's spend extended at its "
                    "pace to the month's end (api_key:llm_spend_usd:month_forecast; on the "
                    "month's first day, the spend so far) over the monthly budget: above 100% "
                    "LLMBudgetForecastExceeded fires, from two days into the month.", "percentunit",
                    f'api_key:llm_spend_usd:month_forecast{{{KEY}}} / {budget("month")}',
                    "{{api_key}}"),
    ]
    columns = [Column("api_key", "API key"), Column("Value #A", "Today", "currencyUSD"),
               Column("Value #B", "Daily budget", "currencyUSD"),
               Column("Value #C", "This month", "currencyUSD"),
               Column("Value #D", "Monthly budget", "currencyUSD"),
               Column("Value #E", "Month-end forecast", "currencyUSD")]
    per_key = table_panel(
        "Spend and budgets per API key", "Per API key: today's and this month's spend in the "
        "gateway's time zone (llm_spend_usd, read from the request history at every scrape, "
        "so right after a restart), the configured budgets (llm_budget_usd) and the "
        "month-end forecast. An empty budget: none is configured for that key.", columns,
        [promql(q, ref=ref, instant=True, table_format=True) for q, ref in (
            (spend("day"), "A"), (budget("day"), "B"), (spend("month"), "C"),
            (budget("month"), "D"), (f"api_key:llm_spend_usd:month_forecast{{{KEY}}}", "E"))],
        merge=True, h=8)
    # Cache reads at their model's average input text price over the range, less their fee.
    by_model = "sum by (service, provider, model) (increase({}[$__range]))"
    cache_tokens = by_model.format(f'llm_tokens_total{{{BY_KEY},token_type="cache_read"}}')
    text_fee = by_model.format(cost(',direction="input",token_type="text"'))
    text_tokens = by_model.format(f'llm_tokens_total{{{BY_KEY},direction="input",'
                                  'token_type="text"}')
    cache_fee = by_model.format(cost(',token_type="cache_read"'))
    # `> 0`: a model with no text input in the range has no price to go by (0/0 would make
    # the whole sum NaN); `or vector(0)`: nothing saved is $0, not "No data".
    saved = (f"sum({cache_tokens} * ({text_fee} / ({text_tokens} > 0)) - {cache_fee}) "
             "or vector(0)")
    breakdown = [
        trend_panel("Fee by token category", "US dollars by direction and token category: "
                    "increase(llm_cost_usd_total[$__interval]) summed by "
                    "direction and token_type, per bucket of at least 5 minutes (wider over a "
                    "range with more of them than the panel can draw).", "currencyUSD",
                    [promql(f"sum by (direction, token_type) (increase({cost()}{BUCKET}))",
                            "{{direction}} {{token_type}}", interval="5m")],
                    w=8, bars=True, stacked=True),
        stat_panel("What caching saved", "What the range's cache-read tokens would have cost "
                   "at their model's input text price (its average over the range: input "
                   "text fees over input text tokens) less what they cost, summed over "
                   "models. An estimate: long-context tiers and models without text input in "
                   "the range are left out.", "currencyUSD", saved, w=4, h=8),
        stat_panel("Tokens at an assumed price", "Tokens over the range billed at an assumed "
                   "price: their category (audio, image, cache) has no price of its own, so "
                   "its direction's text price was applied "
                   "(llm_assumed_price_tokens_total). Zero when the bill rests on no "
                   "assumption.", "locale",
                   f"sum(increase(llm_assumed_price_tokens_total{{{BY_KEY}}}[$__range])) "
                   "or vector(0)", w=4, h=8, decimals=0),
        ledger_stat("Web searches", "Server-side web searches over the range, billed per "
                    "thousand by the provider, from the request history (the usage API); "
                    'their fee is in the fee by token category as direction "tool".',
                    "locale", ["web_search_calls"], w=4, h=8, decimals=0),
        stat_panel("Unpriced requests", "Requests over the range that used tokens of a model "
                   "with no known price: they cost nothing in llm_cost_usd_total, so the "
                   "bill is too low (LLMUnpricedRequests). Zero when there are none.", "locale",
                   f"sum(increase(llm_unpriced_requests_total{{{BY_MODEL}}}[$__range])) "
                   "or vector(0)", w=4, h=8, decimals=0),
    ]
    trend = [
        trend_panel("Fee per hour by API key", "US dollars per hour by API key: "
                    "rate(llm_cost_usd_total[$__rate_interval]) times 3600.", "currencyUSD",
                    [promql(f"sum by (api_key) (rate({cost()}[$__rate_interval])) * 3600",
                            "{{api_key}}")], w=12),
        trend_panel("Spend so far this month by API key", "Each key's spend of the calendar "
                    "month so far (llm_spend_usd), and its forecast for the month's end "
                    "(dashed).", "currencyUSD",
                    [promql(spend("month"), "{{api_key}}"),
                     promql(f"api_key:llm_spend_usd:month_forecast{{{KEY}}}",
                            "{{api_key}} forecast", "B")], w=12).override_by_query(
                        "B", [DASHED]),
    ]
    # The reconciliation's gauges of the last whole UTC day: each day's value is held for
    # the day after it, so the step drawn at a midnight is the day before's. max by: every
    # replica exports the same figures, from the shared history.
    day = 'max by (account, model) (llm_reconcile_{}{{period="day"}})'
    theirs = day.format("provider_fee_usd")
    bills = [trend_panel(
        "Ours against the provider's bill, per day", "Per provider account (reconcile: in "
        "the config), the fees of the last whole UTC day as the gateway counted them and as "
        "the provider's cost report bills them, and the drift (ours less theirs; "
        "llm_reconcile_drift_usd). Each day's figures are drawn during the day after it, "
        "when they are fetched; the providers amend their newest days, so a drift that "
        "shrinks the next day was their lag. `llm-usage-exporter reconcile` lists them by "
        "model and key with the likely cause.", "currencyUSD",
        [promql(f"sum by (account) ({day.format('drift_usd')} + {theirs})",
                "{{account}} ours"),
         promql(f"sum by (account) ({theirs})", "{{account}} theirs", "B"),
         promql(f"sum by (account) ({day.format('drift_usd')})", "{{account}} drift", "C")],
        w=24).override_by_query("B", [DASHED])]
    return dashboard(
        UID, "LLM spend and budgets",
        "What each API key has spent today and this month against its budget, where the "
        "month is heading, which token categories cost what, and what caching saved.",
        common_variables() + [api_variable()],
        [("Budgets", against + [per_key]), ("Where the money goes", breakdown),
         ("Over time", trend), ("The providers' bills", bills)])
