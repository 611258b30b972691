"""Their key ids to our `api_key` labels by the keys' last characters, where the provider
lists its keys with a hint of them: Anthropic's `partial_key_hint` ("sk-ant-api03-R2D...
igAA"), OpenAI's project keys' `redacted_value` ("sk-proj-abc...wxyz", with `project_id`).

Only ids the configured table does not map are looked up, and only when one of our keys
ends as exactly one listed key does: a tail two keys share maps neither. Our keys' last
characters are all that is held (KEEP of them); a listing that fails maps nothing and
fails nothing: the ids stay `unmapped:ID`.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from .client import AdminClient, FetchError

log = logging.getLogger(__name__)

KEEP = 8  # characters of each of our keys kept to compare: more than any hint shows
SHORTEST = 4  # a hint's tail shorter than this could match keys by chance


def tails(api_keys, env) -> dict[str, str]:
    """Our key names and their last characters, of the keys the config can read."""
    return {k.name: env[k.key_env][-KEEP:] for k in api_keys
            if k.key_env and len(env.get(k.key_env) or "") >= 2 * KEEP}


def hint_tail(hint) -> str | None:
    """The characters a redacted key shows at its end."""
    text = hint.replace("\u2026", "...") if isinstance(hint, str) else ""
    if "..." not in text:
        return None
    tail = text.rsplit("...", 1)[1]
    return tail if len(tail) >= SHORTEST else None


def listed(client: AdminClient, provider: str, project_id: str | None) -> dict[str, str]:
    """Every listed key id and the tail its hint shows (Anthropic's organization keys,
    OpenAI's keys of the project)."""
    if provider == "anthropic":
        path, field, cursor_param = "/v1/organizations/api_keys", "partial_key_hint", "after_id"
    elif project_id:
        path, field, cursor_param = (f"/v1/organization/projects/{project_id}/api_keys",
                                     "redacted_value", "after")
    else:
        return {}  # OpenAI lists keys per project only
    out, cursor = {}, None
    for _ in range(100):  # 100 pages of 100 keys: a bound on a cursor that never ends
        page = client.get(path, [("limit", "100")] + ([(cursor_param, cursor)] if cursor
                                                      else []))
        data = page.get("data")
        if not isinstance(data, list):
            raise FetchError("malformed", f"{path}: a page without data")
        for key in data:
            tail = hint_tail(key.get(field)) if isinstance(key, dict) else None
            if tail and isinstance(key.get("id"), str):
                out[key["id"]] = tail
        cursor = page.get("last_id")
        if not page.get("has_more") or not isinstance(cursor, str):
            return out
    return out


def matched(hints: dict[str, str], ours: dict[str, str]) -> dict[str, str]:
    """Their key id -> our label, where exactly one of our keys ends as its hint and that
    key ends as no other of their hints (two of their keys with one tail, say a key of
    the gateway's and another app's, would merge the other's traffic into ours)."""
    def ends(mine: str, tail: str) -> bool:
        return mine[-len(tail):] == tail[-len(mine):]  # the shorter one's length

    out = {}
    for key_id, tail in hints.items():
        found = [name for name, mine in ours.items() if ends(mine, tail)]
        if len(found) == 1 and sum(ends(ours[found[0]], t) for t in hints.values()) == 1:
            out[key_id] = found[0]
    return out


def relabel(got, account, client: AdminClient, ours: dict[str, str]) -> None:
    """Give the rows of unmapped ids our label, where their keys' hints match ours."""
    unmapped = {key[len("unmapped:"):] for rows in got.usage.values() for _, key in rows
                if key.startswith("unmapped:")}
    if not unmapped or not ours:
        return
    try:
        hints = listed(client, account.provider, account.project_id)
    except FetchError as e:  # the usage stands; the ids stay unmapped
        log.warning("reconcile: account %s: its API keys could not be listed (%s), so "
                    "their ids stay unmapped: %s", account.name, e.cause, e)
        return
    found = matched({k: v for k, v in hints.items() if k in unmapped}, ours)
    for day, rows in list(got.usage.items()):
        got.usage[day] = {}
        for (_, key), f in rows.items():
            label = found.get(key[len("unmapped:"):], key) if key.startswith("unmapped:") \
                else key
            got.add(replace(f, api_key=label))
