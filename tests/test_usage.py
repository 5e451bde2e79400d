"""The usage normaliser: both cache conventions, reasoning, and bad input."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

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


# --- cache writes by lifetime (Anthropic's 5-minute and 1-hour TTLs) ----------------------


def test_langchain_anthropic_ephemeral_breakdown_is_a_cache_write() -> None:
    """What langchain-anthropic's `_create_usage_metadata` builds from real SDK usage."""
    pytest.importorskip("langchain_anthropic")
    from anthropic.types import CacheCreation, Usage
    from langchain_anthropic.chat_models import _create_usage_metadata

    raw = Usage(
        input_tokens=50,
        output_tokens=700,
        cache_read_input_tokens=10_000,
        cache_creation_input_tokens=3_000,
        cache_creation=CacheCreation(
            ephemeral_5m_input_tokens=2_000, ephemeral_1h_input_tokens=1_000
        ),
    )
    metadata = _create_usage_metadata(raw)
    # langchain-anthropic zeroes the generic key when it has the breakdown.
    assert metadata["input_token_details"]["cache_creation"] == 0  # type: ignore[typeddict-item]
    expected = TokenUsage(
        uncached_input_tokens=50,
        cache_read_tokens=10_000,
        cache_write_tokens=3_000,
        cache_write_1h_tokens=1_000,
        output_tokens=700,
    )
    assert normalize_usage(dict(metadata)) == expected
    assert normalize_usage(raw) == expected  # the raw SDK object (additive convention)
    assert normalize_usage(raw.model_dump()) == expected


def test_anthropic_total_and_breakdown_disagreeing_takes_the_larger() -> None:
    both = {
        "input_tokens": 1,
        "output_tokens": 1,
        "cache_creation_input_tokens": 500,
        "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 20},
    }
    u = normalize_usage(both)
    assert (u.cache_write_tokens, u.cache_write_1h_tokens, u.cache_write_5m_tokens) == (
        500,
        20,
        480,
    )
    meta = {
        "input_tokens": 130,
        "output_tokens": 1,
        "input_token_details": {"cache_creation": 120, _5M: 100, _1H: 20},
    }
    assert normalize_usage(meta).cache_write_tokens == 120  # a total with its breakdown


_5M, _1H = "ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"


def test_one_hour_writes_cannot_exceed_all_writes() -> None:
    with pytest.raises(ConfigurationError) as info:
        TokenUsage(cache_write_tokens=1, cache_write_1h_tokens=2)
    assert info.value.field == "cache_write_1h_tokens"


# --- bad input: only ConfigurationError, naming the field and the value -------------------


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"input_tokens": -1, "output_tokens": 1}, "input_tokens"),
        ({"input_tokens": True, "output_tokens": 1}, "input_tokens"),
        ({"input_tokens": 1.5, "output_tokens": 1}, "input_tokens"),
        ({"input_tokens": float("nan"), "output_tokens": 1}, "input_tokens"),
        ({"input_tokens": float("inf"), "output_tokens": 1}, "input_tokens"),
        ({"input_tokens": 10**13, "output_tokens": 1}, "input_tokens"),
        ({"prompt_tokens": 1, "prompt_tokens_details": {"cached_tokens": "1"}}, "cached_tokens"),
        ({"prompt_tokens": 1, "prompt_tokens_details": ["junk"]}, "prompt_tokens_details"),
        (
            {"input_tokens": 1, "output_tokens": 1, "input_token_details": "x"},
            "input_token_details",
        ),
        ({"input_tokens": 1, "cache_creation": {_1H: [1]}}, _1H),
        ({1: 2, (3,): 4}, "keys"),
    ],
)
def test_bad_counts_and_junk_are_configuration_errors(raw: dict[Any, Any], field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        normalize_usage(raw)
    assert info.value.field == field
    assert field in str(info.value)


def test_whole_floats_are_read_as_counts() -> None:
    assert normalize_usage({"input_tokens": 12.0, "output_tokens": 3}) == TokenUsage(
        uncached_input_tokens=12, output_tokens=3
    )


def test_non_string_keys_are_ignored_and_misbehaving_objects_refused() -> None:
    u = normalize_usage({"input_tokens": 3, "output_tokens": 4, 7: "junk", None: {}})
    assert u == TokenUsage(uncached_input_tokens=3, output_tokens=4)

    class Exploding(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise RuntimeError("boom")

        def __iter__(self) -> Iterator[str]:
            raise TypeError("no iteration")

        def __len__(self) -> int:
            return 1

        def __contains__(self, key: object) -> bool:
            return key in ("input_tokens", "output_tokens")

    with pytest.raises(ConfigurationError, match="malformed usage"):
        normalize_usage(Exploding())

    class BadDump:
        def model_dump(self) -> dict[str, Any]:
            raise ValueError("cannot dump")

    with pytest.raises(ConfigurationError, match="malformed usage"):
        normalize_usage(BadDump())
