"""Reading allocation rules files: YAML in, validated `AllocationRules` out, or an error.

Every error is a `ConfigurationError` naming the file, the rule id (inside a rule that has
one), the field path as written in the file, the bad value and what was expected:

```
rules.yaml: rule 'search-split': invalid value (field 'rules[1].weights.team-a', got -3,
expected a positive number, such as 3 or "0.25")
```

Unknown keys are refused (a misspelt key would otherwise silently change who pays).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final, get_args

from agent_finops._safe_yaml import read_yaml_file
from agent_finops.allocation._lines import to_units
from agent_finops.allocation._rules import (
    ALLOCATION_FORMAT_VERSION,
    COST_BUCKETS,
    DEFAULT_OWNER_TAG,
    DEFAULT_ROUNDING,
    DEFAULT_UNALLOCATED_OWNER,
    AllocationRule,
    AllocationRules,
    FixedRule,
    HybridRule,
    LineSelector,
    ProportionalRule,
    RuleType,
    SharedPoolRule,
)
from agent_finops.attribution import validate_tags
from agent_finops.exceptions import ConfigurationError
from agent_finops.ledger._money import MONEY_PLACES

__all__ = ["allocation_rules_from_mapping", "load_allocation_rules"]

MAX_RULES: Final = 1000
"""Most rules in one file."""
MAX_OWNERS: Final = 1000
"""Most owners one rule may name (weights, base fees, `among`)."""
MAX_AMOUNT: Final = Decimal(10) ** 15
"""Largest weight, base fee or rounding quantum a file may name."""

_RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_TOP_KEYS: Final = ("version", "owner", "rounding", "unallocated", "rules")
_COMMON_KEYS: Final = ("id", "type", "match", "bucket")
_RULE_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    "fixed": (*_COMMON_KEYS, "to"),
    "proportional": (*_COMMON_KEYS, "weights", "by", "among"),
    "hybrid": (*_COMMON_KEYS, "base_fee", "weights", "by", "among"),
    "shared_pool": (*_COMMON_KEYS, "among"),
}
_BY_VALUES: Final = ("direct_usage",)
_NUMBER: Final = 'a positive number, such as 3 or "0.25"'
_MONEY: Final = 'a positive amount, such as "100.00"'


def load_allocation_rules(path: str | Path) -> AllocationRules:
    """Read and validate an allocation rules YAML file.

    Raises `ConfigurationError` when the file cannot be read, is not UTF-8 or not valid
    YAML (a key repeated in one mapping counts as invalid), is over the bounded loader's
    limits (see `agent_finops._safe_yaml`), or does not describe valid rules.
    """
    data = read_yaml_file(path)
    return allocation_rules_from_mapping({} if data is None else data, source=str(path))


def allocation_rules_from_mapping(
    data: Any, *, source: str = "allocation rules"
) -> AllocationRules:
    """Validate parsed data as `AllocationRules`; `source` names it in error messages."""
    return _Reader(source).rules_file(data)


class _Reader:
    """Validates one document, remembering the rule it is in for error messages."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.rule_id: str | None = None
        self.owner_tag = DEFAULT_OWNER_TAG
        self.unallocated = DEFAULT_UNALLOCATED_OWNER

    def error(self, message: str, field: str, value: object, expected: str) -> ConfigurationError:
        if self.rule_id is not None:
            message = f"rule {self.rule_id!r}: {message}"
        return ConfigurationError(
            message, source=self.source, field=field, value=value, expected=expected
        )

    # -- the file -------------------------------------------------------------------------

    def rules_file(self, data: Any) -> AllocationRules:
        top = self.keys(data, "", _TOP_KEYS, required=("rules",))
        version = top.get("version", ALLOCATION_FORMAT_VERSION)
        if version != ALLOCATION_FORMAT_VERSION or isinstance(version, bool):
            raise self.error(
                "unsupported version", "version", version, str(ALLOCATION_FORMAT_VERSION)
            )
        if "owner" in top:
            self.owner_tag = self.tag_key(top["owner"], "owner")
        if "unallocated" in top:
            self.unallocated = self.owner(top["unallocated"], "unallocated", unallocated_ok=True)
        rounding = DEFAULT_ROUNDING
        if "rounding" in top:
            rounding = self.positive(top["rounding"], "rounding", 'a quantum such as "0.01"')
        raw_rules = top["rules"]
        if not isinstance(raw_rules, list) or not raw_rules:
            raise self.error("invalid value", "rules", raw_rules, "a non-empty list of rules")
        if len(raw_rules) > MAX_RULES:
            raise self.error("too many rules", "rules", len(raw_rules), f"at most {MAX_RULES}")
        rules: list[AllocationRule] = []
        seen: set[str] = set()
        for index, raw in enumerate(raw_rules):
            rule = self.rule(raw, f"rules[{index}]")
            if rule.id in seen:
                raise self.error("duplicate rule id", f"rules[{index}].id", rule.id, "unique ids")
            seen.add(rule.id)
            rules.append(rule)
            self.rule_id = None
        return AllocationRules(
            rules=tuple(rules),
            owner_tag=self.owner_tag,
            rounding=rounding,
            unallocated=self.unallocated,
        )

    def rule(self, raw: Any, field: str) -> AllocationRule:
        if not isinstance(raw, Mapping):
            raise self.error("invalid value", field, raw, "a mapping (one rule)")
        rule_id = raw.get("id")
        if not isinstance(rule_id, str) or not _RULE_ID.match(rule_id):
            expected = (
                "an id of letters, digits, '_', '.', ':' or '-' "
                "(max 64, starting with a letter or digit)"
            )
            if "id" not in raw:
                raise self.error("missing required key", f"{field}.id", None, "this key to be set")
            raise self.error("invalid value", f"{field}.id", rule_id, expected)
        self.rule_id = rule_id
        kind = raw.get("type")
        if not isinstance(kind, str) or kind not in _RULE_KEYS:
            kinds = ", ".join(repr(k) for k in get_args(RuleType))
            message = "missing rule type" if kind is None else "unknown rule type"
            raise self.error(message, f"{field}.type", kind, f"one of {kinds}")
        spec = self.keys(raw, field, _RULE_KEYS[kind], required=("match",))
        selector = self.selector(spec, field)
        if kind == "fixed":
            if "to" not in spec:
                raise self.error("missing required key", f"{field}.to", None, "the owner's name")
            return FixedRule(
                id=rule_id, selector=selector, to=self.owner(spec["to"], f"{field}.to")
            )
        if kind == "shared_pool":
            return SharedPoolRule(id=rule_id, selector=selector, among=self.among(spec, field))
        weights, among = self.split_key(spec, field)
        if kind == "proportional":
            return ProportionalRule(id=rule_id, selector=selector, weights=weights, among=among)
        if "base_fee" not in spec:
            raise self.error(
                "missing required key", f"{field}.base_fee", None, "owner -> fee per period"
            )
        fees = self.owner_amounts(spec["base_fee"], f"{field}.base_fee", _MONEY)
        return HybridRule(
            id=rule_id, selector=selector, base_fee=fees, weights=weights, among=among
        )

    # -- parts of a rule ------------------------------------------------------------------

    def selector(self, spec: Mapping[str, Any], field: str) -> LineSelector:
        match = spec["match"]
        if not isinstance(match, Mapping):
            expected = "a mapping of tag -> value or list of values ({} matches every line)"
            raise self.error("invalid value", f"{field}.match", match, expected)
        tags: dict[str, frozenset[str]] = {}
        for key, wanted in match.items():
            name = self.tag_key(key, f"{field}.match")
            tags[name] = frozenset(self.values(wanted, f"{field}.match.{name}", self.tag_value))
        buckets = None
        if "bucket" in spec:
            buckets = frozenset(self.values(spec["bucket"], f"{field}.bucket", self.bucket))
        return LineSelector(tags=tags, buckets=buckets)

    def split_key(
        self, spec: Mapping[str, Any], field: str
    ) -> tuple[Mapping[str, Decimal] | None, tuple[str, ...] | None]:
        """`weights:` or `by: direct_usage` (with an optional `among:`), exactly one."""
        if "weights" in spec and "by" in spec:
            raise self.error(
                "conflicting keys", f"{field}.by", spec["by"], "either weights or by, not both"
            )
        if "weights" in spec:
            if "among" in spec:
                raise self.error(
                    "conflicting keys",
                    f"{field}.among",
                    spec["among"],
                    "no among with weights (among only goes with by: direct_usage)",
                )
            return self.owner_amounts(spec["weights"], f"{field}.weights", _NUMBER), None
        if "by" not in spec:
            expected = "weights: {owner: weight} or by: direct_usage"
            raise self.error("missing required key", f"{field}.weights", None, expected)
        if spec["by"] not in _BY_VALUES:
            expected = "one of " + ", ".join(repr(v) for v in _BY_VALUES)
            raise self.error("invalid value", f"{field}.by", spec["by"], expected)
        return None, self.among(spec, field)

    def among(self, spec: Mapping[str, Any], field: str) -> tuple[str, ...] | None:
        if "among" not in spec:
            return None
        raw = spec["among"]
        names = self.values(raw, f"{field}.among", self.owner)
        if len(set(names)) != len(names):
            raise self.error("invalid value", f"{field}.among", raw, "owners without repeats")
        return tuple(names)

    def owner_amounts(self, raw: Any, field: str, expected: str) -> Mapping[str, Decimal]:
        if not isinstance(raw, Mapping) or not raw:
            raise self.error(
                "invalid value", field, raw, f"a non-empty mapping of owner -> {expected}"
            )
        if len(raw) > MAX_OWNERS:
            raise self.error("too many owners", field, len(raw), f"at most {MAX_OWNERS}")
        out: dict[str, Decimal] = {}
        for name, amount in raw.items():
            owner = self.owner(name, field)
            out[owner] = self.positive(amount, f"{field}.{owner}", expected)
        return out

    # -- values ---------------------------------------------------------------------------

    def keys(
        self, data: Any, field: str, allowed: Sequence[str], required: Sequence[str]
    ) -> Mapping[str, Any]:
        if not isinstance(data, Mapping):
            raise self.error("invalid value", field or "<file>", data, "a mapping")
        for key in data:
            if key not in allowed:
                path = f"{field}.{key}" if field else str(key)
                expected = "one of the keys " + ", ".join(sorted(allowed))
                raise self.error("unknown key", path, None, expected)
        for key in required:
            if key not in data:
                path = f"{field}.{key}" if field else key
                raise self.error("missing required key", path, None, "this key to be set")
        return data

    def values(self, raw: Any, field: str, check: Callable[[Any, str], str]) -> list[str]:
        """One value or a non-empty list of values, each passed through `check`."""
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            raise self.error("invalid value", field, raw, "a value or a non-empty list of values")
        if len(items) > MAX_OWNERS:
            raise self.error("too many values", field, len(items), f"at most {MAX_OWNERS}")
        return [
            check(item, f"{field}[{i}]" if isinstance(raw, list) else field)
            for i, item in enumerate(items)
        ]

    def tag_key(self, raw: Any, field: str) -> str:
        if isinstance(raw, str):
            try:
                validate_tags({raw: ""})
                return raw
            except ConfigurationError:
                pass
        expected = "a tag name of letters, digits, '_', '.', ':' or '-' (max 64)"
        raise self.error("invalid tag name", field, raw, expected)

    def tag_value(self, raw: Any, field: str) -> str:
        if isinstance(raw, str) and raw:
            try:
                validate_tags({"tag": raw})
                return raw
            except ConfigurationError as exc:
                raise self.error(
                    "invalid tag value", field, raw, exc.expected or "a tag value"
                ) from None
        raise self.error(
            "invalid tag value", field, raw, "a non-empty string, or '*' for any value"
        )

    def owner(self, raw: Any, field: str, *, unallocated_ok: bool = False) -> str:
        name = self.tag_value(raw, field)
        if name == self.unallocated and not unallocated_ok:
            expected = f"an owner other than the unallocated owner {self.unallocated!r}"
            raise self.error("invalid owner", field, raw, expected)
        return name

    def bucket(self, raw: Any, field: str) -> str:
        if raw not in COST_BUCKETS:
            expected = "one of " + ", ".join(repr(b) for b in COST_BUCKETS)
            raise self.error("unknown cost bucket", field, raw, expected)
        return str(raw)

    def positive(self, raw: Any, field: str, expected: str) -> Decimal:
        value: Decimal | None = raw if isinstance(raw, Decimal) else None
        if isinstance(raw, int | float | str) and not isinstance(raw, bool):
            try:
                value = Decimal(repr(raw) if isinstance(raw, float) else raw)
            except (InvalidOperation, ValueError):
                value = None
        if value is None or not value.is_finite() or not 0 < value <= MAX_AMOUNT:
            raise self.error("invalid value", field, raw, f"{expected}, at most 1e15")
        try:
            to_units(value)
        except ConfigurationError:
            places = f"{expected}, with at most {MONEY_PLACES} decimal places"
            raise self.error("too many decimal places", field, raw, places) from None
        return value
