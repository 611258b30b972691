"""`keys new NAME`: a fresh client key, and the config lines that admit it (its hash only)."""

from __future__ import annotations

import hashlib
import secrets
import sys

from ..config.checks import check_name

# `sk-` so that the masking of key-shaped strings (record.py) and secret scanners know it.
PREFIX = "sk-gw-"


def new_key(name: str, services: str | None, models: str | None, out=sys.stdout) -> int:
    """Print a random key once, and the api_keys entry with its SHA-256 for the config."""
    if problem := check_name(name):
        print(f"llm-usage-exporter keys new: NAME {problem}", file=sys.stderr)
        return 2
    key = PREFIX + secrets.token_urlsafe(32)  # 256 random bits
    digest = hashlib.sha256(key.encode()).hexdigest()
    lines = [f"  - name: {name}", f"    sha256: {digest}"]
    for field, value in (("services", services), ("models", models)):
        if value:
            items = ", ".join(f'"{v.strip()}"' for v in value.split(",") if v.strip())
            lines.append(f"    {field}: [{items}]")
    print(f"# The key, shown this once: give it to its user. The gateway keeps only its hash.\n"
          f"{key}\n"
          f"# Add under api_keys: in the config, then reload (kill -HUP) or restart the "
          f"gateway:\n" + "\n".join(lines), file=out)
    return 0
