"""The keys of attribution: which project, end user and tags a request is charged to
(table.py's part; gateway/attribution.py reads them from each request)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .schema import setting

TAG_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}")  # a tag key: also a label name's tail


def _header(v):
    if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", v):
        return "must be an HTTP header name (letters, digits and -)"


def _tag_keys(v):
    bad = [k for k in v if not TAG_KEY.fullmatch(k)]
    if bad:
        return f"{bad[0]!r}: tag keys are 1-32 lowercase letters, digits or _, from a letter"


@dataclass(frozen=True)
class Attribution:
    """Where a request's project, end user and tags come from."""

    project_header: str = setting("X-LLM-Project", "request header naming the project, "
                                  "used when the client's managed key names none",
                                  check=_header)
    user_header: str = setting("X-LLM-User", "request header naming the end user (else the "
                               "body's user, safety_identifier or metadata.user_id)",
                               check=_header)
    tags_header: str = setting("X-LLM-Tags", "request header of tags: key=value, "
                               "comma-separated, at most 8", check=_header)
    keep_headers: bool = setting(False, "pass these headers on to the upstream (default: "
                                 "removed before the request goes up)")
    projects: tuple[str, ...] = setting((), "the projects a header may name (default: any); "
                                        "others are counted as `other`")
    tag_labels: tuple[str, ...] = setting((), "tag keys made Prometheus labels (tag_KEY) on "
                                          "the request, token and cost series; bounded like "
                                          "project", check=_tag_keys)
