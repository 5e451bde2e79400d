"""Property tests (hypothesis): bad usage and pricing input only raise `FinOpsError`.

And every priced cost is an exact Decimal.

Exactness is checked against `fractions.Fraction` arithmetic (no rounding possible), with
prices and counts up to the bounds the configuration accepts.
"""

from __future__ import annotations

import contextlib
import tempfile
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent_finops import (
    ConfigurationError,
    FinOpsError,
    ModelPrice,
    PriceBook,
    PricingConfig,
    TokenUsage,
    ToolFee,
    estimate_input_tokens,
    normalize_usage,
)
from agent_finops.estimate import json_text
from agent_finops.usage import MAX_TOKEN_COUNT

FUZZ = settings(
    max_examples=100,
    deadline=None,
    database=None,  # nothing written next to the sources
    suppress_health_check=[HealthCheck.too_slow],
)

USAGE_KEYS = [
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "prompt_tokens",
    "completion_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation",
    "input_token_details",
    "output_token_details",
    "prompt_tokens_details",
    "completion_tokens_details",
    "input_tokens_details",
    "output_tokens_details",
    "cache_read",
    "cache_creation",
    "cached_tokens",
    "reasoning",
    "reasoning_tokens",
    "ephemeral_5m_input_tokens",
    "ephemeral_1h_input_tokens",
    "priority_cache_read",
]

counts = st.one_of(
    st.integers(min_value=0, max_value=5_000),
    st.integers(),
    st.integers(min_value=MAX_TOKEN_COUNT - 2, max_value=10**30),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.none(),
    st.text(max_size=5),
)
keys = st.one_of(
    st.sampled_from(USAGE_KEYS),
    st.text(max_size=8),
    st.integers(),
    st.none(),
    st.tuples(st.integers()),
)
junk: st.SearchStrategy[Any] = st.recursive(
    counts,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=6)),
    max_leaves=20,
)
usage_shapes = st.dictionaries(keys, junk, max_size=8)


@FUZZ
@given(usage_shapes)
def test_normalize_usage_raises_only_configuration_errors(raw: dict[Any, Any]) -> None:
    try:
        u = normalize_usage(raw)
    except ConfigurationError as exc:
        assert str(exc)  # a message, naming the field
        return
    for value in u.as_dict().values():
        assert type(value) is int and 0 <= value <= MAX_TOKEN_COUNT
    assert u.cache_write_1h_tokens <= u.cache_write_tokens
    assert u.reasoning_tokens <= u.output_tokens


@FUZZ
@given(junk)
def test_normalize_usage_of_anything(raw: Any) -> None:
    with contextlib.suppress(ConfigurationError):
        normalize_usage(raw)


# --- exact prices --------------------------------------------------------------------------


def price_decimals(max_value: int = 1_000_000) -> st.SearchStrategy[Decimal]:
    """Any price the configuration accepts: 0..max, at most 12 decimals."""
    return st.integers(min_value=0, max_value=max_value * 10**12).map(
        lambda n: Decimal(f"{n}E-12").normalize() if n else Decimal(0)
    )


@st.composite
def token_usages(draw: st.DrawFn) -> TokenUsage:
    big = st.integers(min_value=0, max_value=MAX_TOKEN_COUNT)
    writes = draw(big)
    output = draw(big)
    return TokenUsage(
        uncached_input_tokens=draw(big),
        cache_read_tokens=draw(big),
        cache_write_tokens=writes,
        cache_write_1h_tokens=draw(st.integers(min_value=0, max_value=writes)),
        output_tokens=output,
        reasoning_tokens=draw(st.integers(min_value=0, max_value=output)),
    )


def optional_price() -> st.SearchStrategy[Decimal | None]:
    return st.one_of(st.none(), price_decimals())


@FUZZ
@given(
    usage=token_usages(),
    inp=price_decimals(),
    out=price_decimals(),
    read=optional_price(),
    write=optional_price(),
    write_1h=optional_price(),
    reasoning=optional_price(),
)
def test_override_prices_are_exact(
    usage: TokenUsage,
    inp: Decimal,
    out: Decimal,
    read: Decimal | None,
    write: Decimal | None,
    write_1h: Decimal | None,
    reasoning: Decimal | None,
) -> None:
    spec: dict[str, Any] = {
        "name": "p",
        "model": "m",
        "input_per_mtok": inp,
        "output_per_mtok": out,
    }
    for key, value in (
        ("cache_read_per_mtok", read),
        ("cache_write_per_mtok", write),
        ("cache_write_1h_per_mtok", write_1h),
        ("reasoning_per_mtok", reasoning),
    ):
        if value is not None:
            spec[key] = value
    override = ModelPrice.model_validate(spec)
    cost = PriceBook(PricingConfig(models=(override,))).price_model_call("m", usage)
    f = Fraction
    expected = (
        usage.uncached_input_tokens * f(inp)
        + usage.cache_read_tokens * f(inp if read is None else read)
        + usage.cache_write_5m_tokens * f(inp if write is None else write)
        + usage.cache_write_1h_tokens
        * f(write_1h if write_1h is not None else inp if write is None else 2 * inp)
        + (usage.output_tokens - usage.reasoning_tokens) * f(out)
        + usage.reasoning_tokens * f(out if reasoning is None else reasoning)
    ) / 1_000_000
    assert isinstance(cost.amount, Decimal)
    assert Fraction(cost.amount) == expected
    assert cost.amount.as_tuple().exponent >= -18  # type: ignore[operator]


@FUZZ
@given(
    per_call=price_decimals(),
    per_unit=price_decimals(),
    units=st.integers(min_value=0, max_value=10**9),
)
def test_tool_fees_are_exact(per_call: Decimal, per_unit: Decimal, units: int) -> None:
    fee = ToolFee(name="f", tool="t", per_call=per_call, per_unit=per_unit, units_key="n")
    cost = PriceBook(PricingConfig(tools=(fee,))).price_tool_call("t", output={"n": units})
    assert cost is not None and isinstance(cost.amount, Decimal)
    assert Fraction(cost.amount) == Fraction(per_call) + units * Fraction(per_unit)


MODELS = [
    ("gpt-4o-mini", "openai"),
    ("claude-sonnet-4-5", "anthropic"),
    ("claude-sonnet-4-6", "anthropic"),
    ("global.anthropic.claude-sonnet-4-20250514-v1:0", "aws"),
    ("gemini-2.5-pro", "google"),
]


@FUZZ
@given(usage=token_usages(), model=st.sampled_from(MODELS))
def test_catalog_prices_are_exact_decimals_at_any_bounded_count(
    usage: TokenUsage, model: tuple[str, str]
) -> None:
    book = BOOK
    cost = book.price_model_call(model[0], usage, provider=model[1])
    assert isinstance(cost.amount, Decimal) and cost.amount >= 0
    assert cost.amount.is_finite()
    if usage.input_tokens > MAX_TOKEN_COUNT:  # a worst case is refused, never clamped
        with pytest.raises(ConfigurationError, match="input_tokens"):
            book.estimate_max_cost(
                model[0], provider=model[1], input_tokens=usage.input_tokens, max_output_tokens=0
            )
        return
    worst = book.estimate_max_cost(
        model[0],
        provider=model[1],
        input_tokens=usage.input_tokens,
        max_output_tokens=usage.output_tokens,
    )
    assert worst is not None and worst >= cost.amount  # the worst case is a worst case


BOOK = PriceBook()


@FUZZ
@given(output=junk, key=st.sampled_from(["n", "a.n", "records"]))
@example(output={"type": []}, key="n")  # an unhashable block type (found by this test)
def test_tool_units_from_any_output_never_raise_nor_go_negative(output: Any, key: str) -> None:
    fee = ToolFee(name="f", tool="t", per_unit=Decimal("0.5"), units_key=key)
    book = PriceBook(PricingConfig(tools=(fee,)))
    for candidate in (
        output,
        json_text(output),
        {"n": output},
        [{"type": "text", "text": json_text({"n": output})}],
    ):
        cost = book.price_tool_call("t", output=candidate)
        assert cost is not None
        assert cost.amount is None or (isinstance(cost.amount, Decimal) and cost.amount >= 0)


# --- configuration: only FinOpsError escapes -------------------------------------------------

price_like = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),
    st.text(max_size=12),
    st.sampled_from(["1e400", "NaN", "Infinity", "-1", "1E-13", "0.1", "1_000", " 3 "]),
    st.booleans(),
    st.none(),
)
model_specs = st.fixed_dictionaries(
    {"name": st.text(max_size=120), "model": st.text(max_size=20)},
    optional={
        "provider": st.one_of(st.none(), st.text(max_size=70)),
        "input_per_mtok": price_like,
        "output_per_mtok": price_like,
        "cache_read_per_mtok": price_like,
        "cache_write_per_mtok": price_like,
        "cache_write_1h_per_mtok": price_like,
        "max_output_tokens": st.one_of(st.integers(), price_like),
        "surprise": junk,
    },
)
tool_specs = st.fixed_dictionaries(
    {"name": st.text(max_size=10), "tool": st.text(max_size=10)},
    optional={
        "per_call": price_like,
        "per_unit": price_like,
        "units_key": st.one_of(st.none(), st.text(max_size=5), st.integers()),
        "max_units": price_like,
    },
)
configs = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "models": st.one_of(st.lists(model_specs, max_size=3), junk),
            "tools": st.one_of(st.lists(tool_specs, max_size=3), junk),
            "strict": st.one_of(st.booleans(), junk),
        },
    ),
    junk,
)


def _check_config(config: PricingConfig) -> None:
    book = PriceBook(config)
    usage = TokenUsage(uncached_input_tokens=MAX_TOKEN_COUNT, output_tokens=MAX_TOKEN_COUNT)
    for override in config.models:
        assert isinstance(override.price(usage), Decimal)
    for fee in config.tools:
        assert isinstance(fee.price(fee.max_units), Decimal)
    book.price_model_call("anything", usage)


@FUZZ
@given(configs)
def test_pricing_config_from_mapping_raises_only_configuration_errors(data: Any) -> None:
    try:
        config = PricingConfig.from_mapping(data)
    except ConfigurationError as exc:
        assert len(str(exc)) < 2_000
        return
    _check_config(config)


@FUZZ
@given(configs)
def test_pricing_config_from_yaml_of_any_structure(data: Any) -> None:
    try:
        text = yaml.safe_dump(data, allow_unicode=True)
    except (yaml.YAMLError, TypeError, ValueError):
        return  # not representable as YAML (hypothesis made a non-YAML type)
    try:
        config = PricingConfig.from_yaml_text(text)
    except FinOpsError:
        return
    _check_config(config)


@FUZZ
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_pricing_config_from_yaml_of_any_text(text: str | bytes) -> None:
    with contextlib.suppress(FinOpsError):
        PricingConfig.from_yaml_text(text)


# --- the input estimate of anything --------------------------------------------------------


@FUZZ
@given(
    messages=st.lists(junk, max_size=5),
    tools=st.lists(junk, max_size=3),
    extra=st.dictionaries(st.text(max_size=5), junk, max_size=3),
)
def test_estimate_of_anything_is_a_non_negative_int(
    messages: list[Any], tools: list[Any], extra: dict[str, Any]
) -> None:
    est = estimate_input_tokens(messages, tools=tools, response_format=extra or None, extra=extra)
    assert isinstance(est, int) and est > 0


@FUZZ
@given(st.lists(st.text(max_size=200), max_size=6))
def test_estimate_is_at_least_the_bytes_of_every_text_message(texts: list[str]) -> None:
    est = estimate_input_tokens([{"role": "user", "content": t} for t in texts])
    assert est >= sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=400),
        configs.map(lambda d: json_text(d).encode()),  # JSON is YAML too
    )
)
def test_pricing_config_from_yaml_file_of_any_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pricing.yaml"
        path.write_bytes(data)
        try:
            config = PricingConfig.from_yaml(path)
        except FinOpsError as exc:
            assert str(path) in str(exc)
            return
    _check_config(config)
