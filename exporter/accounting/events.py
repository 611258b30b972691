"""What each API's stream events say: the model, the usage, the first content, the text
generated, errors. stream.py frames the stream into events; this reads each one.
"""

from __future__ import annotations

from typing import Any

from .body import gemini_parts
from .operations import COMPLETION, GENERATE, IMAGES, MESSAGES, RESPONSES, SPEECH, TRANSCRIPTION
from .oversized import Oversized
from .usage import web_search_calls

_DELTA_KEYS = frozenset(("content", "reasoning_content", "reasoning", "refusal"))
MEDIA = frozenset((IMAGES, TRANSCRIPTION, SPEECH))


def _chars(value: object) -> int:
    return len(value) if isinstance(value, str) else 0


class EventReader:
    """What one response's events said so far, read event by event."""

    __slots__ = ("operation", "model", "usage", "final", "chars", "error_type",
                 "error_message", "service_tier", "web_search_calls", "malformed")
    # Whether to leave out a usage chunk the client did not ask for: the subclass's
    # (StreamMeter's) to set, and to hold in its slots; declared here, where it is read.
    strip_usage: bool

    def __init__(self, operation: str):
        self.operation = operation
        self.model: str | None = None
        self.usage: dict[str, Any] | None = None
        self.final = False  # the usage seen includes the final output count
        self.chars = 0  # generated text so far
        self.error_type: str | None = None
        self.error_message: str | None = None
        self.service_tier: str | None = None
        self.web_search_calls = 0  # Responses: the completed response's web_search_call items
        self.malformed = 0  # events whose fields had types no API sends: passed on as they are

    def _dispatch(self, obj: dict[str, Any]) -> tuple[bool, bool]:
        """Meter one event's object by its API: whether to keep it, whether it bears content."""
        if self.operation == MESSAGES:
            return True, self._anthropic(obj)
        if self.operation == RESPONSES:
            return True, self._responses(obj)
        if self.operation in MEDIA:
            return True, self._media(obj)
        if self.operation == GENERATE:
            return True, self._gemini(obj)
        return self._openai(obj)

    def _error(self, err: object) -> None:
        if isinstance(err, dict):
            self.error_type = str(err.get("type") or err.get("code") or "error")
            self.error_message = str(err.get("message") or "")[:500]
        else:
            self.error_type, self.error_message = "error", str(err)[:500]

    def _openai(self, obj: dict[str, Any]) -> tuple[bool, bool]:
        # The first chunk that names them: Azure's first chunk is a content-filter
        # annotation with "model": "" and no service tier.
        if not self.model:
            model = obj.get("model")
            if isinstance(model, str) and model:
                self.model = model
        if self.service_tier is None and isinstance(obj.get("service_tier"), str):
            self.service_tier = obj["service_tier"]
        if "error" in obj:
            self._error(obj["error"])
        choices = obj.get("choices")
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.usage, self.final = usage, True
            if self.strip_usage and not choices:
                return False, False
        chars, content = 0, False
        for choice in choices or ():
            if not isinstance(choice, dict):
                continue
            if self.operation == COMPLETION or "text" in choice:
                chars += _chars(choice.get("text"))
                continue
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            for key, value in delta.items():
                if key in _DELTA_KEYS and type(value) is str:
                    chars += len(value)
            for call in delta.get("tool_calls") or ():
                content = True
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict):
                    chars += _chars(fn.get("name")) + _chars(fn.get("arguments"))
            if delta.get("audio"):
                content = True
        self.chars += chars
        return True, content or chars > 0

    def _responses(self, obj: dict[str, Any]) -> bool:
        kind = obj.get("type")
        if not isinstance(kind, str):
            return False
        if kind.endswith(".delta"):
            self.chars += _chars(obj.get("delta"))
            return True
        response = obj.get("response")
        if isinstance(response, dict):
            if isinstance(response.get("model"), str):
                self.model = response["model"]
            if isinstance(response.get("service_tier"), str):
                self.service_tier = response["service_tier"]
            if isinstance(response.get("usage"), dict):
                self.usage, self.final = response["usage"], True
                self.web_search_calls = web_search_calls(response)
            if kind == "response.failed":
                self._error(response.get("error") or "response.failed")
        elif kind == "error":
            self._error(obj.get("error") or obj)
        return False

    def _media(self, obj: dict[str, Any]) -> bool:
        """Image, transcription and speech streams: typed events, usage in the last."""
        kind = obj.get("type")
        if not isinstance(kind, str):
            return False
        if isinstance(obj.get("usage"), dict):  # image_generation.completed, *.done
            self.usage, self.final = obj["usage"], True
        if kind == "error":
            self._error(obj.get("error") or obj)
            return False
        if kind == "transcript.text.delta":
            self.chars += _chars(obj.get("delta"))
        return kind.endswith((".delta", ".partial_image"))  # the first content

    def _anthropic(self, obj: dict[str, Any]) -> bool:
        kind = obj.get("type")
        if kind == "content_block_delta":
            delta = obj.get("delta")
            if isinstance(delta, dict):
                self.chars += (_chars(delta.get("text")) + _chars(delta.get("thinking"))
                                      + _chars(delta.get("partial_json")))
            return True
        if kind == "message_start":
            message = obj.get("message")
            if isinstance(message, dict):
                if isinstance(message.get("model"), str):
                    self.model = message["model"]
                if isinstance(message.get("usage"), dict):
                    self.usage = dict(message["usage"])
        elif kind == "message_delta":
            # message_delta carries cumulative counts: they replace, never add to, the start's.
            usage = obj.get("usage")
            if isinstance(usage, dict):
                merged = self.usage if self.usage is not None else {}
                merged.update((k, v) for k, v in usage.items() if v is not None)
                self.usage, self.final = merged, "output_tokens" in usage
        elif kind == "error":
            self._error(obj.get("error"))
        return False

    def _gemini(self, obj: dict[str, Any]) -> bool:
        """Gemini's own stream (alt=sse): each chunk a whole GenerateContentResponse, its
        usageMetadata cumulative: the last one seen replaces the others, never adds."""
        if isinstance(obj.get("modelVersion"), str) and obj["modelVersion"]:
            self.model = obj["modelVersion"]
        usage = obj.get("usageMetadata")
        if isinstance(usage, dict):
            # Thinking models report thoughtsTokenCount in every chunk; the answer's own
            # count comes with the last: till then, a cut stream's text is estimated.
            self.usage, self.final = usage, "candidatesTokenCount" in usage
        if "error" in obj:
            self._error(obj["error"])
        content = False
        for part in gemini_parts(obj):
            if part.get("thought") is not True:  # thoughts are thoughtsTokenCount's
                self.chars += _chars(part.get("text"))
            content = content or bool(part.get("text") or part.get("functionCall")
                                      or part.get("inlineData"))
        return content

    def _oversized(self, event: Oversized) -> None:
        """Read an event too large to hold from what it kept: its head and tail, its size."""
        found = event.summary()
        self.chars += event.size  # its size stands for its text
        kind, model, usage = found["type"], found["model"], found["usage"]
        if self.operation == RESPONSES:
            obj: dict[str, Any] = {"type": kind, "response": {"model": model, "usage": usage}} \
                if usage is not None else {"type": kind}
        elif self.operation == MESSAGES or self.operation in MEDIA:
            obj = {"type": kind, "usage": usage}
        elif self.operation == GENERATE:
            obj = {"modelVersion": model, "usageMetadata": usage}
        else:
            obj = {"model": model, "usage": usage, "choices": []}
        try:
            self._dispatch(obj)
        except Exception:  # a field of an unexpected type, as in _parse
            self.malformed += 1
        if self.operation == RESPONSES and usage is not None:
            self.web_search_calls = event.web_search_calls
