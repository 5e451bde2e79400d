"""The most output tokens one request to a model can produce: a bundled, versioned table.

Used when a request does not say `max_tokens`: the worst case of such a call is the model's
own output ceiling, not a flat default. Values are the providers' documented maximum output
tokens per request (reasoning/thinking tokens included, since they are billed as output), as
the author knew them from OpenAI's, Anthropic's and Google's model pages, cross-checked
against the models.dev profiles shipped in langchain-openai 1.7 and langchain-anthropic 1.7.
Where a model has an opt-in larger limit (Claude 3.7 Sonnet's `output-128k` beta), the larger
one is listed: this table must never be below what a request can really get.

Bump `OUTPUT_LIMITS_VERSION` whenever a value changes. A model not listed here falls back to
the catalog's context window (see `PriceBook.max_output_tokens`).
"""

from __future__ import annotations

import fnmatch
import re
from functools import lru_cache

__all__ = ["OUTPUT_LIMITS", "OUTPUT_LIMITS_VERSION", "normalize_model_name", "output_limit"]

OUTPUT_LIMITS_VERSION = "2026-02"

OUTPUT_LIMITS: tuple[tuple[str, int], ...] = (
    # --- OpenAI (first match wins: specific patterns before general ones) ----------------
    ("gpt-4o-2024-05-13*", 4_096),
    ("gpt-4o-realtime*", 4_096),
    ("gpt-4o-mini-realtime*", 4_096),
    ("gpt-4o-mini*", 16_384),
    ("gpt-4o*", 16_384),
    ("chatgpt-4o*", 16_384),
    ("gpt-4.1*", 32_768),
    ("gpt-4.5*", 16_384),
    ("gpt-4-turbo*", 4_096),
    ("gpt-4-1106*", 4_096),
    ("gpt-4-0125*", 4_096),
    ("gpt-4-vision*", 4_096),
    ("gpt-4-32k*", 32_768),
    ("gpt-4", 8_192),
    ("gpt-4-0*", 8_192),
    ("gpt-3.5-turbo*", 4_096),
    ("gpt-5*-chat*", 16_384),
    ("gpt-5-pro*", 272_000),
    ("gpt-5.3-codex-spark*", 32_000),
    ("gpt-5*", 128_000),
    ("gpt-6*", 128_000),
    ("gpt-realtime*", 32_000),
    ("gpt-oss-*", 131_072),
    ("o1-mini*", 65_536),
    ("o1-preview*", 32_768),
    ("o1*", 100_000),
    ("o3*", 100_000),
    ("o4-mini*", 100_000),
    ("codex-mini*", 100_000),
    # --- Anthropic -------------------------------------------------------------------------
    ("claude-instant*", 4_096),
    ("claude-2*", 4_096),
    ("claude-3-haiku*", 4_096),
    ("claude-3-opus*", 4_096),
    ("claude-3-sonnet*", 4_096),
    ("claude-3-5-haiku*", 8_192),
    ("claude-3-5-sonnet*", 8_192),
    ("claude-3-7-sonnet*", 128_000),  # 64k, or 128k with the output-128k beta header
    ("claude-opus-4-0*", 32_000),
    ("claude-opus-4-1*", 32_000),
    ("claude-opus-4-2025*", 32_000),
    ("claude-opus-4", 32_000),
    ("claude-4-opus*", 32_000),
    ("claude-sonnet-4-0*", 64_000),
    ("claude-sonnet-4-2025*", 64_000),
    ("claude-sonnet-4", 64_000),
    ("claude-4-sonnet*", 64_000),
    ("claude-sonnet-4-5*", 64_000),
    ("claude-haiku-4-5*", 64_000),
    ("claude-opus-4-5*", 64_000),
    ("claude-sonnet-4-6*", 128_000),
    ("claude-opus-4-6*", 128_000),
    ("claude-opus-4-7*", 128_000),
    ("claude-opus-4-8*", 128_000),
    ("claude-opus-5*", 128_000),
    ("claude-sonnet-5*", 128_000),
    ("claude-haiku-5*", 128_000),
    ("claude-fable-5*", 128_000),
    # --- Google Gemini ---------------------------------------------------------------------
    ("gemini-1.5-*", 8_192),
    ("gemini-2.0-*", 8_192),
    ("gemini-2.5-*", 65_536),
    ("gemini-3-pro*", 65_536),
    ("gemini-3-flash*", 65_536),
    # --- DeepSeek --------------------------------------------------------------------------
    ("deepseek-chat", 8_192),
    ("deepseek-reasoner", 65_536),
)
"""(model-name glob, max output tokens), matched in order against the normalised name."""

_BEDROCK_PREFIX = re.compile(r"^(?:(?:us|eu|apac|jp|au|global|regional)\.)?(?:[a-z0-9-]+\.)?")
_BEDROCK_VERSION = re.compile(r"-v\d+(?::\d+)?$")


def normalize_model_name(model: str) -> str:
    """The bare model id of a provider-specific name.

    `openai/gpt-4o` -> `gpt-4o`; `us.anthropic.claude-sonnet-4-5-20250929-v1:0` (Bedrock)
    -> `claude-sonnet-4-5-20250929`; `claude-sonnet-4@20250514` (Vertex) ->
    `claude-sonnet-4-20250514`; `ft:gpt-4o-mini-2024-07-18:org::id` -> `gpt-4o-mini-2024-07-18`.
    """
    name = model.strip().lower()
    if name.startswith("ft:"):
        name = name[3:].split(":", 1)[0]
    name = name.rsplit("/", 1)[-1]
    if "." in name and ("anthropic." in name or name.count(".") >= 2 or ":" in name):
        stripped = _BEDROCK_PREFIX.sub("", name, count=1)
        if stripped.startswith(("claude", "gpt", "llama", "mistral", "deepseek")):
            name = stripped
    name = _BEDROCK_VERSION.sub("", name)
    return name.replace("@", "-")


@lru_cache(maxsize=1024)
def output_limit(model: str) -> int | None:
    """The documented output ceiling of `model`, or None when the table does not list it."""
    name = normalize_model_name(model)
    for pattern, limit in OUTPUT_LIMITS:
        if fnmatch.fnmatchcase(name, pattern):
            return limit
    return None
