"""CrewAI's usage dicts (`LLMCallCompletedEvent.usage`) through the core normaliser.

Shapes copied from crewai 1.15's native providers: OpenAI (`_extract_openai_token_usage`,
inclusive: cached inside `prompt_tokens`, reasoning inside `completion_tokens`) and
Anthropic (`_extract_anthropic_token_usage`: CrewAI adds the cache reads and writes to
`input_tokens` before reporting them).
"""

from __future__ import annotations

import pytest

from agent_finops import TokenUsage, normalize_usage
from agent_finops.exceptions import ConfigurationError


def test_openai_native_provider_shape() -> None:
    usage = {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "cached_prompt_tokens": 1024,
        "reasoning_tokens": 64,
    }
    assert normalize_usage(usage) == TokenUsage(
        uncached_input_tokens=176, cache_read_tokens=1024, output_tokens=300, reasoning_tokens=64
    )


def test_anthropic_native_provider_shape_counts_cache_inside_input() -> None:
    # Anthropic said input 100, cache read 2000, cache write 500: CrewAI reports 2600.
    usage = {
        "input_tokens": 2600,
        "output_tokens": 80,
        "total_tokens": 2680,
        "cached_prompt_tokens": 2000,
        "cache_creation_tokens": 500,
    }
    assert normalize_usage(usage) == TokenUsage(
        uncached_input_tokens=100, cache_read_tokens=2000, cache_write_tokens=500, output_tokens=80
    )


def test_reasoning_only_shape() -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "reasoning_tokens": 3}
    assert normalize_usage(usage).reasoning_tokens == 3


def test_cache_larger_than_input_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="cached tokens exceed"):
        normalize_usage({"prompt_tokens": 10, "completion_tokens": 1, "cached_prompt_tokens": 11})


def test_raw_openai_details_still_win() -> None:
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 10,
        "prompt_tokens_details": {"cached_tokens": 40},
        "reasoning_tokens": 0,
    }
    assert normalize_usage(usage).cache_read_tokens == 40
