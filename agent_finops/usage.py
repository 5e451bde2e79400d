"""Token usage normaliser: every provider's usage shape into one explicit `TokenUsage`.

Two conventions exist and mixing them is the classic pricing bug:

* **Inclusive** (OpenAI, LangChain `usage_metadata`): cached tokens are counted *inside*
  `input_tokens` / `prompt_tokens`; reasoning tokens are *inside* output tokens.
* **Additive** (Anthropic's raw API): `input_tokens` is only the uncached part;
  `cache_read_input_tokens` and `cache_creation_input_tokens` come *on top*.

`TokenUsage` stores disjoint input parts (uncached, cache read, cache write) so no caller has
to remember which convention a number came from. Output is the billed output total, and
`reasoning_tokens` says how many of those output tokens were reasoning (reasoning is billed as
output by every provider we know of). Cache writes are split by lifetime where the provider
says so: `cache_write_1h_tokens` is the part of `cache_write_tokens` written with Anthropic's
1-hour TTL (dearer than the default 5-minute writes).

Bad input never escapes as anything but `ConfigurationError` (naming the field and value):
a count must be a non-negative integer no larger than `MAX_TOKEN_COUNT` (an integral float
such as `12.0` is read as `12`; booleans, fractions, strings, NaN are refused), a detail
object must be a mapping (or null), and keys that are not strings are ignored (no provider
sends them, and none of them can be a count we read).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from itertools import islice
from typing import Any

from agent_finops.exceptions import ConfigurationError

__all__ = [
    "MAX_TOKEN_COUNT",
    "TokenUsage",
    "from_anthropic",
    "from_crewai",
    "from_openai",
    "from_usage_metadata",
    "normalize_usage",
]

MAX_TOKEN_COUNT = 10**12
"""The largest token count one call may report in any field (a trillion). Real calls are
below 10**7; anything larger is a corrupt report, refused rather than billed, and the bound
keeps every priced cost exact (see `agent_finops.pricing`)."""

_FIELDS = (
    "uncached_input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
)
_EPHEMERAL_5M = "ephemeral_5m_input_tokens"
_EPHEMERAL_1H = "ephemeral_1h_input_tokens"


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenUsage:
    """Token counts of one model call, with disjoint input parts."""

    uncached_input_tokens: int = 0
    """Input tokens billed at the full input price."""
    cache_read_tokens: int = 0
    """Input tokens served from the provider's prompt cache (cheaper)."""
    cache_write_tokens: int = 0
    """All input tokens written to the prompt cache (usually dearer than plain input),
    whatever their cache lifetime."""
    cache_write_1h_tokens: int = 0
    """How many of `cache_write_tokens` were written with a 1-hour lifetime (Anthropic's
    `ephemeral_1h_input_tokens`, billed at their own, higher rate). The rest are 5-minute
    (default) writes."""
    output_tokens: int = 0
    """All billed output tokens, reasoning included."""
    reasoning_tokens: int = 0
    """How many of `output_tokens` were reasoning/thinking tokens (already inside them)."""

    def __post_init__(self) -> None:
        if (
            type(self.uncached_input_tokens) is int
            and type(self.cache_read_tokens) is int
            and type(self.cache_write_tokens) is int
            and type(self.cache_write_1h_tokens) is int
            and type(self.output_tokens) is int
            and type(self.reasoning_tokens) is int
            and 0 <= self.uncached_input_tokens <= MAX_TOKEN_COUNT
            and 0 <= self.cache_read_tokens <= MAX_TOKEN_COUNT
            and 0 <= self.cache_write_1h_tokens <= self.cache_write_tokens <= MAX_TOKEN_COUNT
            and 0 <= self.reasoning_tokens <= self.output_tokens <= MAX_TOKEN_COUNT
        ):
            return  # the usual case, checked in one expression: plain ints, parts in wholes
        for name in _FIELDS:
            value = getattr(self, name)
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or value < 0
                or value > MAX_TOKEN_COUNT
            ):
                raise ConfigurationError(
                    "invalid token count",
                    source="usage",
                    field=name,
                    value=value,
                    expected=f"a non-negative int <= {MAX_TOKEN_COUNT}",
                )
        _part_of(self.reasoning_tokens, "reasoning_tokens", self.output_tokens, "output_tokens")
        _part_of(
            self.cache_write_1h_tokens,
            "cache_write_1h_tokens",
            self.cache_write_tokens,
            "cache_write_tokens",
        )

    @property
    def input_tokens(self) -> int:
        """All input tokens: uncached + cache read + cache write."""
        return self.uncached_input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def cache_write_5m_tokens(self) -> int:
        """Cache writes with the default (5-minute) lifetime: all writes but the 1-hour ones."""
        return self.cache_write_tokens - self.cache_write_1h_tokens

    @property
    def total_tokens(self) -> int:
        """All input plus all output tokens."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        """Sum two usages field by field (each field stays bounded by `MAX_TOKEN_COUNT`)."""
        return TokenUsage(**{name: getattr(self, name) + getattr(other, name) for name in _FIELDS})

    def as_dict(self) -> dict[str, int]:
        """The stored fields, for JSON and ledger rows."""
        return {name: getattr(self, name) for name in _FIELDS}


def _part_of(part: int, part_name: str, whole: int, whole_name: str) -> None:
    if part > whole:
        raise ConfigurationError(
            f"{part_name} are part of {whole_name} and cannot exceed them",
            source="usage",
            field=part_name,
            value=part,
            expected=f"<= {whole_name} ({whole})",
        )


def _count(value: Any, key: str) -> int:
    """One reported count as an int, or `ConfigurationError` naming `key` and the value."""
    if value is None:
        return 0
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | Decimal)
        or (isinstance(value, Decimal) and not value.is_finite())
    ):
        raise ConfigurationError(
            "invalid token count in provider usage",
            source="usage",
            field=key,
            value=value,
            expected="an int",
        )
    # Compared before any conversion, so a huge Decimal never becomes a huge int.
    if not (0 <= value <= MAX_TOKEN_COUNT) or value != int(value):
        raise ConfigurationError(
            "token count out of range or not a whole number in provider usage",
            source="usage",
            field=key,
            value=value,
            expected=f"a whole number, 0 <= count <= {MAX_TOKEN_COUNT}",
        )
    return int(value)


def _int(mapping: Mapping[str, Any] | None, key: str) -> int:
    if not mapping:
        return 0
    return _count(mapping.get(key), key)


def _detail(mapping: Mapping[str, Any] | None, key: str) -> int:
    """`key` plus service-tier-prefixed variants (`priority_cache_read`, `flex_reasoning`).

    `ChatOpenAI` names the details after the response's `service_tier` when it is not the
    default; reading only the plain key would bill cached input at the full price.
    """
    if not mapping:
        return 0
    suffix = f"_{key}"
    return sum(
        _count(mapping[k], k)
        for k in mapping
        if isinstance(k, str) and (k == key or k.endswith(suffix))
    )


def _sub(mapping: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = mapping.get(key)
    if value is None or isinstance(value, Mapping):
        return value
    if hasattr(value, "model_dump"):  # an SDK detail object inside a plain dict
        dumped = value.model_dump()
        if isinstance(dumped, Mapping):
            return dumped
    raise ConfigurationError(
        "invalid usage detail in provider usage",
        source="usage",
        field=key,
        value=type(value).__name__,
        expected="a mapping or null",
    )


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
    """LangChain `AIMessage.usage_metadata` (inclusive convention).

    Cache writes: `cache_creation`, or langchain-anthropic's lifetime breakdown
    `ephemeral_5m_input_tokens` / `ephemeral_1h_input_tokens` (where it then reports
    `cache_creation: 0` so that nothing is counted twice). When both a total and a
    breakdown are given, the larger is the total of writes.
    """
    inp = _sub(usage, "input_token_details")
    out = _sub(usage, "output_token_details")
    if not inp and not out:  # the common case, kept cheap: it runs on every model call
        return TokenUsage(
            uncached_input_tokens=_int(usage, "input_tokens"),
            output_tokens=_int(usage, "output_tokens"),
        )
    cache_read = _detail(inp, "cache_read")
    write_1h = _detail(inp, _EPHEMERAL_1H)
    cache_write = max(_detail(inp, "cache_creation"), _detail(inp, _EPHEMERAL_5M) + write_1h)
    return TokenUsage(
        uncached_input_tokens=_split_inclusive(
            _int(usage, "input_tokens"), cache_read, cache_write, "input_tokens"
        ),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=write_1h,
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
    """Raw Anthropic usage (additive convention: cache counts are on top of input_tokens).

    `cache_creation_input_tokens` is the total of cache writes; the `cache_creation` object
    splits it by lifetime (`ephemeral_5m_input_tokens`, `ephemeral_1h_input_tokens`). When
    only one of them is present it gives the total; when both are, the larger does.
    """
    creation = _sub(usage, "cache_creation")
    breakdown = _detail(creation, _EPHEMERAL_5M) + _detail(creation, _EPHEMERAL_1H)
    return TokenUsage(
        uncached_input_tokens=_int(usage, "input_tokens"),
        cache_read_tokens=_int(usage, "cache_read_input_tokens"),
        cache_write_tokens=max(_int(usage, "cache_creation_input_tokens"), breakdown),
        cache_write_1h_tokens=_detail(creation, _EPHEMERAL_1H),
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
    shapes and bad values raise `ConfigurationError` rather than guessing (a guess here is a
    wrong bill); no other exception type escapes.
    """
    if isinstance(usage, TokenUsage):
        return usage
    if type(usage) is dict:  # LangChain's usage_metadata, on every model call: one pass
        fast = _plain_usage_metadata(usage)
        if fast is not None:
            return fast
    try:
        return _normalize(usage)
    except ConfigurationError:
        raise
    except Exception as exc:
        # A third-party mapping or SDK object that misbehaves (a `get`, an iteration or a
        # `model_dump` that raises, any exception type): refused with the shape named,
        # never a stray exception in the caller.
        raise ConfigurationError(
            f"malformed usage object ({type(exc).__name__}: {str(exc)[:200]})",
            source="usage",
            field="usage",
            value=type(usage).__name__,
            expected="LangChain usage_metadata, OpenAI or Anthropic usage",
        ) from exc


_METADATA_KEYS = frozenset(
    {"input_tokens", "output_tokens", "total_tokens", "input_token_details", "output_token_details"}
)
_INPUT_DETAIL_KEYS = frozenset(
    {"audio", "cache_read", "cache_creation", _EPHEMERAL_5M, _EPHEMERAL_1H}
)
_OUTPUT_DETAIL_KEYS = frozenset({"audio", "reasoning"})


def _plain_counts(mapping: Any, known: frozenset[str]) -> bool:
    """`mapping` is a dict of `known` keys holding plain in-range ints."""
    if type(mapping) is not dict or not known.issuperset(mapping):
        return False
    for value in mapping.values():
        if type(value) is not int or not 0 <= value <= MAX_TOKEN_COUNT:
            return False
    return True


def _plain_usage_metadata(usage: dict[Any, Any]) -> TokenUsage | None:
    """`from_usage_metadata(usage)` in one pass, for the plain shape LangChain reports.

    Input and output counts, optional detail dicts of the keys LangChain defines, every
    count a plain in-range int, the parts consistent. None for anything else (other keys,
    another type, a value to refuse): `_normalize` then reads it, and names any error.
    """
    if not _METADATA_KEYS.issuperset(usage) or "input_tokens" not in usage:
        return None
    inp = usage.get("input_token_details")
    out = usage.get("output_token_details")
    total_input, output = usage["input_tokens"], usage.get("output_tokens")
    if (
        type(total_input) is not int
        or type(output) is not int
        or not 0 <= total_input <= MAX_TOKEN_COUNT
        or not 0 <= output <= MAX_TOKEN_COUNT
    ):
        return None
    cache_read = cache_write = write_1h = reasoning = 0
    if inp:
        if not _plain_counts(inp, _INPUT_DETAIL_KEYS):
            return None
        cache_read = inp.get("cache_read", 0)
        write_1h = inp.get(_EPHEMERAL_1H, 0)
        cache_write = max(inp.get("cache_creation", 0), inp.get(_EPHEMERAL_5M, 0) + write_1h)
    elif inp is not None and type(inp) is not dict:
        return None
    if out:
        if not _plain_counts(out, _OUTPUT_DETAIL_KEYS):
            return None
        reasoning = out.get("reasoning", 0)
    elif out is not None and type(out) is not dict:
        return None
    uncached = total_input - cache_read - cache_write
    if uncached < 0 or reasoning > output or cache_write > MAX_TOKEN_COUNT:
        return None  # refused by the general path, with the field named
    return TokenUsage(
        uncached_input_tokens=uncached,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=write_1h,
        output_tokens=output,
        reasoning_tokens=reasoning,
    )


def _normalize(usage: Any) -> TokenUsage:
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
    keys = sorted(k[:40] if isinstance(k, str) else repr(k)[:40] for k in islice(usage, 20))
    raise ConfigurationError(
        "unrecognised usage shape",
        source="usage",
        field="keys",
        value=keys,
        expected="LangChain usage_metadata, OpenAI or Anthropic usage keys",
    )
