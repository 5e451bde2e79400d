"""The usage normaliser: both cache conventions, reasoning, and bad input."""

from __future__ import annotations

import pytest

from agent_finops import ConfigurationError, TokenUsage, normalize_usage
from agent_finops.usage import from_anthropic, from_openai, from_usage_metadata


def test_langchain_usage_metadata_is_inclusive() -> None:
    u = normalize_usage(
        {
            "input_tokens": 1000,
            "output_tokens": 300,
            "total_tokens": 1300,
            "input_token_details": {"cache_read": 400, "cache_creation": 100},
            "output_token_details": {"reasoning": 120},
        }
    )
    assert u == TokenUsage(
        uncached_input_tokens=500,
        cache_read_tokens=400,
        cache_write_tokens=100,
        output_tokens=300,
        reasoning_tokens=120,
    )
    assert u.input_tokens == 1000
    assert u.total_tokens == 1300


def test_openai_chat_completions_usage() -> None:
    raw = {
        "prompt_tokens": 2000,
        "completion_tokens": 500,
        "total_tokens": 2500,
        "prompt_tokens_details": {"cached_tokens": 1536, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0},
    }
    u = normalize_usage(raw)
    assert (u.uncached_input_tokens, u.cache_read_tokens, u.output_tokens, u.reasoning_tokens) == (
        464,
        1536,
        500,
        256,
    )
    assert from_openai(raw) == u


def test_openai_responses_api_usage() -> None:
    u = normalize_usage(
        {
            "input_tokens": 100,
            "input_tokens_details": {"cached_tokens": 60},
            "output_tokens": 40,
            "output_tokens_details": {"reasoning_tokens": 30},
            "total_tokens": 140,
        }
    )
    assert (u.uncached_input_tokens, u.cache_read_tokens, u.output_tokens, u.reasoning_tokens) == (
        40,
        60,
        40,
        30,
    )


def test_anthropic_usage_is_additive() -> None:
    raw = {
        "input_tokens": 50,
        "cache_read_input_tokens": 10_000,
        "cache_creation_input_tokens": 2_000,
        "output_tokens": 700,
    }
    u = normalize_usage(raw)
    # Cache counts come ON TOP of input_tokens: all three are billed input.
    assert u.uncached_input_tokens == 50
    assert u.cache_read_tokens == 10_000
    assert u.cache_write_tokens == 2_000
    assert u.input_tokens == 12_050
    assert from_anthropic(raw) == u


def test_anthropic_cache_creation_breakdown_only() -> None:
    u = normalize_usage(
        {
            "input_tokens": 5,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 20},
            "output_tokens": 1,
        }
    )
    assert u.cache_write_tokens == 120


def test_sdk_objects_with_model_dump() -> None:
    class FakeSdkUsage:
        def model_dump(self) -> dict[str, object]:
            return {"prompt_tokens": 10, "completion_tokens": 2, "prompt_tokens_details": None}

    assert normalize_usage(FakeSdkUsage()) == TokenUsage(uncached_input_tokens=10, output_tokens=2)


def test_plain_input_output_counts() -> None:
    assert normalize_usage({"input_tokens": 3, "output_tokens": 4}) == TokenUsage(
        uncached_input_tokens=3, output_tokens=4
    )


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"foo": 1}, "keys"),
        ({"prompt_tokens": "10", "completion_tokens": 1}, "prompt_tokens"),
        ({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 11}}, "prompt_tokens"),
        (
            {"input_tokens": 1, "output_tokens": 1, "output_token_details": {"reasoning": 5}},
            "reasoning_tokens",
        ),
    ],
)
def test_bad_usage_names_the_field(raw: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        normalize_usage(raw)
    assert info.value.field == field
    assert field in str(info.value)


def test_negative_counts_rejected() -> None:
    with pytest.raises(ConfigurationError, match="non-negative"):
        TokenUsage(output_tokens=-1)


def test_addition() -> None:
    a = from_usage_metadata({"input_tokens": 10, "output_tokens": 5})
    b = TokenUsage(cache_read_tokens=7, output_tokens=3, reasoning_tokens=2)
    assert (a + b).as_dict() == {
        "uncached_input_tokens": 10,
        "cache_read_tokens": 7,
        "cache_write_tokens": 0,
        "cache_write_1h_tokens": 0,
        "output_tokens": 8,
        "reasoning_tokens": 2,
    }
