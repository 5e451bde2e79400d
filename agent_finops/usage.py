"""Token usage normaliser: every provider's usage shape into one explicit `TokenUsage`.

Two conventions exist and mixing them is the classic pricing bug:

* **Inclusive** (OpenAI, LangChain `usage_metadata`): cached tokens are counted *inside*
  `input_tokens` / `prompt_tokens`; reasoning tokens are *inside* output tokens.
* **Additive** (Anthropic's raw API): `input_tokens` is only the uncached part;
  `cache_read_input_tokens` and `cache_creation_input_tokens` come *on top*.

`TokenUsage` stores disjoint input parts (uncached, cache read, cache write) so no caller has
to remember which convention a number came from. Output is the billed output total, and
`reasoning_tokens` says how many of those output tokens were reasoning (reasoning is billed as
output by every provider we know of).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent_finops.exceptions import ConfigurationError

__all__ = [
    "TokenUsage",
    "from_anthropic",
    "from_crewai",
    "from_openai",
    "from_usage_metadata",
    "normalize_usage",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenUsage:
    """Token counts of one model call, with disjoint input parts."""

    uncached_input_tokens: int = 0
    """Input tokens billed at the full input price."""
    cache_read_tokens: int = 0
    """Input tokens served from the provider's prompt cache (cheaper)."""
    cache_write_tokens: int = 0
    """Input tokens written to the prompt cache (usually dearer than plain input)."""
    output_tokens: int = 0
    """All billed output tokens, reasoning included."""
    reasoning_tokens: int = 0
    """How many of `output_tokens` were reasoning/thinking tokens (already inside them)."""

    def __post_init__(self) -> None:
        for name in (
            "uncached_input_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "output_tokens",
            "reasoning_tokens",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigurationError(
                    "invalid token count",
                    source="usage",
                    field=name,
                    value=value,
                    expected="a non-negative int",
                )
        if self.reasoning_tokens > self.output_tokens:
            raise ConfigurationError(
                "reasoning tokens are part of output tokens and cannot exceed them",
                source="usage",
                field="reasoning_tokens",
                value=self.reasoning_tokens,
                expected=f"<= output_tokens ({self.output_tokens})",
            )

    @property
    def input_tokens(self) -> int:
        """All input tokens: uncached + cache read + cache write."""
        return self.uncached_input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def total_tokens(self) -> int:
        """All input plus all output tokens."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        """Sum two usages field by field."""
        return TokenUsage(
            uncached_input_tokens=self.uncached_input_tokens + other.uncached_input_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
        )

    def as_dict(self) -> dict[str, int]:
        """The five stored fields, for JSON and ledger rows."""
        return {
            "uncached_input_tokens": self.uncached_input_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "output_tokens": self.output_tokens,
            "reasoning_tokens": self.reasoning_tokens,
        }


def _int(mapping: Mapping[str, Any] | None, key: str) -> int:
    if not mapping:
        return 0
    value = mapping.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(
            "invalid token count in provider usage",
            source="usage",
            field=key,
            value=value,
            expected="an int",
        )
    return value


def _detail(mapping: Mapping[str, Any] | None, key: str) -> int:
    """`key` plus service-tier-prefixed variants (`priority_cache_read`, `flex_reasoning`).

    `ChatOpenAI` names the details after the response's `service_tier` when it is not the
    default; reading only the plain key would bill cached input at the full price.
    """
    if not mapping:
        return 0
    return sum(_int(mapping, k) for k in mapping if k == key or k.endswith(f"_{key}"))


def _sub(mapping: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = mapping.get(key)
    return value if isinstance(value, Mapping) else None


def _split_inclusive(total_input: int, cache_read: int, cache_write: int, field: str) -> int:
    uncached = total_input - cache_read - cache_write
    if uncached < 0:
        raise ConfigurationError(
            "cached tokens exceed total input tokens (inclusive convention)",
            source="usage",
            field=field,
            value=total_input,
            expected=f">= cache read + cache write ({cache_read + cache_write})",
        )
    return uncached


def from_usage_metadata(usage: Mapping[str, Any]) -> TokenUsage:
    """LangChain `AIMessage.usage_metadata` (inclusive convention)."""
    inp = _sub(usage, "input_token_details")
    out = _sub(usage, "output_token_details")
    if not inp and not out:  # the common case, kept cheap: it runs on every model call
        return TokenUsage(
            uncached_input_tokens=_int(usage, "input_tokens"),
            output_tokens=_int(usage, "output_tokens"),
        )
    cache_read = _detail(inp, "cache_read")
    cache_write = _detail(inp, "cache_creation")
    return TokenUsage(
        uncached_input_tokens=_split_inclusive(
            _int(usage, "input_tokens"), cache_read, cache_write, "input_tokens"
        ),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        output_tokens=_int(usage, "output_tokens"),
        reasoning_tokens=_detail(out, "reasoning"),
    )


def from_openai(usage: Mapping[str, Any]) -> TokenUsage:
    """Raw OpenAI usage: Chat Completions (`prompt_tokens`) or Responses (`input_tokens`)."""
    if "prompt_tokens" in usage or "completion_tokens" in usage:
        in_key, out_key = "prompt_tokens", "completion_tokens"
        in_details = _sub(usage, "prompt_tokens_details")
        out_details = _sub(usage, "completion_tokens_details")
    else:
        in_key, out_key = "input_tokens", "output_tokens"
        in_details = _sub(usage, "input_tokens_details")
        out_details = _sub(usage, "output_tokens_details")
    cache_read = _int(in_details, "cached_tokens")
    # OpenAI has no billed cache writes; some compatible providers report them here.
    cache_write = _int(in_details, "cache_write_tokens") or _int(
        in_details, "cache_creation_tokens"
    )
    return TokenUsage(
        uncached_input_tokens=_split_inclusive(
            _int(usage, in_key), cache_read, cache_write, in_key
        ),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        output_tokens=_int(usage, out_key),
        reasoning_tokens=_int(out_details, "reasoning_tokens"),
    )


def from_anthropic(usage: Mapping[str, Any]) -> TokenUsage:
    """Raw Anthropic usage (additive convention: cache counts are on top of input_tokens)."""
    cache_write = _int(usage, "cache_creation_input_tokens")
    creation = _sub(usage, "cache_creation")
    if not cache_write and creation:
        cache_write = sum(_int(creation, k) for k in creation)
    return TokenUsage(
        uncached_input_tokens=_int(usage, "input_tokens"),
        cache_read_tokens=_int(usage, "cache_read_input_tokens"),
        cache_write_tokens=cache_write,
        output_tokens=_int(usage, "output_tokens"),
        # Anthropic bills thinking as output and does not split it out in `usage`.
        reasoning_tokens=0,
    )


# -- CrewAI (agent_finops_crewai) -------------------------------------------------------
CREWAI_KEYS = frozenset({"cached_prompt_tokens", "cache_creation_tokens", "reasoning_tokens"})
"""Top-level keys only CrewAI's usage dicts have (`LLMCallCompletedEvent.usage`)."""


def from_crewai(usage: Mapping[str, Any]) -> TokenUsage:
    """CrewAI's usage dict (inclusive: cache reads and writes inside the input count).

    Its native providers report `prompt_tokens` / `completion_tokens` (OpenAI) or
    `input_tokens` / `output_tokens` (Anthropic, where CrewAI has already added the cache
    tokens to `input_tokens`), with `cached_prompt_tokens`, `cache_creation_tokens` and
    `reasoning_tokens` beside them.
    """
    in_key = "prompt_tokens" if "prompt_tokens" in usage else "input_tokens"
    out_key = "completion_tokens" if "completion_tokens" in usage else "output_tokens"
    cache_read = _int(usage, "cached_prompt_tokens")
    cache_write = _int(usage, "cache_creation_tokens")
    return TokenUsage(
        uncached_input_tokens=_split_inclusive(
            _int(usage, in_key), cache_read, cache_write, in_key
        ),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        output_tokens=_int(usage, out_key),
        reasoning_tokens=_int(usage, "reasoning_tokens"),
    )


# ----------------------------------------------------------------------------------------


def normalize_usage(usage: Any) -> TokenUsage:
    """Recognise the usage shape and normalise it.

    Accepts a `TokenUsage`, a LangChain `usage_metadata` dict, a raw OpenAI or Anthropic
    usage dict, CrewAI's usage dict, or an SDK object with `model_dump()`. Unrecognised
    shapes raise `ConfigurationError` rather than guessing (a guess here is a wrong bill).
    """
    if isinstance(usage, TokenUsage):
        return usage
    if not isinstance(usage, Mapping) and hasattr(usage, "model_dump"):
        usage = usage.model_dump()
    if not isinstance(usage, Mapping):
        raise ConfigurationError(
            "unrecognised usage object",
            source="usage",
            field="usage",
            value=type(usage).__name__,
            expected="a mapping or TokenUsage",
        )
    if (
        "cache_read_input_tokens" in usage
        or "cache_creation_input_tokens" in usage
        or "cache_creation" in usage
    ):
        return from_anthropic(usage)
    if "input_token_details" in usage or "output_token_details" in usage:
        return from_usage_metadata(usage)
    if not CREWAI_KEYS.isdisjoint(usage) and "prompt_tokens_details" not in usage:
        return from_crewai(usage)  # CrewAI's own shape (agent_finops_crewai)
    if (
        "prompt_tokens" in usage
        or "completion_tokens" in usage
        or "input_tokens_details" in usage
        or "output_tokens_details" in usage
    ):
        return from_openai(usage)
    if "input_tokens" in usage and "output_tokens" in usage:
        # Plain {"input_tokens", "output_tokens"[, "total_tokens"]}: no cache detail, both
        # conventions agree.
        return from_usage_metadata(usage)
    raise ConfigurationError(
        "unrecognised usage shape",
        source="usage",
        field="keys",
        value=sorted(usage),
        expected="LangChain usage_metadata, OpenAI or Anthropic usage keys",
    )
