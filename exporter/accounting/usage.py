"""Pure parsers: a provider's response body or SSE transcript -> Usage.

Nothing here does I/O. The proxy feeds the same bytes the client receives, so what is
counted is what was delivered. Token categories are disjoint: any sum is a true total.
"""

from __future__ import annotations

from typing import Any

from ..record import Usage
from .operations import (
    CONVERSE,
    GENERATE,
    IMAGES,
    INVOKE,
    MESSAGES,
    RESPONSES,
    SPEECH,
    TRANSCRIPTION,
)

TOKEN_TYPES = ("text", "cache_read", "cache_write", "audio", "image", "reasoning")


# Above this a count is no count (a billion times the largest context window); zero, so a
# malformed answer can neither overflow the history's integers nor inflate a bill.
MAX_COUNT = 1 << 53


def _int(mapping: object, key: str) -> int:
    """Read a token count; absent, null or malformed counts are zero, never an error."""
    if not isinstance(mapping, dict):
        return 0
    value = mapping.get(key)
    return value if type(value) is int and 0 < value < MAX_COUNT else 0


def openai_usage(u: dict[str, Any]) -> Usage:
    """Split Chat Completions, Completions or Embeddings usage.

    prompt_tokens include cached, cache-written (cache_write_tokens: OpenAI's newer
    models bill writes apart), audio and image tokens; completion_tokens include
    reasoning and audio tokens. DeepSeek-style servers report prompt_cache_hit_tokens
    instead of prompt_tokens_details.cached_tokens.
    """
    pd = u.get("prompt_tokens_details")
    cd = u.get("completion_tokens_details")
    prompt, completion = _int(u, "prompt_tokens"), _int(u, "completion_tokens")
    cached = _int(pd, "cached_tokens") or _int(u, "prompt_cache_hit_tokens")
    written = _int(pd, "cache_write_tokens")
    in_audio, in_image = _int(pd, "audio_tokens"), _int(pd, "image_tokens")
    reasoning, out_audio, out_image = (
        _int(cd, "reasoning_tokens"), _int(cd, "audio_tokens"), _int(cd, "image_tokens"))
    if not reasoning:
        # Gemini's OpenAI-compatible endpoint leaves its thinking out of completion_tokens
        # and reports no detail; total_tokens holds it, and Google bills it as output.
        hidden = _int(u, "total_tokens") - prompt - completion
        if hidden > 0:
            reasoning, completion = hidden, completion + hidden
    return Usage(
        input_text=max(prompt - cached - written - in_audio - in_image, 0),
        input_cache_read=cached,
        input_cache_write_5m=written,
        input_audio=in_audio,
        input_image=in_image,
        output_text=max(completion - reasoning - out_audio - out_image, 0),
        output_reasoning=reasoning,
        output_audio=out_audio,
        output_image=out_image,
    )


def responses_usage(u: dict[str, Any]) -> Usage:
    """Split Responses API usage: input_tokens include cached and cache-written tokens,
    output_tokens reasoning."""
    idt, odt = u.get("input_tokens_details"), u.get("output_tokens_details")
    inp, out = _int(u, "input_tokens"), _int(u, "output_tokens")
    cached, in_audio, in_image = (
        _int(idt, "cached_tokens"), _int(idt, "audio_tokens"), _int(idt, "image_tokens"))
    written = _int(idt, "cache_write_tokens")
    reasoning = _int(odt, "reasoning_tokens")
    return Usage(
        input_text=max(inp - cached - written - in_audio - in_image, 0),
        input_cache_read=cached,
        input_cache_write_5m=written,
        input_audio=in_audio,
        input_image=in_image,
        output_text=max(out - reasoning, 0),
        output_reasoning=reasoning,
    )


def anthropic_usage(u: dict[str, Any]) -> Usage:
    """Split Anthropic Messages usage: input_tokens exclude cache reads and writes.

    Cache writes are split into 5-minute and 1-hour writes when cache_creation says so
    (they are priced differently); otherwise all writes are 5-minute, the default TTL.
    Anthropic counts extended thinking inside output_tokens and reports no split, so it
    is output text here, which is also how it is billed.
    """
    writes = _int(u, "cache_creation_input_tokens")
    cc = u.get("cache_creation")
    w1h = _int(cc, "ephemeral_1h_input_tokens")
    w5m = _int(cc, "ephemeral_5m_input_tokens") if isinstance(cc, dict) else writes
    if w5m + w1h != writes and writes:
        w5m = max(writes - w1h, 0)
    return Usage(
        input_text=_int(u, "input_tokens"),
        input_cache_read=_int(u, "cache_read_input_tokens"),
        input_cache_write_5m=w5m,
        input_cache_write_1h=w1h,
        output_text=_int(u, "output_tokens"),
        web_search_calls=_int(u.get("server_tool_use"), "web_search_requests"),
    )


def image_usage(u: dict[str, Any]) -> Usage:
    """Split GPT Image usage: input text and image tokens; every output token is image."""
    idt = u.get("input_tokens_details")
    image = _int(idt, "image_tokens")
    text = _int(idt, "text_tokens") if isinstance(idt, dict) else \
        max(_int(u, "input_tokens") - image, 0)
    return Usage(input_text=text, input_image=image, output_image=_int(u, "output_tokens"))


def transcription_usage(u: dict[str, Any]) -> Usage:
    """Transcription usage: tokens (gpt-4o-transcribe: text and audio in, text out) or the
    audio's duration in seconds (whisper-1, billed per minute)."""
    if u.get("type") == "duration":
        seconds = u.get("seconds")
        # The test inline, not in a variable: only so does it narrow `seconds` for mypy.
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) \
                and 0 < seconds < 1e7:
            return Usage(audio_seconds=float(seconds))
        return Usage(audio_seconds=0.0)
    idt = u.get("input_token_details") or u.get("input_tokens_details")
    audio = _int(idt, "audio_tokens")
    text = _int(idt, "text_tokens") if isinstance(idt, dict) else \
        max(_int(u, "input_tokens") - audio, 0)
    return Usage(input_text=text, input_audio=audio, output_text=_int(u, "output_tokens"))


def speech_usage(u: dict[str, Any]) -> Usage:
    """Speech usage (gpt-4o-mini-tts, streamed as SSE): text in, audio out."""
    return Usage(input_text=_int(u, "input_tokens"), output_audio=_int(u, "output_tokens"))


def _modalities(details: object) -> dict[str, int]:
    """Gemini's token counts by modality: [{"modality": "AUDIO", "tokenCount": 120}, ...]."""
    counts: dict[str, int] = {}
    for item in details if isinstance(details, list) else ():
        if isinstance(item, dict) and isinstance(item.get("modality"), str):
            modality = item["modality"]
            counts[modality] = counts.get(modality, 0) + _int(item, "tokenCount")
    return counts


def gemini_usage(u: dict[str, Any]) -> Usage:
    """Split Gemini's usageMetadata (its own API, Google AI and Vertex AI).

    promptTokenCount includes cachedContentTokenCount; toolUsePromptTokenCount (what tools
    such as search put before the model) is input apart from both; candidatesTokenCount is
    the answer, thoughtsTokenCount the thinking apart from it (billed as output). Each has
    details by modality: audio is priced apart; Google prices images, video and documents
    as it prices text, so video and documents count as image tokens (a category priced so).
    """
    prompt, cached = _int(u, "promptTokenCount"), _int(u, "cachedContentTokenCount")
    cached = min(cached, prompt)
    sent, kept = _modalities(u.get("promptTokensDetails")), _modalities(u.get("cacheTokensDetails"))
    audio = max(sent.get("AUDIO", 0) - kept.get("AUDIO", 0), 0)
    image = max(sum(sent.get(m, 0) - kept.get(m, 0) for m in ("IMAGE", "VIDEO", "DOCUMENT")),
                0)
    audio, image = min(audio, prompt - cached), min(image, max(prompt - cached - audio, 0))
    answer = _int(u, "candidatesTokenCount")
    made = _modalities(u.get("candidatesTokensDetails"))
    out_audio = min(made.get("AUDIO", 0), answer)
    out_image = min(made.get("IMAGE", 0), answer - out_audio)
    return Usage(
        input_text=prompt - cached - audio - image + _int(u, "toolUsePromptTokenCount"),
        input_cache_read=cached,
        input_audio=audio,
        input_image=image,
        output_text=answer - out_audio - out_image,
        output_reasoning=_int(u, "thoughtsTokenCount"),
        output_audio=out_audio,
        output_image=out_image,
    )


def bedrock_usage(u: dict[str, Any]) -> Usage:
    """Split Bedrock's TokenUsage: inputTokens exclude the cache reads and writes, reported
    apart (a write at the default 5-minute TTL)."""
    return Usage(input_text=_int(u, "inputTokens"),
                 input_cache_read=_int(u, "cacheReadInputTokens"),
                 input_cache_write_5m=_int(u, "cacheWriteInputTokens"),
                 output_text=_int(u, "outputTokens"))


def usage_from(operation: str, u: object) -> Usage | None:
    """Parse a usage object with the semantics of the operation's API."""
    if not isinstance(u, dict):
        return None
    if operation == GENERATE or "promptTokenCount" in u:  # Gemini's, whatever the path
        return gemini_usage(u)
    if "inputTokens" in u:  # Bedrock's Converse, and InvokeModel's metrics named so
        return bedrock_usage(u)
    if operation == MESSAGES or operation in (CONVERSE, INVOKE) and "input_tokens" in u:
        return anthropic_usage(u)  # on Bedrock, Claude's own answer
    if operation == RESPONSES:
        return responses_usage(u)
    if operation == IMAGES:
        return image_usage(u)
    if operation == TRANSCRIPTION:
        return transcription_usage(u)
    if operation == SPEECH:
        return speech_usage(u)
    return openai_usage(u)


def web_search_calls(response: object) -> int:
    """The web searches a Responses API response made: its web_search_call output items."""
    output = response.get("output") if isinstance(response, dict) else None
    if not isinstance(output, list):
        return 0
    return sum(1 for item in output
               if isinstance(item, dict) and item.get("type") == "web_search_call")
