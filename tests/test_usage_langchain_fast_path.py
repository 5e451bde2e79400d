"""normalize_usage's one-pass read of LangChain `usage_metadata` dicts agrees with the general path.

A plain `dict` in LangChain's shape takes the fast path; the same content behind a read-only
mapping proxy (not a `dict`) takes the general one. Both must give the same `TokenUsage`, or
both the same `ConfigurationError`, for any content: the fast path only ever declines.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_finops import ConfigurationError, TokenUsage, normalize_usage
from agent_finops.usage import MAX_TOKEN_COUNT


def general(usage: dict[str, Any]) -> TokenUsage:
    """The general path's reading of the same content (a Mapping that is not a dict)."""
    return normalize_usage(MappingProxyType(usage))


def same_reading(usage: dict[str, Any]) -> None:
    try:
        expected = general(usage)
    except ConfigurationError as exc:
        with pytest.raises(ConfigurationError) as got:
            normalize_usage(usage)
        assert (got.value.field, str(got.value)) == (exc.field, str(exc))
        return
    assert normalize_usage(usage) == expected


def test_a_plain_langchain_report_is_read_exactly() -> None:
    usage = {
        "input_tokens": 1_200,
        "output_tokens": 150,
        "total_tokens": 1_350,
        "input_token_details": {"cache_read": 512, "audio": 0},
        "output_token_details": {"reasoning": 40, "audio": 0},
    }
    assert normalize_usage(usage) == TokenUsage(
        uncached_input_tokens=688, cache_read_tokens=512, output_tokens=150, reasoning_tokens=40
    )
    same_reading(usage)


def test_anthropic_cache_lifetimes_through_langchain() -> None:
    usage = {
        "input_tokens": 10_000,
        "output_tokens": 10,
        "total_tokens": 10_010,
        "input_token_details": {
            "cache_read": 1_000,
            "cache_creation": 0,
            "ephemeral_5m_input_tokens": 2_000,
            "ephemeral_1h_input_tokens": 3_000,
        },
    }
    assert normalize_usage(usage) == TokenUsage(
        uncached_input_tokens=4_000,
        cache_read_tokens=1_000,
        cache_write_tokens=5_000,
        cache_write_1h_tokens=3_000,
        output_tokens=10,
    )
    same_reading(usage)


@pytest.mark.parametrize(
    "usage",
    [
        {"input_tokens": 10, "output_tokens": 5, "input_token_details": {"cache_read": 11}},
        {"input_tokens": 10, "output_tokens": 5, "output_token_details": {"reasoning": 6}},
        {"input_tokens": True, "output_tokens": 5},
        {"input_tokens": -1, "output_tokens": 5},
        {"input_tokens": MAX_TOKEN_COUNT + 1, "output_tokens": 5},
        {"input_tokens": 10, "output_tokens": "5"},
        {"input_tokens": 10},
        {"input_tokens": 10, "output_tokens": 5, "input_token_details": [1]},
        {"input_tokens": 10, "output_tokens": 5, "input_token_details": 0},
        {"input_tokens": 10, "output_tokens": 5, "input_token_details": {"cache_read": 2.5}},
    ],
)
def test_bad_reports_are_refused_as_the_general_path_refuses_them(usage: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        normalize_usage(usage)
    same_reading(usage)


@pytest.mark.parametrize(
    "usage",
    [
        {"input_tokens": 12.0, "output_tokens": 5},  # an integral float is read as an int
        {"input_tokens": 10, "output_tokens": None},
        {"input_tokens": 10, "output_tokens": 5, "input_token_details": None},
        {"input_tokens": 10, "output_tokens": 5, "input_token_details": {"cache_read": None}},
        # ChatOpenAI's service-tier names: the cached part is still cached
        {"input_tokens": 10, "output_tokens": 5, "input_token_details": {"priority_cache_read": 4}},
        {"input_tokens": 10, "output_tokens": 5, "output_token_details": {"flex_reasoning": 2}},
        {"input_tokens": 10, "output_tokens": 5, "cache_creation": {}},  # Anthropic's key
        {"input_tokens": 10, "output_tokens": 5, "prompt_tokens_details": {}},
    ],
)
def test_other_shapes_are_left_to_the_general_path(usage: dict[str, Any]) -> None:
    same_reading(usage)


_COUNT = st.one_of(
    st.integers(min_value=0, max_value=5_000),
    st.integers(min_value=0, max_value=5_000).map(float),
    st.sampled_from([None, True, -1, MAX_TOKEN_COUNT, MAX_TOKEN_COUNT + 1, 0.5]),
)
_INPUT_KEYS = st.sampled_from(
    [
        "cache_read",
        "cache_creation",
        "audio",
        "ephemeral_5m_input_tokens",
        "ephemeral_1h_input_tokens",
        "priority_cache_read",
        "other",
    ]
)
_OUTPUT_KEYS = st.sampled_from(["reasoning", "audio", "flex_reasoning", "other"])
_DETAILS_IN = st.one_of(st.none(), st.dictionaries(_INPUT_KEYS, _COUNT, max_size=5))
_DETAILS_OUT = st.one_of(st.none(), st.dictionaries(_OUTPUT_KEYS, _COUNT, max_size=3))


@st.composite
def langchain_reports(draw: st.DrawFn) -> dict[str, Any]:
    usage: dict[str, Any] = {}
    for key, values in (
        ("input_tokens", st.integers(min_value=0, max_value=20_000) | _COUNT),
        ("output_tokens", st.integers(min_value=0, max_value=5_000) | _COUNT),
        ("total_tokens", _COUNT),
        ("input_token_details", _DETAILS_IN),
        ("output_token_details", _DETAILS_OUT),
        ("extra", _COUNT),
    ):
        if draw(st.booleans() if key in ("extra", "total_tokens") else st.just(True)):
            if key == "extra" and not draw(st.booleans()):
                continue
            usage[key] = draw(values)
    for key in ("input_token_details", "output_token_details"):
        if usage.get(key) is None and draw(st.booleans()):
            del usage[key]
    return usage


@settings(max_examples=600, deadline=None)
@given(langchain_reports())
def test_any_langchain_shaped_report_reads_as_the_general_path_reads_it(
    usage: dict[str, Any],
) -> None:
    same_reading(usage)
