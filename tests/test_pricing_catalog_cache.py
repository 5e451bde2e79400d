"""GenaiPricesCatalog resolves each (model, provider) once, in a bounded cache.

Exact Decimal prices, unknown models unknown (never $0), prices that change over time still
read at the time asked.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from genai_prices import Usage, data_snapshot

from agent_finops import PriceBook, TokenUsage
from agent_finops.pricing import CATALOG_CACHE_SIZE, GenaiPricesCatalog

USAGE = TokenUsage(
    uncached_input_tokens=688, cache_read_tokens=512, cache_write_tokens=300, output_tokens=150
)


def catalog_price(provider_id: str, model: str, usage: TokenUsage, at: datetime) -> Decimal:
    """genai-prices' own total for `usage` (not through our code)."""
    provider = next(p for p in data_snapshot.get_snapshot().providers if p.id == provider_id)
    info = next(m for m in provider.models if m.id == model)
    return Decimal(
        info.calc_price(
            Usage(
                input_tokens=usage.input_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
                output_tokens=usage.output_tokens,
            ),
            provider,
            genai_request_timestamp=at,
        ).total_price
    )


def test_the_cache_is_bounded_and_unknown_models_stay_unknown() -> None:
    book = PriceBook(catalog=GenaiPricesCatalog())
    catalog = book.catalog
    assert isinstance(catalog, GenaiPricesCatalog)
    first = book.price_model_call("gpt-4o-mini", USAGE, provider="openai")
    assert isinstance(first.amount, Decimal) and first.amount > 0
    for n in range(CATALOG_CACHE_SIZE + 50):
        assert catalog.price(f"no-such-model-{n}", "openai", USAGE) is None
        assert catalog.cached_models <= CATALOG_CACHE_SIZE
    assert catalog.cached_models == CATALOG_CACHE_SIZE
    unknown = book.price_model_call("no-such-model-1", USAGE, provider="openai")
    assert unknown.amount is None and unknown.source == "unpriced"  # evicted, still unknown
    again = book.price_model_call("gpt-4o-mini", USAGE, provider="openai")  # evicted too
    assert again == first


def test_a_model_is_priced_the_same_each_time_and_exactly() -> None:
    at = datetime(2026, 1, 15, 12, tzinfo=UTC)
    catalog = GenaiPricesCatalog(at=at)
    costs = [catalog.price("gpt-4o-mini", "openai", USAGE) for _ in range(3)]
    assert costs[0] is not None and costs[0] == costs[1] == costs[2]
    assert costs[0].amount == catalog_price("openai", "gpt-4o-mini", USAGE, at)
    assert catalog.cached_models == 1


@pytest.mark.parametrize(
    ("provider", "model"),
    [("avian", "deepseek/deepseek-v4-flash"), ("anthropic", "claude-sonnet-4-6")],
)
def test_a_price_that_changes_over_time_is_read_at_the_time_asked(
    provider: str, model: str
) -> None:
    usage = TokenUsage(uncached_input_tokens=250_000, output_tokens=1_000)
    before, after = datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    old = GenaiPricesCatalog(at=before).price(model, provider, usage)
    new = GenaiPricesCatalog(at=after).price(model, provider, usage)
    assert old is not None and new is not None
    assert old.amount == catalog_price(provider, model, usage, before)
    assert new.amount == catalog_price(provider, model, usage, after)
    assert old.amount != new.amount


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("aws", "global.anthropic.claude-sonnet-4-20250514-v1:0"),  # no 1-hour rate: 2x rule
        ("anthropic", "claude-sonnet-4-5"),
        ("openai", "gpt-4o"),
    ],
)
def test_a_warm_catalog_prices_as_a_fresh_one(provider: str, model: str) -> None:
    """What one call resolved (the 1-hour write rule, flat rates) does not leak into the next."""
    at = datetime(2026, 1, 15, tzinfo=UTC)
    warm = GenaiPricesCatalog(at=at)
    usages = [
        TokenUsage(
            uncached_input_tokens=10,
            cache_write_tokens=100,
            cache_write_1h_tokens=40,
            output_tokens=1,
        ),
        TokenUsage(uncached_input_tokens=10, cache_write_tokens=100, output_tokens=1),
        TokenUsage(uncached_input_tokens=10, cache_read_tokens=7, output_tokens=3),
    ]
    for usage in usages * 2:
        cost = warm.price(model, provider, usage)
        assert cost is not None and isinstance(cost.amount, Decimal)
        assert cost == GenaiPricesCatalog(at=at).price(model, provider, usage)
    rule = warm.price(model, provider, usages[0])
    plain = warm.price(model, provider, usages[1])
    assert rule is not None and plain is not None and plain.source == "genai-prices"
    if provider == "aws":
        assert rule.source == "genai-prices+1h-write-2x-input"
