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
    assert (
        book.estimate_max_cost(
            "gpt-4o-mini", provider="openai", input_tokens=1000, max_output_tokens=100
        )
        == (1000 * Decimal("0.15") + 100 * Decimal("0.60")) / M
    )
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

    from agent_finops.pricing import GenaiPricesCatalog

    at = datetime(2026, 1, 15, 12, tzinfo=UTC)
    catalog = GenaiPricesCatalog(at=at)
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
                cost = catalog.price(info.id, provider.id, usage)
                if cost is None or cost.model_ref != f"{provider.id}:{info.id}":
                    continue  # the id resolves to another model of the catalog
                amount = cost.amount
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


def test_worst_case_estimate_is_the_dearest_priced_usage_over_the_whole_catalog() -> None:
    """`estimate_max_cost` (one formula from the rates) equals pricing each candidate usage."""
    import random

    from genai_prices import data_snapshot

    from agent_finops.pricing import GenaiPricesCatalog

    at = datetime(2026, 1, 15, 12, tzinfo=UTC)
    book = PriceBook(catalog=GenaiPricesCatalog(at=at))
    rnd = random.Random(11)
    compared = 0
    for provider in data_snapshot.get_snapshot().providers:
        for info in provider.models:
            for n in (0, 1, rnd.randint(2, 150_000), rnd.randint(150_001, 1_500_000)):
                out = rnd.randint(0, 64_000)
                worst = book.estimate_max_cost(
                    info.id, provider=provider.id, input_tokens=n, max_output_tokens=out
                )
                priced = [
                    book.price_model_call(info.id, usage, provider=provider.id).amount
                    for usage in (
                        TokenUsage(uncached_input_tokens=n, output_tokens=out),
                        TokenUsage(cache_write_tokens=n, output_tokens=out),
                        TokenUsage(
                            cache_write_tokens=n, cache_write_1h_tokens=n, output_tokens=out
                        ),
                    )
                ]
                if any(p is None for p in priced):
                    assert worst is None, (provider.id, info.id, n, out)
                    continue
                compared += 1
                assert worst == max(p for p in priced if p is not None), (
                    provider.id,
                    info.id,
                    n,
                    out,
                )
    assert compared > 1000


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


# --- 5-minute and 1-hour cache writes ----------------------------------------------------


def test_one_hour_cache_writes_at_the_catalog_rate() -> None:
    # claude-sonnet-4-6: $3 input, $0.30 read, $3.75 5-minute write, $6 1-hour write, $15 output.
    usage = TokenUsage(
        uncached_input_tokens=50,
        cache_read_tokens=10_000,
        cache_write_tokens=3_000,
        cache_write_1h_tokens=1_000,
        output_tokens=700,
    )
    cost = PriceBook().price_model_call("claude-sonnet-4-6", usage, provider="anthropic")
    assert cost.amount == Decimal("0.02715")  # 150 + 3000 + 2000x3.75 + 1000x6 + 10500 micro-$
    assert cost.source == "genai-prices"


def test_one_hour_writes_without_a_catalog_rate_use_anthropics_rule() -> None:
    # genai-prices lists Bedrock's global claude-sonnet-4 with a cache-write rate but no 1h one.
    from agent_finops.pricing import ONE_HOUR_WRITE_RULE_SOURCE

    usage = TokenUsage(cache_write_tokens=3_000, cache_write_1h_tokens=1_000, output_tokens=10)
    model = "global.anthropic.claude-sonnet-4-20250514-v1:0"
    cost = PriceBook().price_model_call(model, usage, provider="aws")
    assert cost.amount == (2_000 * Decimal("3.75") + 1_000 * 2 * Decimal(3) + 10 * 15) / M
    assert cost.source == ONE_HOUR_WRITE_RULE_SOURCE
    # No 1-hour writes: the plain catalog source.
    plain = PriceBook().price_model_call(model, TokenUsage(cache_write_tokens=5), provider="aws")
    assert plain.source == "genai-prices"


def test_override_prices_one_hour_writes() -> None:
    base = {"name": "neg", "model": "claude-*", "input_per_mtok": "2", "output_per_mtok": "10"}
    usage = TokenUsage(cache_write_tokens=300, cache_write_1h_tokens=100)
    explicit = ModelPrice.model_validate(
        {**base, "cache_write_per_mtok": "2.5", "cache_write_1h_per_mtok": "3"}
    )
    book = PriceBook(PricingConfig(models=(explicit,)))
    assert book.price_model_call("claude-x", usage).amount == (200 * Decimal("2.5") + 300) / M
    rule = ModelPrice.model_validate({**base, "cache_write_per_mtok": "2.5"})
    by_rule = PriceBook(PricingConfig(models=(rule,))).price_model_call("claude-x", usage)
    assert by_rule.amount == (200 * Decimal("2.5") + 100 * 4) / M  # 2x input for 1-hour writes
    plain = PriceBook(PricingConfig(models=(ModelPrice.model_validate(base),)))
    assert plain.price_model_call("claude-x", usage).amount == 300 * 2 / M  # no write prices


def test_fast_path_matches_genai_prices_with_one_hour_writes() -> None:
    from genai_prices import Usage, data_snapshot

    from agent_finops.pricing import GenaiPricesCatalog

    at = datetime(2026, 1, 15, 12, tzinfo=UTC)
    catalog = GenaiPricesCatalog(at=at)
    usage = TokenUsage(
        uncached_input_tokens=1_234,
        cache_read_tokens=5_000,
        cache_write_tokens=7_000,
        cache_write_1h_tokens=3_000,
        output_tokens=999,
    )
    checked = 0
    for provider in data_snapshot.get_snapshot().providers:
        for info in provider.models:
            prices = info.get_prices(at)
            if getattr(prices, "cache_write_1h_mtok", None) is None:
                continue
            cost = catalog.price(info.id, provider.id, usage)
            if cost is None or cost.model_ref != f"{provider.id}:{info.id}":
                continue
            amount = cost.amount
            full = info.calc_price(
                Usage(
                    input_tokens=usage.input_tokens,
                    cache_read_tokens=usage.cache_read_tokens,
                    cache_write_tokens=usage.cache_write_tokens,
                    cache_write_1h_tokens=usage.cache_write_1h_tokens,
                    output_tokens=usage.output_tokens,
                ),
                provider,
                genai_request_timestamp=at,
            ).total_price
            assert amount == full, (provider.id, info.id)
            checked += 1
    assert checked > 20


# --- the model's own output ceiling -------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "provider", "ceiling"),
    [
        ("gpt-4o-mini", "openai", 16_384),
        ("gpt-4o-2024-05-13", "openai", 4_096),
        ("gpt-4.1", "openai", 32_768),
        ("gpt-5", "openai", 128_000),
        ("o3-mini", "openai", 100_000),
        ("claude-3-5-haiku-latest", "anthropic", 8_192),
        ("claude-sonnet-4-5", "anthropic", 64_000),
        ("claude-opus-4-1", "anthropic", 32_000),
        ("claude-sonnet-4-6", "anthropic", 128_000),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "aws", 64_000),
        ("gemini-2.5-flash", "google", 65_536),
        ("gemini-2.0-flash", "google", 8_192),
    ],
)
def test_max_output_tokens_from_the_bundled_table(model: str, provider: str, ceiling: int) -> None:
    assert PriceBook().max_output_tokens(model, provider) == ceiling


def test_max_output_tokens_falls_back_to_the_context_window() -> None:
    book = PriceBook()
    # grok-3 is not in the table; genai-prices gives it a 131,072-token window.
    assert book.max_output_tokens("grok-3", "x-ai") == 131_072
    assert book.max_output_tokens("grok-3", "x-ai", input_tokens=100_000) == 31_072
    assert book.max_output_tokens("grok-3", "x-ai", input_tokens=200_000) is None
    assert book.max_output_tokens("acme-secret-model") is None
    assert book.max_output_tokens(None) is None


def test_max_output_tokens_override_wins() -> None:
    own = ModelPrice(
        name="llama",
        model="acme-llama-*",
        input_per_mtok=Decimal("0.1"),
        output_per_mtok=Decimal("0.1"),
        max_output_tokens=2_048,
    )
    assert PriceBook(PricingConfig(models=(own,))).max_output_tokens("acme-llama-70b") == 2_048


def test_max_output_tokens_with_a_catalog_that_has_no_windows() -> None:
    class Flat:
        version = "flat 1"

        def price(self, model: str, provider: str | None, usage: TokenUsage) -> Any:
            return None

    assert PriceBook(catalog=Flat()).max_output_tokens("mystery") is None
    assert PriceBook(catalog=Flat()).max_output_tokens("gpt-4o") == 16_384


# --- per-unit tool fees: where the units are, and which are refused -----------------------


def crm_book(**fee: Any) -> PriceBook:
    spec = {
        "name": "crm",
        "tool": "crm",
        "per_call": "0.001",
        "per_unit": "0.0002",
        "units_key": "records",
    }
    return PriceBook(PricingConfig(tools=(ToolFee.model_validate({**spec, **fee}),)))


CRM_7 = Decimal("0.001") + 7 * Decimal("0.0002")


@pytest.mark.parametrize(
    "output",
    [
        {"records": 7},
        '{"records": 7, "rows": []}',
        '  {"records": 7.0}\n',
        [{"type": "text", "text": '{"records": 7}'}],
        ['{"records": 7}'],
    ],
)
def test_units_found_in_dicts_json_and_text_blocks(output: Any) -> None:
    cost = crm_book().price_tool_call("crm", output=output)
    assert cost is not None and cost.amount == CRM_7 and cost.units == 7


def test_units_found_in_a_tool_message() -> None:
    from langchain_core.messages import ToolMessage

    as_json = ToolMessage('{"records": 7}', tool_call_id="c1")
    as_artifact = ToolMessage("seven records", artifact={"records": 7}, tool_call_id="c1")
    blocks = ToolMessage([{"type": "text", "text": '{"records": 7}'}], tool_call_id="c1")
    for output in (as_json, as_artifact, blocks):
        cost = crm_book().price_tool_call("crm", output=output)
        assert cost is not None and cost.amount == CRM_7, output


def test_dotted_units_key() -> None:
    book = crm_book(units_key="result.records")
    cost = book.price_tool_call("crm", output='{"result": {"records": 7}}')
    assert cost is not None and cost.amount == CRM_7
    literal = book.price_tool_call("crm", output={"result.records": 7})
    assert literal is not None and literal.amount == CRM_7
    missing = book.price_tool_call("crm", output={"result": 7})
    assert missing is not None and missing.amount is None


@pytest.mark.parametrize("bad", [-1, True, 2.5, float("nan"), 10**12, "7", None, [7]])
def test_bad_units_are_refused_never_a_negative_fee(bad: Any) -> None:
    cost = crm_book().price_tool_call("crm", output={"records": bad})
    assert cost is not None and cost.amount is None
    reason = cost.reason or ""
    assert "'crm'" in reason and "'records'" in reason and repr(bad) in reason
    if bad is not None:  # units=None means "read them from the output"
        given = crm_book().price_tool_call("crm", units=bad)
        assert given is not None and given.amount is None
        assert "units argument" in (given.reason or "")


def test_units_above_the_fee_ceiling_are_refused() -> None:
    book = crm_book(max_units=100)
    ok = book.price_tool_call("crm", output={"records": 100})
    assert ok is not None and ok.amount == Decimal("0.001") + 100 * Decimal("0.0002")
    refused = book.price_tool_call("crm", output={"records": 101})
    assert refused is not None and refused.amount is None


def test_bad_units_through_the_tracker_warn_naming_tool_key_and_value(sqlite_ledger: Any) -> None:
    from agent_finops import CostTracker

    tracker = CostTracker(sqlite_ledger, prices=crm_book(), background=False)
    tracker.start_span("r", parent_span_id=None, name="run", kind="chain")
    with pytest.warns(UnpricedWarning, match=r"'crm'.*'records'.*-3"):
        event = tracker.record_tool_call("r", tool="crm", output='{"records": -3}')
    assert event is not None and event.cost is None and event.units == 0


# --- bounded, exact configured prices ----------------------------------------------------


@pytest.mark.parametrize(
    "price", ["1e400", "NaN", "Infinity", "-Infinity", "-0.01", "1000001", "1e-13", ".inf", ".nan"]
)
def test_unbounded_or_non_finite_prices_refused_at_load(price: str, tmp_path: Path) -> None:
    path = tmp_path / "pricing.yaml"
    path.write_text(
        f"models:\n  - {{name: x, model: x, input_per_mtok: {price}, output_per_mtok: 1}}\n"
    )
    with pytest.raises(ConfigurationError) as info:
        PricingConfig.from_yaml(path)
    assert info.value.field == "models.0.input_per_mtok"


@pytest.mark.parametrize("fee", ["1e400", "NaN", "-1", "1000001"])
def test_unbounded_tool_fees_refused(fee: str) -> None:
    with pytest.raises(ConfigurationError, match="per_unit"):
        PricingConfig.from_mapping({"tools": [{"name": "t", "tool": "t", "per_unit": fee}]})


def test_largest_prices_and_counts_price_exactly() -> None:
    top = ModelPrice(
        name="top",
        model="top",
        input_per_mtok=Decimal("999999.999999999999"),
        output_per_mtok=Decimal("999999.999999999999"),
    )
    usage = TokenUsage(uncached_input_tokens=10**12, output_tokens=10**12 - 1)
    cost = PriceBook(PricingConfig(models=(top,))).price_model_call("top", usage)
    # Worked out in integers: (2e12 - 1) x 999999999999999999 / 10^18, no rounding anywhere
    # (the default 28-digit decimal context would round this product).
    exact = (2 * 10**12 - 1) * 999_999_999_999_999_999
    assert cost.amount == Decimal(f"{exact}E-18")  # built from text: exact
    assert cost.amount == Decimal("1999999999998.999998000000000001")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"\xff\xfe models: []", "not UTF-8"),
        ("a: " + "[" * 100 + "]" * 100, "nested deeper"),
        ("models: []\nmodels: []\n", "key repeated"),
        (
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n"
                for p, c in zip("abcde", "bcdef", strict=True)
            ),
            "nodes once aliases are expanded",
        ),
        ("models: [", "invalid YAML"),
        ("models: !!python/object/apply:os.system [ls]", "invalid YAML"),
    ],
)
def test_hostile_yaml_is_a_configuration_error(
    text: str | bytes, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "pricing.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigurationError, match=message) as info:
        PricingConfig.from_yaml(path)
    assert str(path) in str(info.value)
    assert len(str(info.value)) < 2_000


def test_oversized_pricing_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "pricing.yaml"
    path.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(ConfigurationError, match="too large"):
        PricingConfig.from_yaml(path)
    with pytest.raises(ConfigurationError, match="cannot read"):
        PricingConfig.from_yaml(tmp_path / "missing.yaml")


def test_error_values_are_abbreviated() -> None:
    with pytest.raises(ConfigurationError) as info:
        PricingConfig.from_mapping({"models": [{"name": "x" * 10_000}]})
    assert len(str(info.value)) < 1_000


def test_content_hash_is_stable_across_the_new_fields() -> None:
    """A configuration written before 1-hour write prices and unit ceilings keeps its hash."""
    config = PricingConfig(
        models=(
            ModelPrice(
                name="n", model="m*", input_per_mtok=Decimal("0.1"), output_per_mtok=Decimal(1)
            ),
        ),
        tools=(ToolFee(name="t", tool="t", per_call=Decimal("0.01")),),
    )
    # The hash the first release computed for this configuration.
    assert config.content_hash() == "0fb683cf1378"
    changed = PricingConfig(
        models=(config.models[0].model_copy(update={"max_output_tokens": 10}),),
        tools=config.tools,
    )
    assert changed.content_hash() != config.content_hash()
