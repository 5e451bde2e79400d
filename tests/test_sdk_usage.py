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
