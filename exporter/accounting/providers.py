"""Which price table prices a request: the provider the model really comes from.

The `provider` label stays as configured; prices are looked up by exact table ids, never by
a substring of the label (genai-prices' own matching turns any label containing "openai"
into OpenAI). A service's pricing mode is fixed at start:

- a table id, or an alias of one (`gemini` is `google`): that provider's table, which
  includes the models it resells (Azure's OpenAI models, Vertex's Claude);
- `auto`, for the label the gateway guesses (`openai-compatible`, from `serve --upstream`
  with an unknown host): the table of the provider whose models the name matches
  (`claude-*` is Anthropic's), else OpenAI's for names no provider claims (its embedding
  models are found only there);
- `none`, for a self-hosted server (`vllm`, `ollama`, ...) and for a label nobody knows: no
  cloud price, ever, unless the config's `pricing:` gives one. `check-config` warns about
  an unknown label.
"""

from __future__ import annotations

from dataclasses import dataclass

AUTO, NONE = "auto", "none"
GUESSED = "openai-compatible"  # what `serve --upstream URL` labels an unknown host
SELF_HOSTED_GUESS = "self-hosted"  # ... and a host on this machine or a private network
# Other names users give providers, and the table id each means.
ALIASES = {
    "gemini": "google", "vertex": "google", "vertex-ai": "google", "vertex_ai": "google",
    "google-vertex": "google", "googleai": "google", "google-ai": "google",
    "xai": "x-ai", "grok": "x-ai", "bedrock": "aws", "amazon": "aws", "aws-bedrock": "aws",
    "azure-openai": "azure", "azure_openai": "azure", "azureopenai": "azure",
    "together-ai": "together", "together_ai": "together", "togetherai": "together",
    "moonshot": "moonshotai", "kimi": "moonshotai", "zhipu": "zhipuai", "glm": "zhipuai",
    "mistralai": "mistral", "fireworks-ai": "fireworks", "fireworks_ai": "fireworks",
    "claude": "anthropic", "open-router": "openrouter", "voyage": "voyageai",
}
# Servers a team runs itself: their models cost GPU time, not a cloud price per token.
SELF_HOSTED = frozenset((
    "vllm", "ollama", "tgi", "text-generation-inference", "sglang", "llama.cpp", "llamacpp",
    "llama-cpp", "lmstudio", "lm-studio", "localai", "local", "self-hosted", "selfhosted",
    "triton", "tensorrt-llm", "trt-llm", "lmdeploy", "openllm", "xinference", "tabbyapi",
    "aphrodite", "exllama", "mlx", "koboldcpp", "llamafile"))
# Providers whose table answers "provider/model" names (LiteLLM's and OpenRouter's).
PREFIXED = frozenset(("litellm",))
# Where names no provider claims are looked up in auto mode.
UNCLAIMED = "openai"


@dataclass(frozen=True)
class Mode:
    """How a service's requests are priced, and why (for `prices` and the logs)."""

    table: str  # a table provider id, AUTO or NONE
    reason: str
    known: bool = True  # False: a label nobody knows (check-config warns)


def pricing_mode(label: str, explicit: str | None, table_ids: set[str]) -> Mode:
    """Decide how a service with provider `label` is priced; `explicit` is the config's
    `pricing_provider`, when set."""
    if explicit:
        explicit = explicit.lower()
        if explicit in (AUTO, NONE):
            return Mode(explicit, f"pricing_provider: {explicit}")
        table = ALIASES.get(explicit, explicit)
        return Mode(table, f"pricing_provider: {explicit}")
    name = label.lower()
    if name == GUESSED:
        return Mode(AUTO, f"provider {label!r} is a guess: priced by the model's own name")
    if name in SELF_HOSTED:
        return Mode(NONE, f"provider {label!r} is self-hosted: no cloud price")
    if name in table_ids or name in PREFIXED:
        return Mode(name, f"provider {label!r}")
    if name in ALIASES:
        return Mode(ALIASES[name], f"provider {label!r} is {ALIASES[name]!r} in the table")
    return Mode(NONE, f"provider {label!r} is not in the price table: no cloud price (set "
                      "pricing_provider: auto, or a table id)", known=False)


def unknown_provider(label: str, explicit: str | None, table_ids: set[str]) -> str | None:
    """A warning for check-config when a service's prices would be nobody's, else None."""
    mode = pricing_mode(label, explicit, table_ids)
    if explicit and mode.table not in (AUTO, NONE) and mode.table not in table_ids \
            and mode.table not in PREFIXED:
        return f"pricing_provider {explicit!r} is not in the price table " \
               f"({', '.join(sorted(table_ids)[:12])}, ...)"
    if not mode.known:
        return (f"provider {label!r} is neither in the price table nor a known self-hosted "
                "server: its requests will be unpriced. A typo? Else set pricing_provider "
                "(auto, none or a table id such as openai)")
    return None
