"""What reports read that the usage API has no query for: fees by category, the rows a
cost report explains, what caching saved, and p95 latency per bucket and model."""

from __future__ import annotations

from datetime import datetime

from .database import Database
from .query import Filters
from .schema import TOKEN_COLUMNS
from .zones import bucket_sql, wall_to_utc


def fee_categories(db: Database, filters: Filters) -> list[tuple[str, float]]:
    """The range's fees per direction and category (input_text, ...), biggest first."""
    where, args = filters.where()
    each, value = db.dialect.fee_categories()
    with db.connect() as conn:
        return [(k, v) for k, v in conn.all(
            f"SELECT key, sum({value}) FROM requests, {each} WHERE {where} "
            "GROUP BY key ORDER BY 2 DESC, 1", args)]


def cost_notes(db: Database, filters: Filters) -> tuple[int, int, int]:
    """Rows with a fee but no fees by category (written by an older release), unpriced
    requests, and estimated tokens."""
    where, args = filters.where()
    with db.connect() as conn:
        bare, unpriced, estimated = conn.one(
            "SELECT count(*) FILTER (WHERE fees IS NULL AND fee_usd > 0), sum(unpriced), "
            f"sum(estimated_input + estimated_output) FROM requests WHERE {where}", args)
    return bare or 0, unpriced or 0, estimated or 0


def unexplained(db: Database, filters: Filters) -> tuple[list, list]:
    """The unpriced requests by model, (model, count), most first; and the fees billed with
    no token, (model, operation, fee), biggest first: a fine-tuning's training, billed when
    its job succeeds, or what is billed by the call or the unit."""
    where, args = filters.where()
    tokens = " + ".join(TOKEN_COLUMNS)
    with db.connect() as conn:
        unpriced = conn.all(f"SELECT model, sum(unpriced) FROM requests WHERE {where} AND "
                            "unpriced > 0 GROUP BY model ORDER BY 2 DESC, 1", args)
        tokenless = conn.all(f"SELECT model, operation, sum(fee_usd) FROM requests WHERE "
                             f"{where} AND fee_usd > 0 AND {tokens} = 0 GROUP BY model, "
                             "operation ORDER BY 3 DESC, 1, 2", args)
    return [tuple(r) for r in unpriced], [tuple(r) for r in tokenless]


def cache_saved(db: Database, filters: Filters) -> float:
    """Cache reads at each model's average input text price, less what they cost."""
    where, args = filters.where()
    d = db.dialect
    saved = 0.0
    with db.connect() as conn:
        for text_fee, text, cache_fee, cached in conn.all(
                f"SELECT sum({d.fee_of('input_text')}), sum(input_text), "
                f"sum({d.fee_of('input_cache_read')}), sum(input_cache_read) "
                f"FROM requests WHERE {where} AND fees IS NOT NULL GROUP BY service, model",
                args):
            if text and cached:
                saved += cached * (text_fee or 0.0) / text - (cache_fee or 0.0)
    return saved


def p95_by_bucket(db: Database, filters: Filters, granularity: str,
                  models: list[str]) -> dict:
    """p95 of the duration per (bucket time in the zone, model), nearest rank, in ms: of
    each of `models`, and of all the others together as "other"."""
    where, args = filters.where()
    bucket, bucket_args = bucket_sql(granularity, filters.tz, filters.start, filters.end,
                                     "started_at", db.dialect.floor)
    marks = ", ".join("?" * len(models)) or "NULL"
    out: dict = {}
    with db.connect() as conn:
        for wall, model, p95 in conn.all(
                f"SELECT {bucket}, CASE WHEN model IN ({marks}) THEN model ELSE 'other' END, "
                f"{db.dialect.p95('duration_ms')} FROM requests WHERE {where} GROUP BY 1, 2",
                bucket_args + list(models) + args):
            time = datetime.fromtimestamp(wall_to_utc(wall, filters.tz), filters.tz)
            out[time.isoformat(), model] = p95
    return out
