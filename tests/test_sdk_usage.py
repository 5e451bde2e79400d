"""Usage from the real provider SDKs (anthropic, openai) against local fake APIs, priced."""

from __future__ import annotations

from decimal import Decimal

import pytest

from agent_finops import PriceBook, normalize_usage
from tests.fakes.anthropic_server import AnthropicUsage, FakeAnthropicServer

anthropic = pytest.importorskip("anthropic", reason="the anthropic SDK is a dev dependency")
M = Decimal(1_000_000)
# claude-sonnet-4-6 list price (<= 200k input): $3 input, $0.30 cache read, $3.75 cache write, $15 output
EXPECTED = (
    50 * Decimal(3) + 10_000 * Decimal("0.30") + 2_000 * Decimal("3.75") + 700 * Decimal(15)
) / M
REPLY = AnthropicUsage(
    input_tokens=50,
    cache_read_input_tokens=10_000,
    cache_creation_input_tokens=2_000,
    output_tokens=700,
)


def _price(usage: object) -> Decimal | None:
    u = normalize_usage(usage)
    assert (
        u.uncached_input_tokens,
        u.cache_read_tokens,
        u.cache_write_tokens,
        u.output_tokens,
    ) == (50, 10_000, 2_000, 700)
    return PriceBook().price_model_call("claude-sonnet-4-6", u, provider="anthropic").amount


def test_anthropic_sdk_message_usage_is_additive() -> None:
    with FakeAnthropicServer([REPLY]) as srv:
        client = anthropic.Anthropic(base_url=srv.base_url, api_key="test", max_retries=0)
        message = client.messages.create(
            model="claude-sonnet-4-6", max_tokens=1024, messages=[{"role": "user", "content": "hi"}]
        )
        client.close()
    assert _price(message.usage) == EXPECTED  # the SDK's own usage object, via model_dump()


def test_anthropic_sdk_stream_final_message_usage() -> None:
    with FakeAnthropicServer([REPLY]) as srv:
        client = anthropic.Anthropic(base_url=srv.base_url, api_key="test", max_retries=0)
        with client.messages.stream(
            model="claude-sonnet-4-6", max_tokens=1024, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        client.close()
    assert text == REPLY.text
    # Input and cache counts arrive in message_start, output in message_delta.
    assert _price(final.usage) == EXPECTED


# 3,000 cache writes of which 1,000 with the 1-hour TTL: $3.75 for the 5-minute ones, $6 for
# the 1-hour ones (claude-sonnet-4-6), instead of all 3,000 at $3.75 (or as plain input).
TTL_REPLY = AnthropicUsage(
    input_tokens=50,
    cache_read_input_tokens=10_000,
    cache_creation_input_tokens=3_000,
    cache_creation={"ephemeral_5m_input_tokens": 2_000, "ephemeral_1h_input_tokens": 1_000},
    output_tokens=700,
)
TTL_EXPECTED = Decimal("0.02715")  # (150 + 3,000 + 7,500 + 6,000 + 10,500) micro-dollars


def _price_ttl(usage: object) -> Decimal | None:
    u = normalize_usage(usage)
    assert (u.cache_write_tokens, u.cache_write_1h_tokens, u.cache_write_5m_tokens) == (
        3_000,
        1_000,
        2_000,
    )
    return PriceBook().price_model_call("claude-sonnet-4-6", u, provider="anthropic").amount


def test_hand_computed_ttl_bill() -> None:
    micro = 50 * 3 + 10_000 * Decimal("0.30") + 2_000 * Decimal("3.75") + 1_000 * 6 + 700 * 15
    assert micro / M == TTL_EXPECTED


def test_anthropic_sdk_one_hour_cache_writes() -> None:
    with FakeAnthropicServer([TTL_REPLY]) as srv:
        client = anthropic.Anthropic(base_url=srv.base_url, api_key="test", max_retries=0)
        message = client.messages.create(
            model="claude-sonnet-4-6", max_tokens=1024, messages=[{"role": "user", "content": "hi"}]
        )
        client.close()
    assert message.usage.cache_creation is not None  # the SDK parsed the breakdown
    assert message.usage.cache_creation.ephemeral_1h_input_tokens == 1_000
    assert _price_ttl(message.usage) == TTL_EXPECTED


def test_anthropic_sdk_stream_one_hour_cache_writes() -> None:
    with FakeAnthropicServer([TTL_REPLY]) as srv:
        client = anthropic.Anthropic(base_url=srv.base_url, api_key="test", max_retries=0)
        with client.messages.stream(
            model="claude-sonnet-4-6", max_tokens=1024, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            final = stream.get_final_message()
        client.close()
    assert _price_ttl(final.usage) == TTL_EXPECTED
