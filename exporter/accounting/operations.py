"""Which API a request calls, from its path: the `operation` label, and what is metered.

Paths are matched on their end, after any service prefix, so `/openai/v1/chat/completions`,
`/v1/chat/completions` and Azure's `/openai/deployments/{d}/chat/completions` are all chat.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

CHAT, COMPLETION, RESPONSES, EMBEDDINGS, MESSAGES = (
    "chat", "completion", "responses", "embeddings", "messages")
IMAGES, TRANSCRIPTION, SPEECH, OTHER = "images", "transcription", "speech", "other"
GENERATE = "generate_content"  # Gemini's own API: generateContent and its stream
CONVERSE, INVOKE = "converse", "invoke"  # Bedrock's: Converse, InvokeModel, and their streams
OPERATIONS = (CHAT, COMPLETION, RESPONSES, EMBEDDINGS, MESSAGES, IMAGES, TRANSCRIPTION,
              SPEECH, GENERATE, CONVERSE, INVOKE, OTHER)
# Operations whose model is the path's alone: a Bedrock model id prices the request (its
# region's price, a cross-region profile's), and the body's name (Claude's own) would not.
PATH_NAMED = frozenset((CONVERSE, INVOKE))
_SUFFIXES = (
    ("/chat/completions", CHAT),
    ("/completions", COMPLETION),
    ("/responses", RESPONSES),
    ("/embeddings", EMBEDDINGS),
    ("/messages", MESSAGES),
    ("/images/generations", IMAGES),
    ("/images/edits", IMAGES),
    ("/images/variations", IMAGES),
    ("/audio/transcriptions", TRANSCRIPTION),
    ("/audio/translations", TRANSCRIPTION),
    ("/audio/speech", SPEECH),
)
# OpenAI-style streams only carry usage when the request asks for it.
INCLUDE_USAGE_OPERATIONS = frozenset((CHAT, COMPLETION))


# Gemini's own API names the model and the method in the path, on Google AI
# (/v1beta/models/gemini-2.5-flash:generateContent) and on Vertex AI
# (/v1/projects/{p}/locations/{l}/publishers/google/models/{model}:streamGenerateContent).
_GEMINI = re.compile(r"/models/([^/:]+):([A-Za-z]+)$")
_GEMINI_METHODS = {"generateContent": GENERATE, "streamGenerateContent": GENERATE,
                   "embedContent": EMBEDDINGS, "batchEmbedContents": EMBEDDINGS}


def gemini_call(path: str) -> tuple[str, str] | None:
    """For a path of Gemini's own API: its model and method (countTokens is free: no
    operation of its own), else None."""
    if ":" not in path:
        return None
    found = _GEMINI.search(path.rstrip("/"))
    return (found.group(1), found.group(2)) if found else None


# Bedrock's runtime: /model/{modelId}/converse, /converse-stream, /invoke and
# /invoke-with-response-stream; the model id percent-encoded (an ARN holds slashes).
_BEDROCK = re.compile(r"/model/([^/?]+)/(converse|converse-stream|invoke|"
                      r"invoke-with-response-stream)(?:\?|$)")
_BEDROCK_METHODS = {"converse": CONVERSE, "converse-stream": CONVERSE, "invoke": INVOKE,
                    "invoke-with-response-stream": INVOKE}


def bedrock_call(raw_path: str) -> tuple[str, str] | None:
    """For a path of Bedrock's runtime (as sent, percent-encoded): its model id and method."""
    if "/model/" not in raw_path:
        return None
    found = _BEDROCK.search(raw_path)
    return (unquote(found.group(1)), found.group(2)) if found else None


def operation_for(path: str, raw_path: str = "") -> str:
    """Name the operation a request path performs (`raw_path`: as sent, for Bedrock's
    model ids, whose slashes are encoded)."""
    path = path.rstrip("/")
    if ":" in path and (gemini := gemini_call(path)) is not None:
        return _GEMINI_METHODS.get(gemini[1], OTHER)
    if "/model/" in path and (bedrock := bedrock_call(raw_path or path)) is not None:
        return _BEDROCK_METHODS[bedrock[1]]
    if path.endswith("/messages/count_tokens") or "/threads/" in path:
        return OTHER  # token counting is free; Assistants' thread messages are no Messages API
    for suffix, operation in _SUFFIXES:
        if path.endswith(suffix):
            return operation
    return OTHER


# Azure OpenAI: /openai/deployments/{deployment}/chat/completions?api-version=2024-10-21.
# Its api-versions accept stream_options from 2024-08-01-preview (GA in 2024-10-21); older
# ones answer 400 to it.
_AZURE = re.compile(r"/openai/deployments/([^/?]+)/")
_API_VERSION = re.compile(r"[?&]api-version=(\d{4}-\d{2}-\d{2})")
AZURE_STREAM_OPTIONS_FROM = "2024-08-01"


def azure_deployment(raw_path: str) -> tuple[str, bool] | None:
    """For an Azure deployment path: its deployment name, and whether its api-version
    accepts stream_options (a path with no api-version, or a newer one, does)."""
    found = _AZURE.search(raw_path)
    if found is None:
        return None
    version = _API_VERSION.search(raw_path)
    return found.group(1), version is None or version.group(1) >= AZURE_STREAM_OPTIONS_FROM


# A multipart/form-data field (image edits and transcriptions send their model so):
# its part's headers, a blank line, the value.
_FIELD = rb'name="%s"[^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n([^\r\n]{1,256})\r\n'


def form_field(data: bytes, name: str) -> str | None:
    """A text field of a multipart/form-data body, or None."""
    found = re.search(_FIELD % re.escape(name.encode()), data)
    return found.group(1).decode("utf-8", "replace") if found else None
