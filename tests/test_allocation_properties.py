"""Property tests: allocation is exact, within one quantum, deterministic, never negative."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent_finops.allocation import (
    FINE_QUANTUM,
    AllocationRules,
    Allocator,
    ChargebackStatement,
    CostLine,
    allocation_rules_from_mapping,
    split_amount,
)

CENT = Decimal("0.01")
OWNERS = ["a", "b", "c", "d", "e"]
PROJECTS = ["platform", "search", "kb", "gateway", "other"]
AGENTS = ["guardrail", "router", "worker"]

amounts = st.decimals(
    min_value=Decimal("-1000"), max_value=Decimal("100000"), places=18, allow_nan=False
)
non_negative = st.decimals(min_value=Decimal(0), max_value=Decimal("100000"), places=18)
weights = st.dictionaries(
    st.sampled_from(OWNERS),
    st.one_of(st.integers(0, 10**6), st.decimals(Decimal(0), Decimal(1000), places=6)),
    min_size=1,
).filter(lambda w: any(v > 0 for v in w.values()))
positive_weights = st.dictionaries(
    st.sampled_from(OWNERS), st.integers(1, 1000).map(Decimal), min_size=1
)


@st.composite
def cost_lines(draw: st.DrawFn, amount: st.SearchStrategy[Decimal] = amounts) -> CostLine:
    tags: dict[str, str] = {}
    if draw(st.booleans()):
        tags["team"] = draw(st.sampled_from(OWNERS))
    if draw(st.booleans()):
        tags["project"] = draw(st.sampled_from(PROJECTS))
    if draw(st.booleans()):
        tags["agent"] = draw(st.sampled_from(AGENTS))
    bucket = draw(st.sampled_from([None, "tokens", "tools", "compute", "overhead"]))
    return CostLine(tags, draw(amount), bucket)


@st.composite
def rule_files(draw: st.DrawFn) -> AllocationRules:
    def fee() -> str:
        return str(draw(st.decimals(Decimal("0.01"), Decimal(500), places=2)))

    among = draw(st.one_of(st.none(), st.lists(st.sampled_from(OWNERS), min_size=1, unique=True)))
    usage: dict[str, Any] = {"by": "direct_usage"} | ({} if among is None else {"among": among})
    candidates = [
        {"id": "platform", "type": "fixed", "match": {"project": "platform"}, "to": draw(st.sampled_from(OWNERS))},
        {"id": "search", "type": "proportional", "match": {"project": "search"}, "weights": {k: str(v) for k, v in draw(positive_weights).items()}},
        {"id": "kb", "type": "proportional", "match": {"project": "kb"}, **usage},
        {"id": "gateway", "type": "hybrid", "match": {"project": "gateway"},
         "base_fee": {o: fee() for o in draw(st.lists(st.sampled_from(OWNERS), min_size=1, unique=True))},
         **draw(st.sampled_from([usage, {"weights": {"a": 1, "e": 2}}]))},
        {"id": "guards", "type": "shared_pool", "match": {"agent": ["guardrail", "router"]}},
        {"id": "tools", "type": "fixed", "match": {}, "bucket": "tools", "to": "tools-team"},
    ]  # fmt: skip
    chosen = draw(st.lists(st.sampled_from(candidates), unique_by=lambda r: r["id"], min_size=1))
    rounding = draw(st.sampled_from(["0.01", "0.01", "1", "0.001", "0.05"]))
    return allocation_rules_from_mapping({"rounding": rounding, "rules": chosen})


def half_even(value: Decimal, quantum: Decimal) -> Decimal:
    return (value / quantum).quantize(Decimal(1), ROUND_HALF_EVEN) * quantum


def exact(values: Any) -> Fraction:
    return sum((Fraction(v) for v in values), Fraction(0))


# -- one split ----------------------------------------------------------------------------------


@given(amount=amounts, weights=weights)
def test_a_fine_split_sums_exactly_and_each_part_is_within_one_quantum(
    amount: Decimal, weights: dict[str, Decimal | int]
) -> None:
    parts = split_amount(amount, weights)
    assert exact(parts.values()) == Fraction(amount)
    total = exact(weights.values())
    for owner, part in parts.items():
        share = Fraction(amount) * Fraction(weights[owner]) / total
        assert abs(Fraction(part) - share) < Fraction(FINE_QUANTUM)


@given(cents=st.integers(-(10**9), 10**9), weights=weights)
def test_a_cent_split_sums_exactly_and_each_part_is_within_one_cent(
    cents: int, weights: dict[str, Decimal | int]
) -> None:
    amount = Decimal(cents).scaleb(-2)
    parts = split_amount(amount, weights, quantum=CENT)
    assert sum(parts.values()) == amount
    total = exact(weights.values())
    for owner, part in parts.items():
        assert part == part.quantize(CENT)
        share = Fraction(amount) * Fraction(weights[owner]) / total
        assert abs(Fraction(part) - share) < Fraction(CENT)


@given(amount=non_negative, weights=weights, seed=st.randoms(use_true_random=False))
def test_a_split_is_non_negative_and_independent_of_weight_order(
    amount: Decimal, weights: dict[str, Decimal | int], seed: Any
) -> None:
    parts = split_amount(amount, weights)
    assert all(part >= 0 for part in parts.values())
    items = list(weights.items())
    seed.shuffle(items)
    assert split_amount(amount, dict(items)) == parts


# -- whole periods --------------------------------------------------------------------------------


def check_statement(statement: ChargebackStatement, lines: list[CostLine]) -> None:
    q = statement.quantum
    assert statement.raw_total == sum(line.amount for line in lines)
    assert statement.total == half_even(statement.raw_total, q)
    assert statement.rounding_difference == statement.total - statement.raw_total
    assert sum(statement.owner_totals.values()) == statement.total
    assert sum(statement.raw_owner_totals.values()) == statement.raw_total
    assert sum(statement.rule_totals.values()) == statement.total
    assert sum(statement.raw_rule_totals.values()) == statement.raw_total
    assert sum(x.raw_amount for x in statement.lines) == statement.raw_total
    for owner, rounded in statement.owner_totals.items():
        raw = statement.raw_owner_totals[owner]
        assert abs(rounded - raw) < q
        assert rounded % q == 0
        assert sum(x.amount for x in statement.lines if x.owner == owner) == rounded
    for x in statement.lines:
        assert abs(x.amount - x.raw_amount) < q


@settings(max_examples=150)
@given(
    rules=rule_files(),
    lines=st.lists(cost_lines(), max_size=25),
    seed=st.randoms(use_true_random=False),
)
def test_a_period_sums_exactly_at_every_level_and_is_deterministic(
    rules: AllocationRules, lines: list[CostLine], seed: Any
) -> None:
    allocator = Allocator.for_lines(rules, lines)
    for line in lines:
        parts = allocator.split(line)
        assert parts and sum(part.amount for part in parts) == line.amount
    statement = allocator.statement()
    check_statement(statement, lines)
    shuffled = list(lines)
    seed.shuffle(shuffled)
    again = Allocator.for_lines(rules, shuffled)
    assert again.statement() == statement
    assert [again.split(line) for line in lines] == [allocator.split(line) for line in lines]


@given(rules=rule_files(), lines=st.lists(cost_lines(non_negative), max_size=25))
def test_non_negative_costs_never_give_a_negative_share(
    rules: AllocationRules, lines: list[CostLine]
) -> None:
    allocator = Allocator.for_lines(rules, lines)
    for line in lines:
        assert all(part.amount >= 0 for part in allocator.split(line))
    statement = allocator.statement()
    assert all(x.amount >= 0 and x.raw_amount >= 0 for x in statement.lines)
    assert all(total >= 0 for total in statement.owner_totals.values())


@given(
    pool=st.lists(non_negative, min_size=1, max_size=10),
    weights=positive_weights,
)
def test_statement_shares_are_within_one_cent_of_the_exact_proportion(
    pool: list[Decimal], weights: dict[str, Decimal]
) -> None:
    rules = allocation_rules_from_mapping(
        {"rules": [{"id": "p", "type": "proportional", "match": {}, "weights": weights}]}
    )
    lines = [CostLine({}, amount) for amount in pool]
    allocator = Allocator.for_lines(rules, lines)
    statement = allocator.statement()
    raw = exact(pool)
    total = exact(weights.values())
    for owner, weight in weights.items():
        share = raw * Fraction(weight) / total
        assert abs(Fraction(statement.owner_totals.get(owner, Decimal(0))) - share) < Fraction(CENT)
    # Splitting each event and summing per owner lands within 1e-18 per event of the raw.
    summed: dict[str, Fraction] = {}
    for line in lines:
        for part in allocator.split(line):
            summed[part.owner] = summed.get(part.owner, Fraction(0)) + Fraction(part.amount)
    for owner, amount in summed.items():
        gap = abs(amount - Fraction(statement.raw_owner_totals.get(owner, Decimal(0))))
        assert gap <= len(lines) * Fraction(FINE_QUANTUM)
