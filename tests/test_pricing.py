"""Pricing: catalog prices in Decimal, overrides, tool fees, unknown models, strict mode."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agent_finops import (
    ConfigurationError,
    ModelPrice,
    PriceBook,
    PriceNotFound,
    PricingConfig,
    TokenUsage,
    ToolFee,
    UnpricedWarning,
)

M = Decimal(1_000_000)


def test_openai_cached_input_priced_at_cache_rate() -> None:
    # gpt-4o-mini list price: $0.15 input, $0.075 cached input, $0.60 output per MTok.
    usage = TokenUsage(
        uncached_input_tokens=600, cache_read_tokens=400, output_tokens=50, reasoning_tokens=20
    )
    cost = PriceBook().price_model_call("gpt-4o-mini", usage, provider="openai")
    expected = (600 * Decimal("0.15") + 400 * Decimal("0.075") + 50 * Decimal("0.60")) / M
    assert cost.amount == expected
    assert isinstance(cost.amount, Decimal)
    assert cost.source == "genai-prices"
    assert cost.version.startswith("genai-prices ")
    assert cost.model_ref == "openai:gpt-4o-mini"


def test_anthropic_cache_write_and_read() -> None:
    # claude-sonnet-4-5 (<=200k tokens): $3 input, $0.30 cache read, $3.75 cache write, $15 output.
    usage = TokenUsage(
        uncached_input_tokens=50,
        cache_read_tokens=10_000,
        cache_write_tokens=2_000,
        output_tokens=700,
    )
    cost = PriceBook().price_model_call("claude-sonnet-4-5", usage, provider="anthropic")
    expected = (
        50 * Decimal(3) + 10_000 * Decimal("0.30") + 2_000 * Decimal("3.75") + 700 * Decimal(15)
    ) / M
    assert cost.amount == expected


def test_unknown_model_is_unknown_not_zero() -> None:
    book = PriceBook()
    cost = book.price_model_call("acme-secret-model", TokenUsage(output_tokens=5))
    assert cost.amount is None
    assert cost.source == "unpriced"
    assert "acme-secret-model" in (cost.reason or "")
    with pytest.warns(UnpricedWarning, match="acme-secret-model"):
        book.report_unpriced(cost)


def test_missing_usage_is_unknown() -> None:
    cost = PriceBook().price_model_call("gpt-4o-mini", None, provider="openai")
    assert cost.amount is None
    assert "no usage reported" in (cost.reason or "")


def test_strict_mode_raises() -> None:
    book = PriceBook(strict=True)
    cost = book.price_model_call("acme-secret-model", TokenUsage(output_tokens=5))
    with pytest.raises(PriceNotFound, match="acme-secret-model"):
        book.report_unpriced(cost)


def test_override_beats_catalog_and_records_its_name() -> None:
    config = PricingConfig(
        models=(
            ModelPrice(
                name="negotiated-4o-mini",
                model="gpt-4o-mini*",
                provider="openai",
                input_per_mtok=Decimal("0.10"),
                output_per_mtok=Decimal("0.40"),
                cache_read_per_mtok=Decimal("0.01"),
                reasoning_per_mtok=Decimal("1.00"),
            ),
        )
    )
    usage = TokenUsage(
        uncached_input_tokens=1000,
        cache_read_tokens=500,
        cache_write_tokens=10,
        output_tokens=300,
        reasoning_tokens=100,
    )
    cost = PriceBook(config).price_model_call("gpt-4o-mini-2024-07-18", usage, provider="openai")
    expected = (
        1000 * Decimal("0.10")
        + 500 * Decimal("0.01")
        + 10 * Decimal("0.10")
        + 200 * Decimal("0.40")
        + 100 * Decimal(1)
    ) / M
    assert cost.amount == expected
    assert cost.source == "override:negotiated-4o-mini"
    assert cost.version == f"overrides {config.content_hash()}"
    # A different provider does not match the override.
    other = PriceBook(config).price_model_call("gpt-4o-mini", usage, provider="azure")
    assert other.source != "override:negotiated-4o-mini"


def test_tool_fees_per_call_and_per_unit() -> None:
    config = PricingConfig(
        tools=(
            ToolFee(name="search", tool="web_search", per_call=Decimal("0.005")),
            ToolFee(
                name="crm",
                tool="crm_*",
                per_call=Decimal("0.001"),
                per_unit=Decimal("0.0002"),
                units_key="records",
            ),
        )
    )
    book = PriceBook(config)
    search = book.price_tool_call("web_search")
    assert search is not None and search.amount == Decimal("0.005")
    crm = book.price_tool_call("crm_lookup", output={"records": 7})
    assert crm is not None and crm.amount == Decimal("0.001") + 7 * Decimal("0.0002")
    assert crm.source == "tool-fee:crm"
    assert book.price_tool_call("calculator") is None  # no fee configured: a free tool
    missing = book.price_tool_call("crm_lookup", output="plain text")
    assert missing is not None and missing.amount is None


def test_worst_case_estimate_uses_dearest_input_rate() -> None:
    book = PriceBook()
    est = book.estimate_max_cost(
        "claude-sonnet-4-5", provider="anthropic", input_tokens=1000, max_output_tokens=100
    )
    # A 1-hour cache write ($6) is dearer than a 5-minute one ($3.75) and plain input ($3).
    assert est == (1000 * Decimal(6) + 100 * Decimal(15)) / M
    # OpenAI bills no cache writes: the worst case is plain input.
    assert book.estimate_max_cost(
        "gpt-4o-mini", provider="openai", input_tokens=1000, max_output_tokens=100
    ) == (1000 * Decimal("0.15") + 100 * Decimal("0.60")) / M
    assert book.estimate_max_cost("nope-model", input_tokens=1, max_output_tokens=1) is None


def test_pricing_yaml_errors_name_file_field_and_value(tmp_path: Path) -> None:
    path = tmp_path / "pricing.yaml"
    path.write_text(
        "models:\n  - name: self-hosted\n    model: llama\n    input_per_mtok: -1\n    output_per_mtok: 1\n"
    )
    with pytest.raises(ConfigurationError) as info:
        PricingConfig.from_yaml(path)
    message = str(info.value)
    assert str(path) in message
    assert "models.0.input_per_mtok" in message
    assert "-1" in message


def test_pricing_yaml_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "pricing.yaml"
    path.write_text(
        "models:\n  - {name: llama, model: 'acme-llama-*', input_per_mtok: '0.2', output_per_mtok: '0.6'}\n"
        "tools:\n  - {name: search, tool: web_search, per_call: '0.01'}\n"
    )
    config = PricingConfig.from_yaml(path)
    cost = PriceBook(config).price_model_call(
        "acme-llama-70b", TokenUsage(uncached_input_tokens=10, output_tokens=10)
    )
    assert cost.amount == (10 * Decimal("0.2") + 10 * Decimal("0.6")) / M


def test_unknown_yaml_key_rejected(tmp_path: Path) -> None:
    path = tmp_path / "pricing.yaml"
    path.write_text("modles: []\n")
    with pytest.raises(ConfigurationError, match="modles"):
        PricingConfig.from_yaml(path)


def test_token_fast_path_matches_genai_prices_over_the_whole_catalog() -> None:
    """The flat/tiered token fast path gives genai-prices' own total for every model."""
    import random

    from genai_prices import Usage, data_snapshot

    from agent_finops.pricing._book import _token_price

    at = datetime(2026, 1, 15, 12, tzinfo=UTC)
    rnd = random.Random(7)
    fast = 0
    for provider in data_snapshot.get_snapshot().providers:
        for info in provider.models:
            for _ in range(3):
                usage = TokenUsage(
                    uncached_input_tokens=rnd.randint(0, 300_000),
                    cache_read_tokens=rnd.choice([0, rnd.randint(0, 50_000)]),
                    cache_write_tokens=rnd.choice([0, rnd.randint(0, 20_000)]),
                    output_tokens=rnd.randint(0, 20_000),
                )
                amount = _token_price(provider.id, info.get_prices(at), usage)
                if amount is None:
                    continue
                fast += 1
                full = info.calc_price(
                    Usage(
                        input_tokens=usage.input_tokens,
                        cache_read_tokens=usage.cache_read_tokens,
                        cache_write_tokens=usage.cache_write_tokens,
                        output_tokens=usage.output_tokens,
                    ),
                    provider,
                    genai_request_timestamp=at,
                ).total_price
                assert amount == full, (provider.id, info.id, usage)
    assert fast > 1000


def test_per_unit_tool_fee_records_the_units_it_charged(sqlite_ledger: Any) -> None:
    from agent_finops import CostTracker

    book = PriceBook(
        PricingConfig(
            tools=(ToolFee(name="crm", tool="crm", per_unit=Decimal("0.001"), units_key="records"),)
        )
    )
    tracker = CostTracker(sqlite_ledger, prices=book, background=False)
    tracker.start_span("r", parent_span_id=None, name="run", kind="chain")
    event = tracker.record_tool_call("r", tool="crm", output={"records": 7})
    assert event is not None and event.units == 7 and event.cost == Decimal("0.007")
