"""Allocation rules with known answers: every rule type, rounding, tie-breaks, YAML errors."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import agent_finops.allocation as allocation
from agent_finops import ConfigurationError
from agent_finops.allocation import (
    DEFAULT_UNALLOCATED_OWNER,
    DIRECT_RULE,
    Allocation,
    AllocationRules,
    Allocator,
    CostLine,
    PeriodTotals,
    allocate,
    allocation_rules_from_mapping,
    load_allocation_rules,
    measure_period,
    split_amount,
)

D = Decimal
UNALLOCATED = DEFAULT_UNALLOCATED_OWNER


def rules(*rule: dict[str, Any], **top: Any) -> AllocationRules:
    return allocation_rules_from_mapping({"rules": list(rule), **top}, source="rules.yaml")


def line(amount: str, bucket: str | None = None, **tags: str) -> CostLine:
    return CostLine(tags, D(amount), bucket)


def by_owner(parts: list[Allocation]) -> dict[str, Decimal]:
    return {part.owner: part.amount for part in parts}


USAGE = [line("30", team="a"), line("10", team="b"), line("10", team="c")]
"""Direct usage 30 / 10 / 10: shares 3/5, 1/5, 1/5."""


# -- every rule type ------------------------------------------------------------------------


def test_fixed_rule_sends_everything_to_one_owner() -> None:
    r = rules({"id": "platform", "type": "fixed", "match": {"project": "platform"}, "to": "p"})
    cost = line("7.77", project="platform", team="a")
    assert Allocator.for_lines(r, [cost]).split(cost) == [
        Allocation("p", D("7.77"), "platform", "fixed")
    ]


def test_proportional_by_fixed_weights() -> None:
    r = rules(
        {"id": "search", "type": "proportional", "match": {"project": "search"},
         "weights": {"team-a": 3, "team-b": 1}}
    )  # fmt: skip
    cost = line("10", project="search")
    parts = Allocator.for_lines(r, [cost]).split(cost)
    assert by_owner(parts) == {"team-a": D("7.5"), "team-b": D("2.5")}
    assert {(p.rule_id, p.source) for p in parts} == {("search", "proportional")}


def test_fractional_weights_from_yaml_floats_and_strings() -> None:
    r = rules({"id": "w", "type": "proportional", "match": {}, "weights": {"a": 0.75, "b": "0.25"}})
    assert by_owner(Allocator(r, PeriodTotals()).split(line("4"))) == {"a": D(3), "b": D(1)}


def test_proportional_by_direct_usage_among_some_owners() -> None:
    r = rules(
        {"id": "kb", "type": "proportional", "match": {"project": "kb"}, "by": "direct_usage",
         "among": ["a", "b", "d"]}
    )  # fmt: skip
    cost = line("8", project="kb")
    allocator = Allocator.for_lines(r, [*USAGE, cost])
    # a:b = 30:10; c is not among; d is among but used nothing.
    assert by_owner(allocator.split(cost)) == {"a": D(6), "b": D(2)}


def test_proportional_by_direct_usage_of_every_owner_by_default() -> None:
    r = rules(
        {"id": "kb", "type": "proportional", "match": {"project": "kb"}, "by": "direct_usage"}
    )
    cost = line("10", project="kb")
    parts = Allocator.for_lines(r, [*USAGE, cost]).split(cost)
    assert by_owner(parts) == {"a": D(6), "b": D(2), "c": D(2)}


def test_shared_pool_spreads_shared_agents_by_direct_usage() -> None:
    r = rules({"id": "guards", "type": "shared_pool", "match": {"agent": ["guardrail", "router"]}})
    guard, route, other = (
        line("5", agent="guardrail"),
        line("5", agent="router"),
        line("1", agent="x"),
    )
    allocator = Allocator.for_lines(r, [*USAGE, guard, route])
    assert by_owner(allocator.split(guard)) == {"a": D(3), "b": D(1), "c": D(1)}
    assert {p.source for p in allocator.split(route)} == {"shared_pool"}
    assert allocator.split(other) == [Allocation(UNALLOCATED, D(1), DIRECT_RULE, "untagged")]


def test_usage_rule_with_no_usage_goes_to_the_unallocated_owner() -> None:
    r = rules({"id": "guards", "type": "shared_pool", "match": {"agent": "guardrail"}})
    cost = line("5", agent="guardrail")
    assert Allocator.for_lines(r, [cost]).split(cost) == [
        Allocation(UNALLOCATED, D(5), "guards", "no_usage")
    ]


def test_owners_with_a_net_refund_get_no_usage_share() -> None:
    r = rules({"id": "guards", "type": "shared_pool", "match": {"agent": "guardrail"}})
    cost = line("4", agent="guardrail")
    usage = [line("3", team="a"), line("-5", team="b"), line("1", team="c")]
    assert by_owner(Allocator.for_lines(r, [*usage, cost]).split(cost)) == {"a": D(3), "c": D(1)}


HYBRID = {
    "id": "gateway", "type": "hybrid", "match": {"agent": "gateway"},
    "base_fee": {"a": "100.00", "b": "50.00"}, "by": "direct_usage",
}  # fmt: skip


def test_hybrid_base_fees_then_the_rest_by_usage() -> None:
    r = rules(HYBRID)
    cost = line("200", agent="gateway")
    allocator = Allocator.for_lines(r, [*USAGE, cost])
    # 150 of fees, the other 50 by usage 30:10:10 = 30/10/10.
    assert by_owner(allocator.split(cost)) == {"a": D(130), "b": D(60), "c": D(10)}
    # Each event of the pool is split in the same proportions.
    assert by_owner(allocator.split(line("20", agent="gateway"))) == {
        "a": D(13), "b": D(6), "c": D(1)
    }  # fmt: skip


def test_hybrid_rest_by_weights() -> None:
    r = rules({**{k: v for k, v in HYBRID.items() if k != "by"}, "weights": {"c": 1}})
    cost = line("200", agent="gateway")
    parts = Allocator.for_lines(r, [cost]).split(cost)
    assert by_owner(parts) == {"a": D(100), "b": D(50), "c": D(50)}


def test_hybrid_pool_smaller_than_the_fees_is_split_in_proportion_to_them() -> None:
    r = rules(HYBRID)
    cost = line("90", agent="gateway")
    statement = allocate(r, [*USAGE, cost])
    assert {(x.owner, x.amount) for x in statement.lines if x.rule_id == "gateway"} == {
        ("a", D("60.00")), ("b", D("30.00"))
    }  # fmt: skip
    assert statement.raw_rule_totals["gateway"] == D(90)


def test_hybrid_pool_equal_to_the_fees_and_empty_pool() -> None:
    r = rules(HYBRID)
    exact = allocate(r, [line("150", agent="gateway")])
    assert dict(exact.owner_totals) == {"a": D("100.00"), "b": D("50.00")}
    refund = line("-3", agent="gateway")  # a negative pool: in proportion to the fees
    assert by_owner(Allocator.for_lines(r, [refund]).split(refund)) == {"a": D(-2), "b": D(-1)}
    assert allocate(r, []).lines == ()


def test_hybrid_rest_with_no_usage_goes_to_the_unallocated_owner() -> None:
    r = rules(HYBRID)
    cost = line("160", agent="gateway")
    parts = Allocator.for_lines(r, [cost]).split(cost)
    assert {(p.owner, p.amount, p.source) for p in parts} == {
        ("a", D(100), "hybrid"), ("b", D(50), "hybrid"), (UNALLOCATED, D(10), "no_usage")
    }  # fmt: skip


# -- matching -------------------------------------------------------------------------------


def test_first_matching_rule_wins_and_unmatched_lines_are_direct() -> None:
    r = rules(
        {"id": "one", "type": "fixed", "match": {"project": "p"}, "to": "x"},
        {"id": "two", "type": "fixed", "match": {"project": "p"}, "to": "y"},
    )
    allocator = Allocator(r, PeriodTotals())
    assert allocator.split(line("1", project="p"))[0].rule_id == "one"
    assert allocator.split(line("1", project="q", team="a")) == [
        Allocation("a", D(1), DIRECT_RULE, "direct")
    ]
    assert allocator.split(line("1", team="")) == [
        Allocation(UNALLOCATED, D(1), DIRECT_RULE, "untagged")
    ]


def test_match_by_all_tags_value_lists_any_value_and_bucket() -> None:
    r = rules(
        {"id": "tools", "type": "fixed", "match": {"project": ["p", "q"], "agent": "*"},
         "bucket": ["tools", "compute"], "to": "x"}
    )  # fmt: skip
    picked = r.rule_for
    assert picked(line("1", "tools", project="q", agent="any")) is not None
    assert picked(line("1", "compute", project="p", agent="z")) is not None
    assert picked(line("1", "tokens", project="p", agent="z")) is None  # other bucket
    assert picked(line("1", None, project="p", agent="z")) is None  # no bucket
    assert picked(line("1", "tools", project="p")) is None  # agent not set
    assert picked(line("1", "tools", project="r", agent="z")) is None


def test_owner_tag_and_unallocated_owner_are_configurable() -> None:
    r = rules(
        {"id": "g", "type": "shared_pool", "match": {"agent": "g"}},
        owner="cost_center", unallocated="UNASSIGNED",
    )  # fmt: skip
    statement = allocate(r, [line("3", cost_center="cc1", team="a"), line("1", team="a")])
    assert dict(statement.owner_totals) == {"UNASSIGNED": D("1.00"), "cc1": D("3.00")}
    assert statement.owner_tag == "cost_center"


# -- the statement and its rounding ----------------------------------------------------------


def test_statement_worked_example_from_the_docs() -> None:
    r = rules(
        {"id": "search", "type": "proportional", "match": {"project": "search"},
         "weights": {"a": 1, "b": 1, "c": 1}}
    )  # fmt: skip
    cost = line("100.00", project="search")
    statement = allocate(r, [cost, line("0.005", team="a")])
    assert statement.raw_total == D("100.005")
    assert statement.total == D("100.00")  # half-even: ...0.005 goes to the even cent
    assert statement.rounding_difference == D("-0.005")
    # The pool at 1e-18: a 33.333333333333333334 (tie on remainders: a by name), b and c
    # 33.333333333333333333. Owners raw: a 33.338333..., b 33.333333..., c 33.333333...;
    # floors 33.33 each (99.99), one cent left: a has the largest remainder (0.8333 cent).
    assert dict(statement.raw_owner_totals) == {
        "a": D("33.338333333333333334"), "b": D("33.333333333333333333"), "c": D("33.333333333333333333")
    }  # fmt: skip
    assert dict(statement.owner_totals) == {"a": D("33.34"), "b": D("33.33"), "c": D("33.33")}
    # Within a: direct 0.005 (remainder 0.5 cent) beats search 33.3333... (0.3333 cent).
    a_lines = {(x.rule_id, x.amount) for x in statement.lines if x.owner == "a"}
    assert a_lines == {(DIRECT_RULE, D("0.01")), ("search", D("33.33"))}
    # A rule's rounded total is the sum of its rounded lines (here a cent under its pool).
    assert dict(statement.rule_totals) == {DIRECT_RULE: D("0.01"), "search": D("99.99")}
    assert dict(statement.raw_rule_totals) == {DIRECT_RULE: D("0.005"), "search": D("100")}


def test_a_rounding_tie_goes_to_the_larger_amount_then_the_owner_name() -> None:
    r = rules({"id": "x", "type": "fixed", "match": {"project": "never"}, "to": "z"})
    # Remainders 0.5 cent each; the total 0.030 rounds to 0.03; floors 0.02: one cent left.
    statement = allocate(
        r, [line("0.015", team="b"), line("0.005", team="c"), line("0.010", team="a")]
    )
    assert dict(statement.owner_totals) == {"a": D("0.01"), "b": D("0.02"), "c": D("0.00")}
    tie = allocate(r, [line("0.005", team="b"), line("0.005", team="a")])
    assert dict(tie.owner_totals) == {"a": D("0.01"), "b": D("0.00")}


def test_fine_split_tie_goes_to_the_larger_weight_then_the_owner_name() -> None:
    atto = D("1e-18")
    assert split_amount(atto, {"b": 1, "a": 1}) == {"a": atto, "b": D(0)}
    assert split_amount(atto, {"a": 1, "b": 2, "c": 1}) == {"a": D(0), "b": atto, "c": D(0)}
    three = split_amount(2 * atto, {"c": 1, "b": 1, "a": 1})
    assert three == {"a": atto, "b": atto, "c": D(0)}


def test_split_amount_at_cents() -> None:
    cents = D("0.01")
    assert split_amount(D("10.00"), {"a": 1, "b": 1, "c": 1}, quantum=cents) == {
        "a": D("3.34"), "b": D("3.33"), "c": D("3.33")
    }  # fmt: skip
    assert split_amount(D("-10.00"), {"a": 1, "b": 1, "c": 1}, quantum=cents) == {
        "a": D("-3.34"), "b": D("-3.33"), "c": D("-3.33")
    }  # fmt: skip
    with pytest.raises(ConfigurationError, match=r"multiple of 0\.01"):
        split_amount(D("10.005"), {"a": 1}, quantum=cents)
    with pytest.raises(ConfigurationError, match="no positive weight"):
        split_amount(D("1"), {"a": 0})
    with pytest.raises(ConfigurationError, match=r"weights\.a"):
        split_amount(D("1"), {"a": D(-1)})


def test_split_parts_sum_to_the_event_and_match_the_statement() -> None:
    r = rules(
        {
            "id": "thirds",
            "type": "proportional",
            "match": {"project": "p"},
            "weights": {"a": 1, "b": 1, "c": 1},
        }
    )
    events = [line("0.000001", project="p") for _ in range(3)]
    allocator = Allocator.for_lines(r, events)
    parts = allocator.split(events[0])
    assert sum(p.amount for p in parts) == D("0.000001")
    assert by_owner(parts) == {
        "a": D("0.000000333333333334"), "b": D("0.000000333333333333"), "c": D("0.000000333333333333")
    }  # fmt: skip
    raw = {x.owner: x.raw_amount for x in allocator.statement().lines}
    assert raw == {"a": D("0.000001"), "b": D("0.000001"), "c": D("0.000001")}


def test_statement_at_another_quantum() -> None:
    r = rules({"id": "x", "type": "fixed", "match": {"project": "never"}, "to": "z"}, rounding="1")
    statement = allocate(r, [line("2.5", team="a"), line("1.4", team="b")])
    assert statement.total == D(4) and dict(statement.owner_totals) == {"a": D(3), "b": D(1)}
    assert Allocator(r, measure_period(r, [])).statement(D("0.001")).quantum == D("0.001")


def test_period_totals_from_one_pass() -> None:
    r = rules(HYBRID)
    totals = measure_period(r, [*USAGE, line("5", agent="gateway"), line("2")])
    assert dict(totals.direct) == {"a": D(30), "b": D(10), "c": D(10)}
    assert dict(totals.pools) == {"gateway": D(5)} and totals.untagged == D(2)
    assert totals.total == D(57)


@pytest.mark.parametrize("amount", [D("NaN"), D("Infinity"), D("1e-19"), 0.5, "1"])
def test_an_amount_that_cannot_be_split_exactly_is_refused(amount: Any) -> None:
    r = rules({"id": "x", "type": "fixed", "match": {}, "to": "z"})
    bad = CostLine({}, amount, id="ev-1")
    with pytest.raises(ConfigurationError, match=r"cost line 'ev-1'.*field 'amount'"):
        Allocator(r, PeriodTotals()).split(bad)
    with pytest.raises(ConfigurationError, match="at most 18 decimal places"):
        measure_period(r, [bad])


def test_period_totals_from_the_database_are_checked() -> None:
    r = rules(HYBRID)
    with pytest.raises(ConfigurationError, match=r"period totals: .*field 'pools\.gone'"):
        Allocator(r, PeriodTotals(pools={"gone": D(5)}))
    with pytest.raises(ConfigurationError, match=r"field 'direct\.a', got Decimal\('1E-19'\)"):
        PeriodTotals(direct={"a": D("1e-19")})
    totals = PeriodTotals(direct={"a": D(30), "b": D(10)}, pools={"gateway": D(200)})
    statement = Allocator(r, totals).statement()
    assert dict(statement.owner_totals) == {"a": D("167.50"), "b": D("72.50")}


def test_statement_rounding_must_be_positive() -> None:
    r = rules({"id": "x", "type": "fixed", "match": {}, "to": "z"})
    with pytest.raises(ConfigurationError, match="field 'rounding'"):
        Allocator(r, PeriodTotals()).statement(D(0))


# -- the YAML file ----------------------------------------------------------------------------

EXAMPLE = """\
version: 1
owner: team
rounding: "0.01"
rules:
  - id: platform-fixed
    type: fixed
    match: {project: platform}
    to: platform-team
  - id: search-split
    type: proportional
    match: {project: search}
    weights: {team-a: 3, team-b: 1}
  - id: by-usage
    type: proportional
    match: {project: shared-kb}
    by: direct_usage
    among: [team-a, team-b]
  - id: hybrid-gateway
    type: hybrid
    match: {agent: gateway}
    base_fee: {team-a: "100.00", team-b: "50.00"}
    by: direct_usage
  - id: shared-guardrails
    type: shared_pool
    match: {agent: [guardrail, router]}
  - id: connector-fees
    type: fixed
    match: {}
    bucket: tools
    to: integrations
"""


def test_the_documented_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(EXAMPLE)
    loaded = load_allocation_rules(path)
    assert [rule.type for rule in loaded.rules] == [
        "fixed", "proportional", "proportional", "hybrid", "shared_pool", "fixed"
    ]  # fmt: skip
    assert loaded == AllocationRules.from_yaml(path)
    assert loaded.owner_tag == "team" and loaded.rounding == D("0.01")
    assert loaded.rules[5].selector.buckets == frozenset({"tools"})
    docs = Path(__file__).resolve().parents[1] / "docs" / "allocation.md"
    assert EXAMPLE in docs.read_text(), "docs/allocation.md shows this example verbatim"


def test_the_docs_snippet_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "allocation.md").read_text()
    snippet = text.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "rules.yaml").write_text(EXAMPLE)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(compile(snippet, "docs/allocation.md", "exec"), namespace)
    statement = namespace["statement"]
    assert dict(statement.owner_totals) == {"team-a": D("43.50"), "team-b": D("14.50")}


def test_defaults_when_the_file_names_none() -> None:
    r = rules({"id": "x", "type": "fixed", "match": {}, "to": "z"})
    assert (r.owner_tag, r.rounding, r.unallocated) == ("team", D("0.01"), UNALLOCATED)


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [
        ("rules: []", "rules", "[]"),
        ("rules: [{id: x, type: fixed, match: {}, to: a, extra: 1}]", "rules[0].extra", None),
        ("rules: [{id: x, type: fixd, match: {}}]", "rules[0].type", "'fixd'"),
        ("rules: [{id: x, match: {}}]", "rules[0].type", None),
        ("rules: [{type: fixed, match: {}, to: a}]", "rules[0].id", None),
        ("rules: [{id: 'bad id', type: fixed, match: {}, to: a}]", "rules[0].id", "'bad id'"),
        ("rules: [{id: x, type: fixed, to: a}]", "rules[0].match", None),
        ("rules: [{id: x, type: fixed, match: [a], to: a}]", "rules[0].match", "['a']"),
        (
            "rules: [{id: x, type: fixed, match: {'bad key': a}, to: a}]",
            "rules[0].match",
            "'bad key'",
        ),
        ("rules: [{id: x, type: fixed, match: {p: ''}, to: a}]", "rules[0].match.p", "''"),
        ("rules: [{id: x, type: fixed, match: {p: []}, to: a}]", "rules[0].match.p", "[]"),
        ("rules: [{id: x, type: fixed, match: {p: [a, 3]}, to: a}]", "rules[0].match.p[1]", "3"),
        (
            "rules: [{id: x, type: fixed, match: {}, bucket: gpu, to: a}]",
            "rules[0].bucket",
            "'gpu'",
        ),
        ("rules: [{id: x, type: fixed, match: {}}]", "rules[0].to", None),
        (
            "rules: [{id: x, type: fixed, match: {}, to: '(unallocated)'}]",
            "rules[0].to",
            "'(unallocated)'",
        ),
        ("rules: [{id: x, type: proportional, match: {}}]", "rules[0].weights", None),
        (
            "rules: [{id: x, type: proportional, match: {}, weights: {a: -3}}]",
            "rules[0].weights.a",
            "-3",
        ),
        (
            "rules: [{id: x, type: proportional, match: {}, weights: {a: 0}}]",
            "rules[0].weights.a",
            "0",
        ),
        (
            "rules: [{id: x, type: proportional, match: {}, weights: {a: .nan}}]",
            "rules[0].weights.a",
            "nan",
        ),
        (
            "rules: [{id: x, type: proportional, match: {}, weights: {a: true}}]",
            "rules[0].weights.a",
            "True",
        ),
        (
            "rules: [{id: x, type: proportional, match: {}, weights: {a: '1e-19'}}]",
            "rules[0].weights.a",
            "'1e-19'",
        ),
        (
            "rules: [{id: x, type: proportional, match: {}, weights: {a: 1.0e+16}}]",
            "rules[0].weights.a",
            "1e+16",
        ),
        ("rules: [{id: x, type: proportional, match: {}, weights: {}}]", "rules[0].weights", "{}"),
        (
            "rules: [{id: x, type: proportional, match: {}, weights: {a: 1}, by: direct_usage}]",
            "rules[0].by",
            "'direct_usage'",
        ),
        (
            "rules: [{id: x, type: proportional, match: {}, weights: {a: 1}, among: [a]}]",
            "rules[0].among",
            "['a']",
        ),
        (
            "rules: [{id: x, type: proportional, match: {}, by: weights}]",
            "rules[0].by",
            "'weights'",
        ),
        (
            "rules: [{id: x, type: shared_pool, match: {}, among: [a, a]}]",
            "rules[0].among",
            "['a', 'a']",
        ),
        ("rules: [{id: x, type: shared_pool, match: {}, among: []}]", "rules[0].among", "[]"),
        ("rules: [{id: x, type: shared_pool, match: {}, to: a}]", "rules[0].to", None),
        ("rules: [{id: x, type: hybrid, match: {}, by: direct_usage}]", "rules[0].base_fee", None),
        (
            "rules: [{id: x, type: hybrid, match: {}, base_fee: {a: 'ten'}, by: direct_usage}]",
            "rules[0].base_fee.a",
            "'ten'",
        ),
        (
            "rules: [{id: x, type: shared_pool, match: {}}, {id: x, type: shared_pool, match: {}}]",
            "rules[1].id",
            "'x'",
        ),
        ("version: 2\nrules: [{id: x, type: shared_pool, match: {}}]", "version", "2"),
        ("rounding: '0'\nrules: [{id: x, type: shared_pool, match: {}}]", "rounding", "'0'"),
        ("owner: 'a b'\nrules: [{id: x, type: shared_pool, match: {}}]", "owner", "'a b'"),
        ("unallocated: ''\nrules: [{id: x, type: shared_pool, match: {}}]", "unallocated", "''"),
        ("rule: []", "rule", None),
        ("owner: team", "rules", None),
        ("rules: [x]", "rules[0]", "'x'"),
        ("- x", "<file>", "['x']"),
    ],
)
def test_each_error_names_the_file_the_field_and_the_value(
    tmp_path: Path, text: str, field: str, value: str | None
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as caught:
        load_allocation_rules(path)
    error = caught.value
    message = str(error)
    assert message.startswith(f"{path}: "), message
    assert error.source == str(path) and error.field == field, message
    assert f"(field {field!r}" in message and "expected " in message, message
    if value is not None:
        assert f"got {value}" in message, message
    assert error.expected, message


def test_errors_inside_a_rule_name_the_rule() -> None:
    with pytest.raises(ConfigurationError, match=r"rules.yaml: rule 'search': invalid value"):
        rules({"id": "search", "type": "proportional", "match": {}, "weights": {"a": -1}})


def test_unknown_key_error_lists_the_keys_of_that_rule_type() -> None:
    with pytest.raises(ConfigurationError) as caught:
        rules({"id": "x", "type": "fixed", "match": {}, "to": "a", "weights": {"a": 1}})
    assert caught.value.expected == "one of the keys bucket, id, match, to, type"


def test_broken_yaml_and_repeated_keys_are_configuration_errors(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules: [")
    with pytest.raises(ConfigurationError, match="invalid YAML"):
        load_allocation_rules(path)
    path.write_text("rules: []\nrules: []\n")
    with pytest.raises(ConfigurationError, match="key repeated on line 2"):
        load_allocation_rules(path)
    with pytest.raises(ConfigurationError, match="cannot read file"):
        load_allocation_rules(tmp_path / "missing.yaml")
    path.write_text("")
    with pytest.raises(ConfigurationError, match="field 'rules'"):
        load_allocation_rules(path)


def test_the_package_exports_only_public_names() -> None:
    assert len(allocation.__all__) == len(set(allocation.__all__))
    public = {n for n in dir(allocation) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(allocation, n)).__name__ == "module"}
    assert set(allocation.__all__) == public - modules
