"""The checks of config values: each returns what is wrong with a value, or None."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit


def check_name(v):
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", v):
        return "must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"


def check_url(v):
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "must be an http:// or https:// URL"
    if parts.query or parts.fragment:
        return "must not have a query or fragment"


def check_database_url(v):
    """A PostgreSQL URL with no password in it (the password comes from the environment)."""
    parts = urlsplit(v)
    if parts.scheme not in ("postgresql", "postgres") or "://" not in v:
        return ("must be a postgresql:// URL, e.g. postgresql://gateway@db:5432/llm_usage "
                "(a SQLite file goes in history.path)")
    try:
        parts.port  # noqa: B018 - it raises on a port that is no number
    except ValueError:
        return "its port must be a number from 0 to 65535"
    if parts.password is not None or "password" in parse_qs(parts.query):
        return ("must not hold the password: set it in PGPASSWORD or in the variable "
                "history.password_env names")
    if not parts.path.strip("/"):
        return "must name the database: postgresql://USER@HOST:PORT/DATABASE"
    if parts.fragment:
        return "must not have a fragment"


def check_hostport(v):
    host, sep, port = v.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        return "must be HOST:PORT, for example 127.0.0.1:8080"


def check_positive(v):
    if v <= 0:
        return "must be greater than 0"


def check_sha256(v):
    if not re.fullmatch(r"[0-9a-f]{64}", v):
        return "must be 64 lowercase hex digits (printf %s \"$KEY\" | sha256sum)"


def check_env_var(v):
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
        return "must be an environment variable name"


def check_timezone(v):
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        return "must be an IANA time zone, e.g. UTC or Europe/Paris"


def one_of(*values):
    """A check that a value is one of `values`."""
    def check(v):
        if v not in values:
            return f"must be one of {', '.join(values)}"
    return check
