"""Who a request is charged to besides its key: a project, an end user, tags.

The project is a label (bounded): the managed key's own (`api_keys[].project`), else the
client's header (`X-LLM-Project`), else `none`; a header never overrides a key's project,
the key's owner's claim. The end user and the tags are history columns only (unbounded):
the user from `X-LLM-User`, else the body's own field (OpenAI's `user` or
`safety_identifier`, Anthropic's `metadata.user_id`, Bedrock Converse's
`requestMetadata.user_id`; Gemini's API has none); the tags from `X-LLM-Tags:
feature=search, env=prod`. Bad values are cut to their bounds or left out, and counted in
llm_attribution_rejected_total{field}: a request is never refused for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config.attribution import TAG_KEY, Attribution
from ..config.table import ApiKey
from ..record import MAX_NAME, RequestRecord, safe_text
from ..telemetry.labels import OTHER

MAX_TAGS = 8
MAX_TAG_VALUE = 64


class Attributor:
    """Read a request's project, end user and tags, as the config says."""

    def __init__(self, config: Attribution, rejected: Callable[[str], None]):
        self.project = config.project_header.lower().encode()
        self.user = config.user_header.lower().encode()
        self.tags = config.tags_header.lower().encode()
        self.allowed = frozenset(config.projects) or None
        self.rejected = rejected  # counts a value left out or cut, by field
        # Removed before the request goes upstream (unless kept): the provider needs none.
        self.headers = frozenset() if config.keep_headers else \
            frozenset((self.project, self.user, self.tags))

    def attribute(self, rec: RequestRecord, header: Callable[[bytes], str | None],
                  key: ApiKey | None) -> None:
        """Fill the record's project, user and tags from the key and the headers."""
        if key is not None and key.project:
            rec.project = key.project
        elif (project := header(self.project)) is not None:
            rec.project = self._project(project)
        if (user := header(self.user)) is not None:
            rec.end_user = self._user(user)
        if (tags := header(self.tags)) is not None:
            rec.tags = self._tags(tags)

    def from_body(self, rec: RequestRecord, body: dict[str, Any] | None) -> None:
        """The end user the body names, where no header did."""
        if rec.end_user is not None or body is None:
            return
        metadata = body.get("metadata")  # Anthropic's
        tagged = body.get("requestMetadata")  # Bedrock Converse's: string pairs
        for found in (body.get("user"), body.get("safety_identifier"),
                      metadata.get("user_id") if isinstance(metadata, dict) else None,
                      tagged.get("user_id") if isinstance(tagged, dict) else None):
            if found is None:
                continue
            if isinstance(found, str) and found:
                rec.end_user = self._user(found)
                return
            self.rejected("user")  # a field of the wrong type: ignored

    def _project(self, value: str) -> str:
        value = value.strip()
        clean = safe_text(value, MAX_NAME)
        if not clean or clean != value or (self.allowed is not None
                                           and clean not in self.allowed):
            self.rejected("project")
            return OTHER if clean else "none"
        return clean

    def _user(self, value: str) -> str | None:
        clean = safe_text(value.strip(), MAX_NAME)
        if clean != value.strip():
            self.rejected("user")
        return clean or None

    def _tags(self, value: str) -> dict[str, str] | None:
        tags: dict[str, str] = {}
        for pair in value.split(","):
            name, equals, tag = pair.partition("=")
            name, tag = name.strip().lower(), safe_text(tag.strip(), MAX_TAG_VALUE)
            if not pair.strip():
                continue
            if not equals or not TAG_KEY.fullmatch(name) or not tag or len(tags) >= MAX_TAGS:
                self.rejected("tags")
                continue
            tags[name] = tag
        return tags or None
