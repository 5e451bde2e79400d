"""The policy file as typed, frozen pydantic models: budgets, cost caps, rate limits, loops.

A policy only *describes* limits; it never counts. Counting lives in a separate
accumulator, and an engine combines the two at each check (see STYLE.md item 5).

```yaml
version: 1
timezone: Europe/Paris
budgets:
  - {id: support-daily, scope: {team: support}, limit: "25.00", period: daily}
  - {id: run-cap, limit: "2.00", period: run, action: pause}
rate_limits:
  - {id: agent-rpm, scope: {agent: "*"}, window: 1m, max_calls: 60}
loops:
  - {id: same-tool, kind: repeated_tool_call, max_repeats: 3}
```
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cached_property
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    RootModel,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from agent_finops.attribution import validate_tags
from agent_finops.exceptions import ConfigurationError
from agent_finops.policy._periods import (
    MAX_WINDOW,
    PeriodKind,
    counter_key,
    escape_key_part,
    format_duration,
    parse_duration,
)

__all__ = [
    "CRITICAL_TAG",
    "DEFAULT_FALLBACK_RESERVATION_USD",
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "DEFAULT_TIMEZONE",
    "POLICY_FORMAT_VERSION",
    "Action",
    "Budget",
    "LoopKind",
    "LoopRule",
    "MandatoryTags",
    "ModelCallBurstRule",
    "PeriodKind",
    "PingPongRule",
    "Policy",
    "RateLimit",
    "RateLimitAction",
    "RepeatedToolCallRule",
    "Rule",
    "TagSelector",
    "Unit",
]

POLICY_FORMAT_VERSION: Final = 1
"""The policy file format this release reads (`version:` in the file)."""
DEFAULT_TIMEZONE: Final = "UTC"
"""Zone of calendar periods when the policy does not name one."""
DEFAULT_FALLBACK_RESERVATION_USD: Final = Decimal("0.50")
"""Reserved for a call that cannot be priced, so an unknown price still counts."""
DEFAULT_MAX_OUTPUT_TOKENS: Final = 4096
"""Worst-case output tokens assumed when a call sets no `max_tokens`."""
CRITICAL_TAG: Final = "critical"
"""Runs tagged `critical="true"` are warned instead of denied/paused by exempting budgets."""
SCOPE_EVERYTHING: Final = "*"
"""Scope key of a budget whose selector is `{}` (it applies to every call)."""

Action = Literal["deny", "pause", "warn"]
"""What happens when a rule trips: refuse the call, pause for approval, or only warn."""
RateLimitAction = Literal["deny", "warn"]
"""Rate limits deny or warn; pausing a run to wait out a one-minute window makes no sense."""
LedgerErrorAction = Literal["deny", "allow"]
"""What a rule does when its decision needs the ledger and the ledger is unreachable."""
Unit = Literal["usd", "tokens", "calls"]
"""What a budget counts."""
LoopKind = Literal["repeated_tool_call", "model_call_burst", "ping_pong"]
"""The loop patterns `LoopDetector` recognises."""

_RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_RULE_ID_EXPECTED: Final = (
    "an id of letters, digits, '_', '.', ':' or '-' (max 64, starting with a letter or digit)"
)


def _problem(kind: str, expected: str, **ctx: object) -> PydanticCustomError:
    """A validation error whose message is the `expected` phrase of the ConfigurationError."""
    return PydanticCustomError(kind, "{expected}", {"expected": expected, **ctx})


MAX_LIMIT: Final = Decimal(10) ** 15
"""Largest limit, price or reservation a policy may name (USD, tokens or calls)."""
MAX_DECIMAL_PLACES: Final = 18
"""Most decimal places a policy amount may have: what every ledger backend stores exactly."""
MAX_COUNT: Final = 10**9
"""Largest whole-number setting (calls per window, output tokens)."""
MAX_LOOP_COUNT: Final = 10_000
"""Largest `max_repeats`, `max_cycles` or burst `max_calls`: loop state is kept per step."""


def _positive_decimal(value: Decimal) -> Decimal:
    if not value > 0:
        raise _problem("positive_decimal", "a positive decimal")
    if value > MAX_LIMIT:
        raise _problem("decimal_too_large", "a decimal of at most 1e15")
    if _decimal_places(value) > MAX_DECIMAL_PLACES:
        raise _problem(
            "decimal_places", f"a decimal with at most {MAX_DECIMAL_PLACES} decimal places"
        )
    return value


def _decimal_places(value: Decimal) -> int:
    """Decimal places of a finite `value`, trailing zeros not counted (no context rounding)."""
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite: pydantic refused NaN and Infinity
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + trailing))


def _percent(value: Decimal) -> Decimal:
    if not 0 < value < 100:
        raise _problem("percent", "a percentage between 0 and 100 (exclusive)")
    return value


def _rule_id(value: str) -> str:
    if not _RULE_ID.match(value):
        raise _problem("rule_id", _RULE_ID_EXPECTED)
    return value


def _tag_key(value: str) -> str:
    try:
        validate_tags({value: ""})
    except ConfigurationError as exc:
        raise _problem("tag_key", exc.expected or "a tag name") from None
    return value


def _duration(value: object) -> object:
    if isinstance(value, timedelta):
        if value <= timedelta(0) or value.microseconds:
            raise _problem("duration", "a positive whole number of seconds")
        if value > MAX_WINDOW:
            raise _problem("duration", f"at most {format_duration(MAX_WINDOW)}")
        return value
    if not isinstance(value, str):
        raise _problem("duration", "a duration such as '90s', '30m', '2h' or '7d'")
    try:
        return parse_duration(value)
    except ConfigurationError as exc:
        raise _problem("duration", exc.expected or "a duration") from None


def _no_pause(value: object) -> object:
    if value == "pause":
        raise _problem("rate_limit_action", "'deny' or 'warn' (a rate limit cannot pause a run)")
    return value


PositiveDecimal: TypeAlias = Annotated[Decimal, AfterValidator(_positive_decimal)]
Percent: TypeAlias = Annotated[Decimal, AfterValidator(_percent)]
Count: TypeAlias = Annotated[int, Field(strict=True, gt=0, le=MAX_COUNT)]
LoopCount: TypeAlias = Annotated[int, Field(strict=True, gt=0, le=MAX_LOOP_COUNT)]
RepeatCount: TypeAlias = Annotated[int, Field(strict=True, ge=2, le=MAX_LOOP_COUNT)]
RuleId: TypeAlias = Annotated[str, AfterValidator(_rule_id)]
TagKey: TypeAlias = Annotated[str, AfterValidator(_tag_key)]
Duration: TypeAlias = Annotated[
    timedelta,
    BeforeValidator(_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def _check_selector(value: dict[str, str]) -> dict[str, str]:
    for key, wanted in value.items():
        try:
            validate_tags({key: ""})
        except ConfigurationError as exc:
            expected = exc.expected or "a tag name"
            shown = key.encode("utf-8", "backslashreplace").decode("utf-8")
            raise _problem("tag_key", expected, subfield=shown, value=shown) from None
        if not wanted:
            raise _problem(
                "tag_selector", "a tag value, or '*' for any value", subfield=key, value=wanted
            )
        try:
            validate_tags({key: wanted})  # a value no call can carry is a mistake (and unstorable)
        except ConfigurationError as exc:
            expected = exc.expected or "a tag value"
            shown = str(exc.value).encode("utf-8", "backslashreplace").decode("utf-8")
            raise _problem("tag_selector", expected, subfield=key, value=shown) from None
    return value


class TagSelector(RootModel[Annotated[dict[str, str], AfterValidator(_check_selector)]]):
    """Which calls a rule applies to, by their tags: `{team: support, agent: "*"}`.

    A fixed value must be equal; `"*"` means "the tag is set, whatever its value", and the
    rule then counts separately for each distinct value (a call without the tag is out of
    scope). `{}` selects everything.
    """

    model_config = ConfigDict(frozen=True)

    @classmethod
    def everything(cls) -> TagSelector:
        """The empty selector: every call is in scope."""
        return cls({})

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.root.items())))

    def matches(self, tags: Mapping[str, str]) -> bool:
        """Whether a call with `tags` is in scope."""
        for key, wanted in self.root.items():
            have = tags.get(key)
            if not have or (wanted != SCOPE_EVERYTHING and have != wanted):
                return False
        return True

    def scope(self, tags: Mapping[str, str]) -> dict[str, str] | None:
        """The concrete scope of a call (`"*"` replaced by its value), or None if out of scope."""
        if not self.matches(tags):
            return None
        return {key: tags[key] for key in sorted(self.root)}

    def key(self, tags: Mapping[str, str]) -> str | None:
        """Canonical scope key (`"team=support"`, `"agent=researcher"`), None if out of scope.

        Keys are sorted and joined with `,`; separator characters in values are
        %-escaped. The empty selector's key is `"*"`.
        """
        scope = self.scope(tags)
        if scope is None:
            return None
        if not scope:
            return SCOPE_EVERYTHING
        return ",".join(f"{k}={escape_key_part(v)}" for k, v in scope.items())


def _everything() -> TagSelector:
    return TagSelector.everything()


class MandatoryTags(_Strict):
    """Tags a call must carry before any token is sent (optionally only for some calls)."""

    when: TagSelector | None = None
    """Only calls matching this selector need the tags; absent means every call."""
    require: tuple[TagKey, ...] = Field(min_length=1)
    """Tag names that must be set (to a non-empty value)."""

    @field_validator("require")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise _problem("unique", "tag names without repeats")
        return value

    def missing(self, tags: Mapping[str, str]) -> tuple[str, ...]:
        """Required tags absent from `tags` (empty when the rule does not apply)."""
        if self.when is not None and not self.when.matches(tags):
            return ()
        return tuple(name for name in self.require if not tags.get(name))


class Budget(_Strict):
    """A spending limit over a period, for the calls a tag selector picks.

    With `period: run` or `period: task` it is a cost cap: per run, or per value of the
    call's `task` tag. A call without a `task` tag is capped as its own run's task by
    default (`without_task: run`); `without_task: skip` leaves it out of scope.
    """

    id: RuleId
    """Unique across the whole policy file; recorded on every decision."""
    scope: TagSelector = Field(default_factory=_everything)
    """Which calls count; `"*"` values give one budget per distinct tag value."""
    unit: Unit = "usd"
    """What is counted: USD, tokens, or calls."""
    limit: PositiveDecimal
    """The cap, in `unit`; whole numbers for tokens and calls."""
    period: PeriodKind
    """When the counter resets: run, task, hourly, daily, weekly, monthly or rolling."""
    window: Duration | None = Field(default=None, validate_default=True)
    """Length of a rolling window (`2h`, `30m`, `7d`); required for, and only for, rolling."""
    thresholds: tuple[Percent, ...] = ()
    """Percentages of the limit (ascending, each 0<x<100) at which to notify."""
    action: Action = "deny"
    """What happens when the next call would cross the limit."""
    exempt_critical: bool = False
    """Calls tagged `critical="true"` are warned instead of denied or paused."""
    shadow: bool = False
    """Record what the rule would do, never block (for trying a rule out)."""
    without_task: Literal["run", "skip"] = "run"
    """`period: task` only: a call with no `task` tag is capped as the task of its run
    (`run`, the default), or not capped by this rule at all (`skip`)."""
    on_ledger_error: LedgerErrorAction = "deny"
    """When the decision needs the ledger and it is unreachable: `deny` (fail closed, the
    default: the call is not sent) or `allow` (fail open: the call goes ahead unchecked by
    this rule, a `warn` decision says so, and its cost is charged to the rule's counter
    with its cost event once the ledger is back)."""

    @field_validator("limit")
    @classmethod
    def _whole_for_counts(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        unit = info.data.get("unit")
        if unit in ("tokens", "calls") and value != value.to_integral_value():
            raise _problem("whole_number", f"a whole number of {unit}")
        return value

    @field_validator("window")
    @classmethod
    def _window_for_rolling(cls, value: timedelta | None, info: ValidationInfo) -> timedelta | None:
        period = info.data.get("period")
        if period == "rolling" and value is None:
            raise _problem(
                "window_required", "a duration such as '2h' (required when period is 'rolling')"
            )
        if period is not None and period != "rolling" and value is not None:
            raise _problem(
                "window_forbidden",
                f"no window (window is only for period 'rolling', not {period!r})",
            )
        return value

    @field_validator("thresholds")
    @classmethod
    def _ascending(cls, value: tuple[Decimal, ...]) -> tuple[Decimal, ...]:
        if any(later <= earlier for earlier, later in pairwise(value)):
            raise _problem("ascending", "strictly ascending percentages, such as [50, 80, 90]")
        return value

    @property
    def is_cost_cap(self) -> bool:
        """Whether this is a per-run or per-task cap rather than a time-period budget."""
        return self.period in ("run", "task")

    def is_run_scoped(self, tags: Mapping[str, str]) -> bool:
        """Whether a call with `tags` is charged to a counter of its run alone.

        A `run` cap, or a `task` cap for a call without a task tag (`without_task: run`).
        """
        return self.period == "run" or (self.period == "task" and not tags.get("task"))

    def scope_key(self, tags: Mapping[str, str]) -> str | None:
        """Canonical scope key for a call with `tags`, or None when it is out of scope."""
        if self.period == "task" and not tags.get("task") and self.without_task == "skip":
            return None
        return self.scope.key(tags)

    def counter_key(
        self,
        tags: Mapping[str, str],
        *,
        now: datetime,
        tz: ZoneInfo,
        run_id: str | None = None,
    ) -> str | None:
        """The key of the counter a call with `tags` is charged to, or None if out of scope."""
        scope_key = self.scope_key(tags)
        if scope_key is None:
            return None
        period = self.period
        if period == "task" and not tags.get("task"):
            period = "run"  # `without_task: run`: the run is the task
        return counter_key(
            self.id,
            scope_key,
            period,
            now,
            tz,
            run_id=run_id,
            task=tags.get("task"),
            window=self.window,
        )

    def effective_action(self, tags: Mapping[str, str]) -> Action:
        """`action`, downgraded to `warn` for critical runs when `exempt_critical` is set."""
        if self.exempt_critical and tags.get(CRITICAL_TAG, "").lower() == "true":
            return "warn"
        return self.action

    def crossed_thresholds(self, before: Decimal, after: Decimal) -> tuple[Decimal, ...]:
        """Thresholds (percent) crossed when the counter moves from `before` to `after`."""
        return tuple(pct for pct in self.thresholds if before < self.limit * pct / 100 <= after)


class RateLimit(_Strict):
    """At most `max_calls` calls (or `max_usd` spend) per window, per scope."""

    id: RuleId
    """Unique across the whole policy file; recorded on every decision."""
    scope: TagSelector = Field(default_factory=_everything)
    """Which calls count; `"*"` values give one limit per distinct tag value."""
    window: Duration
    """Window length (`1m`, `90s`), approximated by fixed epoch-aligned buckets."""
    max_calls: Count | None = None
    """Most calls per window (exactly one of `max_calls` / `max_usd`)."""
    max_usd: PositiveDecimal | None = Field(default=None, validate_default=True)
    """Most spend per window, USD (exactly one of `max_calls` / `max_usd`)."""
    action: Annotated[RateLimitAction, BeforeValidator(_no_pause)] = "deny"
    """Deny the call or only warn; rate limits never pause."""
    shadow: bool = False
    """Record what the rule would do, never block."""
    on_ledger_error: LedgerErrorAction = "deny"
    """As for budgets: fail closed (`deny`) or open (`allow`) when the ledger is unreachable."""

    @field_validator("max_usd")
    @classmethod
    def _exactly_one(cls, value: Decimal | None, info: ValidationInfo) -> Decimal | None:
        if "max_calls" not in info.data:  # max_calls itself was invalid: reported already
            return value
        if (value is not None) == (info.data["max_calls"] is not None):
            raise _problem("one_limit", "exactly one of max_calls or max_usd")
        return value

    @property
    def unit(self) -> Literal["calls", "usd"]:
        """What the limit counts."""
        return "usd" if self.max_usd is not None else "calls"

    @property
    def limit(self) -> Decimal:
        """The limit in `unit`."""
        return self.max_usd if self.max_usd is not None else Decimal(self.max_calls or 0)

    def scope_key(self, tags: Mapping[str, str]) -> str | None:
        """Canonical scope key for a call with `tags`, or None when it is out of scope."""
        return self.scope.key(tags)

    def counter_key(self, tags: Mapping[str, str], *, now: datetime, tz: ZoneInfo) -> str | None:
        """The key of the window counter a call with `tags` is charged to, or None."""
        scope_key = self.scope_key(tags)
        if scope_key is None:
            return None
        return counter_key(self.id, scope_key, "rolling", now, tz, window=self.window)


class RepeatedToolCallRule(_Strict):
    """The same tool called with the same (canonical-JSON) arguments N times in one run."""

    kind: Literal["repeated_tool_call"] = "repeated_tool_call"
    id: RuleId
    """Unique across the whole policy file."""
    max_repeats: RepeatCount
    """The Nth identical call trips the rule (N >= 2)."""
    action: Action = "deny"
    """What happens when the rule trips."""
    shadow: bool = False
    """Record what the rule would do, never block."""


class ModelCallBurstRule(_Strict):
    """More than `max_calls` model calls within `window`, in one run."""

    kind: Literal["model_call_burst"] = "model_call_burst"
    id: RuleId
    """Unique across the whole policy file."""
    max_calls: LoopCount
    """Calls allowed within the window; call `max_calls + 1` trips the rule."""
    window: Duration
    """Sliding window length (`10s`, `1m`); exact, not bucketed."""
    action: Action = "deny"
    """What happens when the rule trips."""
    shadow: bool = False
    """Record what the rule would do, never block."""


class PingPongRule(_Strict):
    """Two nodes or agents handing over to each other A,B,A,B,... `max_cycles` times."""

    kind: Literal["ping_pong"] = "ping_pong"
    id: RuleId
    """Unique across the whole policy file."""
    max_cycles: RepeatCount
    """A,B round trips that trip the rule: 3 trips on the 6th step of A,B,A,B,A,B."""
    action: Action = "deny"
    """What happens when the rule trips."""
    shadow: bool = False
    """Record what the rule would do, never block."""


LoopRule: TypeAlias = Annotated[
    RepeatedToolCallRule | ModelCallBurstRule | PingPongRule, Field(discriminator="kind")
]
"""A loop rule, told apart by its `kind`."""

Rule: TypeAlias = Budget | RateLimit | RepeatedToolCallRule | ModelCallBurstRule | PingPongRule
"""Any rule with an id."""


def _approver_id(value: str) -> str:
    if value == "*" or (
        re.fullmatch(r"[a-z][a-z0-9-]{0,31}:[^\s\x00-\x1f\x7f\ud800-\udfff]{1,200}", value)
    ):
        return value
    raise _problem(
        "approver",
        "an approver id such as 'console:alice', 'slack:U012AB3CD', 'slack-group:S0614TZR7' or '*'",
    )


ApproverId: TypeAlias = Annotated[str, AfterValidator(_approver_id)]


class ApproverRule(_Strict):
    """Who may decide requests whose run's tags match `scope`."""

    scope: TagSelector = Field(default_factory=_everything)
    """Which requests (by the paused run's tags); `{}` is every request."""
    allow: tuple[ApproverId, ...] = Field(min_length=1)
    """Approver ids and groups: `console:alice`, `slack:U012AB3CD`, `slack-group:S0614TZR7`."""


class ApprovalSettings(_Strict):
    """How approval requests are decided: who may, and what happens when nobody does."""

    expire_after: Duration | None = None
    """An undecided request expires this long after it was filed (default: never)."""
    on_expiry: Literal["deny", "approve"] = "deny"
    """What an expired request means for its run."""
    approvers: tuple[ApproverRule, ...] = ()
    """Allow-lists by scope; with none, anyone who can reach the ledger may decide."""


class Policy(_Strict):
    """A whole policy file: time zone, reservation defaults, tag rules and limits.

    Load one with `Policy.from_yaml(path)` or `Policy.from_mapping(data)`; errors name the
    file, the rule id, the field, the bad value and what was expected.
    """

    format_version: Literal[1] = Field(default=POLICY_FORMAT_VERSION, alias="version")
    """The file format version (`version:` in the file); only 1 exists."""
    timezone: str = DEFAULT_TIMEZONE
    """IANA zone for calendar periods (daily, weekly, ...), e.g. `Europe/Paris`."""
    fallback_reservation_usd: PositiveDecimal = DEFAULT_FALLBACK_RESERVATION_USD
    """USD reserved for a call that cannot be priced (never 0)."""
    default_max_output_tokens: Count = DEFAULT_MAX_OUTPUT_TOKENS
    """Worst-case output tokens for a call that sets no `max_tokens`."""
    mandatory_tags: tuple[MandatoryTags, ...] = ()
    """Tags calls must carry (checked before any token is sent)."""
    budgets: tuple[Budget, ...] = ()
    """Spending limits per period, and per-run / per-task cost caps."""
    rate_limits: tuple[RateLimit, ...] = ()
    """Calls or spend per time window."""
    loops: tuple[LoopRule, ...] = ()
    """Loop guards: repeated tool calls, model-call bursts, ping-pong."""
    approvals: ApprovalSettings = Field(default_factory=ApprovalSettings)
    """Who may decide paused runs, and when undecided requests expire."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise _problem("timezone", "an IANA time zone name such as 'Europe/Paris'") from None
        return value

    @model_validator(mode="after")
    def _unique_ids(self) -> Policy:
        seen: dict[str, str] = {}
        for field, rule in self._located_rules():
            if rule.id in seen:
                raise _problem(
                    "duplicate_rule_id",
                    f"an id no other rule uses (already used by {seen[rule.id]})",
                    field=f"{field}.id",
                    value=rule.id,
                    rule_id=rule.id,
                )
            seen[rule.id] = field
        return self

    def _located_rules(self) -> Iterator[tuple[str, Rule]]:
        sections: tuple[tuple[str, tuple[Rule, ...]], ...] = (
            ("budgets", self.budgets),
            ("rate_limits", self.rate_limits),
            ("loops", self.loops),
        )
        for name, rules in sections:
            for index, rule in enumerate(rules):
                yield f"{name}[{index}]", rule

    @classmethod
    def from_mapping(cls, data: Any, *, source: str = "policy") -> Policy:
        """Validate a mapping (e.g. parsed YAML); `source` names it in error messages."""
        from agent_finops.policy._load import policy_from_mapping

        return policy_from_mapping(data, source=source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Policy:
        """Read and validate a policy file."""
        from agent_finops.policy._load import load_policy

        return load_policy(path)

    @cached_property
    def tz(self) -> ZoneInfo:
        """The `timezone` as a `ZoneInfo`."""
        return ZoneInfo(self.timezone)

    @cached_property
    def version(self) -> str:
        """Content hash of the validated policy (16 hex chars), recorded on every decision.

        Equal policies hash equal whatever the key order or spelling in the file
        (`"25"` and `"25.00"`, `"60m"` and `"1h"`, defaults omitted or written out).
        """
        canonical = json.dumps(
            _canonical(self.model_dump(by_alias=True)), sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def rules(self) -> tuple[Rule, ...]:
        """Every rule with an id: budgets, then rate limits, then loop rules."""
        return tuple(rule for _, rule in self._located_rules())

    def get_rule(self, rule_id: str) -> Rule:
        """The rule with this id; `KeyError` if there is none."""
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)

    def missing_tags(self, tags: Mapping[str, str]) -> tuple[str, ...]:
        """Mandatory tags a call with `tags` lacks, in the order the policy lists them."""
        missing: dict[str, None] = {}
        for rule in self.mandatory_tags:
            missing.update(dict.fromkeys(rule.missing(tags)))
        return tuple(missing)


def _canonical(value: object) -> object:
    """JSON-ready form where equal values have one spelling."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return "0" if text in ("-0", "0") else text
    if isinstance(value, timedelta):
        return format_duration(value)
    return value
