"""Policy file models and loading: valid rules, clear errors, selectors, content hash."""

from __future__ import annotations

import pickle
import textwrap
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from agent_finops.exceptions import ConfigurationError
from agent_finops.policy import (
    DEFAULT_FALLBACK_RESERVATION_USD,
    DEFAULT_MAX_OUTPUT_TOKENS,
    Budget,
    MandatoryTags,
    ModelCallBurstRule,
    PingPongRule,
    Policy,
    RateLimit,
    RepeatedToolCallRule,
    TagSelector,
    load_policy,
)

FULL_POLICY = """\
version: 1
timezone: "Europe/Paris"
fallback_reservation_usd: "0.50"
default_max_output_tokens: 4096
mandatory_tags:
  - when: {environment: production}
    require: [team, project, cost_center]
budgets:
  - id: support-daily
    scope: {team: support}
    limit: "25.00"
    unit: usd
    period: daily
    thresholds: [50, 80, 90]
    action: deny
    exempt_critical: true
    shadow: false
  - id: spend-2h
    scope: {}
    limit: "10"
    period: rolling
    window: "2h"
  - id: run-cap
    limit: "2.00"
    period: run
    action: pause
  - id: task-cap
    scope: {team: "*"}
    limit: "100000"
    unit: tokens
    period: task
rate_limits:
  - id: agent-rpm
    scope: {agent: "*"}
    window: "1m"
    max_calls: 60
    action: deny
    shadow: false
  - id: team-spend-rate
    scope: {team: "*"}
    window: "30m"
    max_usd: "5"
    action: warn
loops:
  - id: same-tool
    kind: repeated_tool_call
    max_repeats: 3
    action: deny
  - id: burst
    kind: model_call_burst
    max_calls: 20
    window: "10s"
  - id: ping-pong
    kind: ping_pong
    max_cycles: 3
    action: pause
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(FULL_POLICY)
    return path


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# -- valid policies ---------------------------------------------------------------------


def test_full_example_loads(policy_file: Path) -> None:
    policy = load_policy(policy_file)

    assert policy.format_version == 1
    assert policy.tz == ZoneInfo("Europe/Paris")
    assert policy.fallback_reservation_usd == Decimal("0.50")
    assert isinstance(policy.fallback_reservation_usd, Decimal)
    assert policy.default_max_output_tokens == 4096
    assert [r.id for r in policy.rules] == [
        "support-daily",
        "spend-2h",
        "run-cap",
        "task-cap",
        "agent-rpm",
        "team-spend-rate",
        "same-tool",
        "burst",
        "ping-pong",
    ]

    daily = policy.budgets[0]
    assert daily.limit == Decimal("25.00") and isinstance(daily.limit, Decimal)
    assert daily.unit == "usd" and daily.period == "daily" and daily.window is None
    assert daily.thresholds == (Decimal(50), Decimal(80), Decimal(90))
    assert daily.exempt_critical is True and daily.shadow is False
    assert not daily.is_cost_cap
    assert policy.budgets[1].window == timedelta(hours=2)
    assert policy.budgets[2].is_cost_cap and policy.budgets[2].action == "pause"
    assert policy.budgets[3].unit == "tokens"

    rpm, spend_rate = policy.rate_limits
    assert (rpm.window, rpm.max_calls, rpm.max_usd) == (timedelta(minutes=1), 60, None)
    assert (rpm.unit, rpm.limit) == ("calls", Decimal(60))
    assert (spend_rate.unit, spend_rate.limit, spend_rate.action) == ("usd", Decimal(5), "warn")

    same, burst, ping = policy.loops
    assert isinstance(same, RepeatedToolCallRule) and same.max_repeats == 3
    assert isinstance(burst, ModelCallBurstRule) and burst.window == timedelta(seconds=10)
    assert burst.action == "deny"
    assert isinstance(ping, PingPongRule) and ping.max_cycles == 3 and ping.action == "pause"


def test_from_yaml_and_from_mapping_agree(policy_file: Path) -> None:
    import yaml

    assert Policy.from_yaml(policy_file) == load_policy(policy_file)
    assert Policy.from_mapping(yaml.safe_load(FULL_POLICY)) == load_policy(policy_file)


def test_defaults_for_an_empty_file(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, ""))
    assert policy.timezone == "UTC"
    assert policy.fallback_reservation_usd == DEFAULT_FALLBACK_RESERVATION_USD > 0
    assert policy.default_max_output_tokens == DEFAULT_MAX_OUTPUT_TOKENS
    assert policy.rules == ()


def test_unquoted_yaml_decimals_keep_their_written_value(tmp_path: Path) -> None:
    policy = load_policy(
        write(
            tmp_path, "budgets: [{id: b, limit: 0.1, period: daily}]\nfallback_reservation_usd: 0.3"
        )
    )
    assert policy.budgets[0].limit == Decimal("0.1")
    assert policy.fallback_reservation_usd == Decimal("0.3")


def test_models_are_frozen_and_hashable(policy_file: Path) -> None:
    policy = load_policy(policy_file)
    with pytest.raises(ValidationError):
        policy.budgets[0].limit = Decimal(1)  # type: ignore[misc]
    assert hash(policy) == hash(load_policy(policy_file))
    assert len({*policy.budgets, *policy.budgets}) == len(policy.budgets)


def test_python_construction_is_keyword_only_and_validated() -> None:
    budget = Budget(id="b", limit=Decimal("1"), period="daily", scope=TagSelector({"team": "x"}))
    assert budget.scope.key({"team": "x"}) == "team=x"
    with pytest.raises(ValidationError):
        Budget(id="b", limit=Decimal("-1"), period="daily")


def test_json_dump_spells_windows_like_the_file(policy_file: Path) -> None:
    dumped = load_policy(policy_file).model_dump(mode="json", by_alias=True)
    assert dumped["version"] == 1
    assert dumped["budgets"][1]["window"] == "2h"
    assert dumped["budgets"][0]["limit"] == "25.00"
    assert dumped["loops"][1]["window"] == "10s"


def test_get_rule(policy_file: Path) -> None:
    policy = load_policy(policy_file)
    assert isinstance(policy.get_rule("agent-rpm"), RateLimit)
    with pytest.raises(KeyError):
        policy.get_rule("nope")


# -- errors: file, rule id, field, value, expected ----------------------------------------

BUDGET = {"id": "support-daily", "limit": "25", "period": "daily"}


def with_budget(**changes: Any) -> dict[str, Any]:
    budget = {**BUDGET, **changes}
    return {"version": 1, "budgets": [{k: v for k, v in budget.items() if v is not None}]}


INVALID: list[tuple[str, dict[str, Any], str | None, str, object, str]] = [
    # (case, data, rule id, field, value, part of the expected text)
    (
        "negative limit",
        with_budget(limit="-3"),
        "support-daily",
        "budgets[0].limit",
        "-3",
        "a positive decimal",
    ),
    (
        "zero limit",
        with_budget(limit="0"),
        "support-daily",
        "budgets[0].limit",
        "0",
        "a positive decimal",
    ),
    (
        "limit not a number",
        with_budget(limit="lots"),
        "support-daily",
        "budgets[0].limit",
        "lots",
        "a decimal number",
    ),
    ("limit NaN", with_budget(limit="NaN"), "support-daily", "budgets[0].limit", "NaN", "finite"),
    (
        "fractional tokens",
        with_budget(limit="1.5", unit="tokens"),
        "support-daily",
        "budgets[0].limit",
        "1.5",
        "a whole number of tokens",
    ),
    (
        "missing limit",
        with_budget(limit=None),
        "support-daily",
        "budgets[0].limit",
        None,
        "this key to be set",
    ),
    (
        "unknown budget key",
        with_budget(limt="3"),
        "support-daily",
        "budgets[0].limt",
        "3",
        "one of the keys id, scope, unit, limit",
    ),
    (
        "bad unit",
        with_budget(unit="eur"),
        "support-daily",
        "budgets[0].unit",
        "eur",
        "'usd', 'tokens' or 'calls'",
    ),
    (
        "bad period",
        with_budget(period="fortnightly"),
        "support-daily",
        "budgets[0].period",
        "fortnightly",
        "'rolling'",
    ),
    (
        "bad action",
        with_budget(action="explode"),
        "support-daily",
        "budgets[0].action",
        "explode",
        "'deny', 'pause' or 'warn'",
    ),
    (
        "rolling without window",
        with_budget(period="rolling"),
        "support-daily",
        "budgets[0].window",
        None,
        "required when period is 'rolling'",
    ),
    (
        "window on a daily budget",
        with_budget(window="2h"),
        "support-daily",
        "budgets[0].window",
        "2h",
        "only for period 'rolling'",
    ),
    (
        "bad window",
        with_budget(period="rolling", window="2 hours"),
        "support-daily",
        "budgets[0].window",
        "2 hours",
        "'90s', '30m', '2h' or '7d'",
    ),
    (
        "zero window",
        with_budget(period="rolling", window="0m"),
        "support-daily",
        "budgets[0].window",
        "0m",
        "'90s', '30m', '2h' or '7d'",
    ),
    (
        "thresholds not ascending",
        with_budget(thresholds=[80, 50, 90]),
        "support-daily",
        "budgets[0].thresholds",
        [80, 50, 90],
        "strictly ascending",
    ),
    (
        "repeated threshold",
        with_budget(thresholds=[50, 50]),
        "support-daily",
        "budgets[0].thresholds",
        [50, 50],
        "strictly ascending",
    ),
    (
        "threshold of 100",
        with_budget(thresholds=[50, 100]),
        "support-daily",
        "budgets[0].thresholds[1]",
        100,
        "between 0 and 100",
    ),
    (
        "threshold of 0",
        with_budget(thresholds=[0]),
        "support-daily",
        "budgets[0].thresholds[0]",
        0,
        "between 0 and 100",
    ),
    (
        "empty selector value",
        with_budget(scope={"team": ""}),
        "support-daily",
        "budgets[0].scope.team",
        "",
        "'*' for any value",
    ),
    (
        "bad selector key",
        with_budget(scope={"my team": "x"}),
        "support-daily",
        "budgets[0].scope.my team",
        "my team",
        "a name of letters",
    ),
    (
        "selector value not a string",
        with_budget(scope={"tier": 1}),
        "support-daily",
        "budgets[0].scope.tier",
        1,
        "a string",
    ),
    (
        "bad rule id",
        with_budget(id="support daily!"),
        "support daily!",
        "budgets[0].id",
        "support daily!",
        "an id of letters",
    ),
    (
        "missing id",
        {"budgets": [{"limit": "1", "period": "daily"}]},
        None,
        "budgets[0].id",
        None,
        "this key to be set",
    ),
    (
        "exempt_critical not a bool",
        with_budget(exempt_critical="maybe"),
        "support-daily",
        "budgets[0].exempt_critical",
        "maybe",
        "true or false",
    ),
    # rate limits
    (
        "rate limit without a limit",
        {"rate_limits": [{"id": "rpm", "window": "1m"}]},
        "rpm",
        "rate_limits[0].max_usd",
        None,
        "exactly one of max_calls or max_usd",
    ),
    (
        "rate limit with two limits",
        {"rate_limits": [{"id": "rpm", "window": "1m", "max_calls": 3, "max_usd": "1"}]},
        "rpm",
        "rate_limits[0].max_usd",
        "1",
        "exactly one of max_calls or max_usd",
    ),
    (
        "rate limit pauses",
        {"rate_limits": [{"id": "rpm", "window": "1m", "max_calls": 3, "action": "pause"}]},
        "rpm",
        "rate_limits[0].action",
        "pause",
        "cannot pause",
    ),
    (
        "rate limit of zero calls",
        {"rate_limits": [{"id": "rpm", "window": "1m", "max_calls": 0}]},
        "rpm",
        "rate_limits[0].max_calls",
        0,
        "greater than 0",
    ),
    (
        "rate limit of fractional calls",
        {"rate_limits": [{"id": "rpm", "window": "1m", "max_calls": 2.5}]},
        "rpm",
        "rate_limits[0].max_calls",
        2.5,
        "a whole number",
    ),
    (
        "rate limit without window",
        {"rate_limits": [{"id": "rpm", "max_calls": 3}]},
        "rpm",
        "rate_limits[0].window",
        None,
        "this key to be set",
    ),
    # loops
    (
        "repeats of one",
        {"loops": [{"id": "same", "kind": "repeated_tool_call", "max_repeats": 1}]},
        "same",
        "loops[0].max_repeats",
        1,
        "at least 2",
    ),
    (
        "burst without window",
        {"loops": [{"id": "b", "kind": "model_call_burst", "max_calls": 3}]},
        "b",
        "loops[0].window",
        None,
        "this key to be set",
    ),
    (
        "ping-pong unknown key",
        {"loops": [{"id": "pp", "kind": "ping_pong", "max_cycles": 3, "window": "1m"}]},
        "pp",
        "loops[0].window",
        "1m",
        "one of the keys kind, id, max_cycles, action, shadow",
    ),
    (
        "unknown loop kind",
        {"loops": [{"id": "l", "kind": "spiral"}]},
        "l",
        "loops[0].kind",
        "spiral",
        "'repeated_tool_call', 'model_call_burst', 'ping_pong'",
    ),
    (
        "loop without kind",
        {"loops": [{"id": "l"}]},
        "l",
        "loops[0].kind",
        None,
        "'repeated_tool_call'",
    ),
    # file level
    (
        "duplicate id across sections",
        {
            "budgets": [BUDGET],
            "loops": [{"id": "support-daily", "kind": "ping_pong", "max_cycles": 2}],
        },
        "support-daily",
        "loops[0].id",
        "support-daily",
        "already used by budgets[0]",
    ),
    (
        "duplicate id in one section",
        {"budgets": [BUDGET, BUDGET]},
        "support-daily",
        "budgets[1].id",
        "support-daily",
        "already used by budgets[0]",
    ),
    (
        "bad timezone",
        {"timezone": "Mars/Olympus_Mons"},
        None,
        "timezone",
        "Mars/Olympus_Mons",
        "an IANA time zone",
    ),
    ("future format", {"version": 2}, None, "version", 2, "1"),
    (
        "zero fallback",
        {"fallback_reservation_usd": "0"},
        None,
        "fallback_reservation_usd",
        "0",
        "a positive decimal",
    ),
    ("unknown top-level key", {"budget": []}, None, "budget", [], "one of the keys version"),
    (
        "empty mandatory tag list",
        {"mandatory_tags": [{"require": []}]},
        None,
        "mandatory_tags[0].require",
        [],
        "at least 1",
    ),
    (
        "repeated mandatory tag",
        {"mandatory_tags": [{"require": ["team", "team"]}]},
        None,
        "mandatory_tags[0].require",
        ["team", "team"],
        "without repeats",
    ),
]


@pytest.mark.parametrize(
    ("data", "rule_id", "field", "value", "expected"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_policy_error_names_file_rule_field_value(
    tmp_path: Path,
    data: dict[str, Any],
    rule_id: str | None,
    field: str,
    value: object,
    expected: str,
) -> None:
    import yaml

    path = write(tmp_path, yaml.safe_dump(data), name="team-policy.yaml")
    with pytest.raises(ConfigurationError) as caught:
        load_policy(path)
    err = caught.value
    text = str(err)
    assert text.startswith(f"{path}: ")
    assert err.source == str(path)
    assert err.field == field and f"field {field!r}" in text
    assert err.value == value
    if value is not None:
        assert f"got {value!r}" in text
    assert err.expected is not None and expected in err.expected and expected in text
    if rule_id is not None:
        assert f"rule {rule_id!r}" in text
    else:
        assert "rule '" not in text


def test_example_message_from_the_brief(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        budgets:
          - id: support-daily
            limit: "-3"
            period: daily
        """,
    )
    with pytest.raises(ConfigurationError) as caught:
        load_policy(path)
    assert str(caught.value) == (
        f"{path}: rule 'support-daily': invalid value "
        "(field 'budgets[0].limit', got '-3', expected a positive decimal)"
    )


def test_from_mapping_names_its_source() -> None:
    with pytest.raises(ConfigurationError, match=r"^inline: .*field 'timezone'"):
        Policy.from_mapping({"timezone": "Nowhere/Land"}, source="inline")


def test_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="expected a mapping"):
        load_policy(write(tmp_path, "- just\n- a list\n"))


def test_repeated_yaml_key_is_an_error_not_a_silent_overwrite(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        budgets:
          - {id: a, limit: "1", period: daily}
        budgets:
          - {id: b, limit: "1", period: daily}
        """,
    )
    with pytest.raises(ConfigurationError) as caught:
        load_policy(path)
    assert str(path) in str(caught.value)
    assert "line 3" in str(caught.value) and caught.value.field == "budgets"


def test_yaml_merge_keys_still_work(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        base: &base {limit: "1", period: daily}
        """,
    )
    # `base` is not a policy key, but the merge itself must not be flagged as a repeat.
    with pytest.raises(ConfigurationError, match="unknown key"):
        load_policy(path)
    path = write(
        tmp_path,
        """\
        budgets:
          - &b {id: a, limit: "1", period: daily}
          - {<<: *b, id: b, limit: "2"}
        """,
    )
    assert [b.limit for b in load_policy(path).budgets] == [Decimal(1), Decimal(2)]


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="invalid YAML"):
        load_policy(write(tmp_path, "budgets: [\n"))
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigurationError, match=r"nope\.yaml: cannot read policy file"):
        load_policy(missing)


def test_policy_errors_pickle() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Policy.from_mapping(with_budget(limit="-3"), source="p.yaml")
    clone = pickle.loads(pickle.dumps(caught.value))
    assert str(clone) == str(caught.value)
    assert (clone.field, clone.value) == ("budgets[0].limit", "-3")


# -- selectors and scopes ---------------------------------------------------------------


def test_selector_fixed_values() -> None:
    selector = TagSelector({"team": "support", "environment": "production"})
    tags = {"team": "support", "environment": "production", "agent": "a"}
    assert selector.matches(tags)
    assert selector.key(tags) == "environment=production,team=support"
    assert selector.scope(tags) == {"environment": "production", "team": "support"}
    assert not selector.matches({"team": "support"})
    assert not selector.matches({"team": "sales", "environment": "production"})
    assert selector.key({"team": "sales"}) is None


def test_selector_wildcard_gives_one_scope_per_value() -> None:
    selector = TagSelector({"agent": "*"})
    assert selector.key({"agent": "researcher"}) == "agent=researcher"
    assert selector.key({"agent": "writer", "team": "x"}) == "agent=writer"
    assert selector.key({"team": "x"}) is None
    assert selector.key({"agent": ""}) is None


def test_empty_selector_matches_everything() -> None:
    selector = TagSelector.everything()
    assert selector.matches({}) and selector.key({}) == "*"
    assert selector.key({"team": "x"}) == "*"


def test_selector_key_escapes_separators() -> None:
    selector = TagSelector({"task": "*"})
    assert selector.key({"task": "a,b=c|d%"}) == "task=a%2Cb%3Dc%7Cd%25"


def test_task_cap_without_a_task_tag_caps_the_run_or_skips_it() -> None:
    cap = Budget(id="task-cap", limit=Decimal(1), period="task", scope=TagSelector({"team": "*"}))
    now = datetime(2026, 11, 22, tzinfo=UTC)
    tz = ZoneInfo("UTC")
    # Default `without_task: run`: an untagged call is capped as its run's task, never skipped.
    assert cap.counter_key({"team": "support"}, now=now, tz=tz, run_id="r1") == (
        "task-cap|team=support|run=r1"
    )
    tags = {"team": "support", "task": "ticket-42"}
    assert (
        cap.counter_key(tags, now=now, tz=tz, run_id="r1") == "task-cap|team=support|task=ticket-42"
    )
    skip = cap.model_copy(update={"without_task": "skip"})
    assert skip.scope_key({"team": "support"}) is None
    assert skip.counter_key({"team": "support"}, now=now, tz=tz, run_id="r1") is None


def test_budget_and_rate_limit_counter_keys(policy_file: Path) -> None:
    policy = load_policy(policy_file)
    now = datetime(2026, 11, 22, 15, 10, tzinfo=UTC)
    tags = {"team": "support", "agent": "researcher"}
    daily, rolling, run_cap, _ = policy.budgets
    assert daily.counter_key(tags, now=now, tz=policy.tz) == "support-daily|team=support|2026-11-22"
    assert daily.counter_key({"team": "sales"}, now=now, tz=policy.tz) is None
    assert rolling.counter_key(tags, now=now, tz=policy.tz) == "spend-2h|*|2026-11-22T14:00:00Z/2h"
    assert run_cap.counter_key(tags, now=now, tz=policy.tz, run_id="r1") == "run-cap|*|run=r1"
    rpm = policy.rate_limits[0]
    assert rpm.counter_key(tags, now=now, tz=policy.tz) == (
        "agent-rpm|agent=researcher|2026-11-22T15:10:00Z/1m"
    )
    assert rpm.counter_key({"team": "x"}, now=now, tz=policy.tz) is None


def test_exempt_critical_downgrades_to_warn(policy_file: Path) -> None:
    policy = load_policy(policy_file)
    daily, _, run_cap, _ = policy.budgets
    assert daily.effective_action({"team": "support"}) == "deny"
    assert daily.effective_action({"team": "support", "critical": "true"}) == "warn"
    assert daily.effective_action({"team": "support", "critical": "True"}) == "warn"
    assert daily.effective_action({"team": "support", "critical": "false"}) == "deny"
    assert run_cap.effective_action({"critical": "true"}) == "pause"  # not exempt


def test_crossed_thresholds(policy_file: Path) -> None:
    daily = load_policy(policy_file).budgets[0]  # 25.00 at 50/80/90 %
    assert daily.crossed_thresholds(Decimal("0"), Decimal("12.49")) == ()
    assert daily.crossed_thresholds(Decimal("12.49"), Decimal("12.50")) == (Decimal(50),)
    assert daily.crossed_thresholds(Decimal("12.50"), Decimal("23")) == (Decimal(80), Decimal(90))
    assert daily.crossed_thresholds(Decimal("23"), Decimal("30")) == ()


def test_mandatory_tags(policy_file: Path) -> None:
    policy = load_policy(policy_file)
    assert policy.missing_tags({"environment": "staging"}) == ()
    assert policy.missing_tags({"environment": "production", "team": "x"}) == (
        "project",
        "cost_center",
    )
    always = MandatoryTags(require=("team",))
    assert always.missing({}) == ("team",)
    assert always.missing({"team": ""}) == ("team",)
    both = Policy(
        mandatory_tags=(
            MandatoryTags(require=("team", "project")),
            MandatoryTags(require=("team",)),
        )
    )
    assert both.missing_tags({}) == ("team", "project")


# -- content hash -------------------------------------------------------------------------


def test_version_is_a_short_stable_hash(policy_file: Path) -> None:
    version = load_policy(policy_file).version
    assert len(version) == 16 and int(version, 16) >= 0
    assert load_policy(policy_file).version == version


def test_version_ignores_key_order_and_spelling(tmp_path: Path) -> None:
    a = write(
        tmp_path,
        """\
        version: 1
        timezone: Europe/Paris
        budgets:
          - {id: b, scope: {team: support, agent: "*"}, limit: "25.00", period: rolling,
             window: 60m, thresholds: [50, 80]}
        """,
        name="a.yaml",
    )
    b = write(
        tmp_path,
        """\
        budgets:
          - thresholds: [50.0, 80]
            window: 1h
            period: rolling
            limit: 25
            scope: {agent: "*", team: support}
            id: b
            shadow: false
            action: deny
        timezone: Europe/Paris
        """,
        name="b.yaml",
    )
    assert load_policy(a).version == load_policy(b).version


def test_version_changes_with_a_limit() -> None:
    low = Policy.from_mapping(with_budget(limit="25"))
    high = Policy.from_mapping(with_budget(limit="25.01"))
    assert low.version != high.version
    assert Policy.from_mapping(with_budget(limit="25.0")).version == low.version
    shadow = Policy.from_mapping(with_budget(shadow=True))
    assert shadow.version != low.version
