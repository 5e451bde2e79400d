"""Allocation rules as frozen values: which cost lines a rule takes, and to whom they go.

Rules are read from YAML by `load_allocation_rules` (or built from a mapping with
`AllocationRules.from_mapping`), which validates every field; the constructors here trust
their arguments. The first rule whose selector matches a line takes it; a line no rule
takes is *direct* and stays with the owner named by its own owner tag.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, get_args

from agent_finops.ledger import CostBucket

if TYPE_CHECKING:
    from agent_finops.allocation._lines import CostLine

__all__ = [
    "ALLOCATION_FORMAT_VERSION",
    "ANY_VALUE",
    "COST_BUCKETS",
    "DEFAULT_OWNER_TAG",
    "DEFAULT_ROUNDING",
    "DEFAULT_UNALLOCATED_OWNER",
    "AllocationRule",
    "AllocationRules",
    "FixedRule",
    "HybridRule",
    "LineSelector",
    "ProportionalRule",
    "RuleType",
    "SharedPoolRule",
]

ALLOCATION_FORMAT_VERSION: Final = 1
"""The allocation rules format this release reads (`version:` in the file)."""
DEFAULT_OWNER_TAG: Final = "team"
"""The tag whose value names the owner a cost is allocated to, when the file names none."""
DEFAULT_ROUNDING: Final = Decimal("0.01")
"""Quantum of the chargeback statement when the file names none: cents."""
DEFAULT_UNALLOCATED_OWNER: Final = "(unallocated)"
"""Owner of a cost that has no owner: a direct line without the owner tag, or the pool of a
usage-based rule when none of its owners has direct usage in the period."""
ANY_VALUE: Final = "*"
"""In a selector: the tag is set, whatever its value."""

COST_BUCKETS: Final[tuple[CostBucket, ...]] = get_args(CostBucket)
"""Every cost bucket a rule may select with `bucket:` (the ledger's `CostBucket`)."""
RuleType = Literal["fixed", "proportional", "hybrid", "shared_pool"]
"""The `type:` of a rule."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LineSelector:
    """Which cost lines a rule takes: all of `tags` must match, and the bucket if given."""

    tags: Mapping[str, frozenset[str]]
    """Tag name -> accepted values; a value of `"*"` accepts any (non-empty) value."""
    buckets: frozenset[str] | None = None
    """Accepted cost buckets; None accepts every line, with or without a bucket."""

    def matches(self, line: CostLine) -> bool:
        """Whether `line` is taken by this selector."""
        if self.buckets is not None and line.bucket not in self.buckets:
            return False
        tags = line.tags
        for key, accepted in self.tags.items():
            have = tags.get(key)
            if not have or (have not in accepted and ANY_VALUE not in accepted):
                return False
        return True


@dataclass(frozen=True, slots=True, kw_only=True)
class FixedRule:
    """Everything matched goes to one owner."""

    id: str
    """Unique in the file; recorded on every allocation the rule makes."""
    selector: LineSelector
    """The lines this rule takes (the `match:` and `bucket:` keys)."""
    to: str
    """The owner that receives all of it."""
    type: Literal["fixed"] = "fixed"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProportionalRule:
    """Matched costs split by fixed `weights`, or (weights None) by direct usage."""

    id: str
    """Unique in the file; recorded on every allocation the rule makes."""
    selector: LineSelector
    """The lines this rule takes (the `match:` and `bucket:` keys)."""
    weights: Mapping[str, Decimal] | None = None
    """Owner -> positive weight; None splits by each owner's direct usage in the period."""
    among: tuple[str, ...] | None = None
    """By usage only: the owners that share (None: every owner with direct usage)."""
    type: Literal["proportional"] = "proportional"


@dataclass(frozen=True, slots=True, kw_only=True)
class HybridRule:
    """A base fee per owner per period out of the pool; the rest split like `proportional`.

    Base fees are carved out of the matched costs, never added on top: when the pool is at
    least the sum of the fees each owner gets its fee plus its share of the rest; when it is
    smaller, the whole pool is split in proportion to the fees. Either way the parts sum to
    the pool.
    """

    id: str
    """Unique in the file; recorded on every allocation the rule makes."""
    selector: LineSelector
    """The lines this rule takes (the `match:` and `bucket:` keys)."""
    base_fee: Mapping[str, Decimal]
    """Owner -> positive fee per period (USD)."""
    weights: Mapping[str, Decimal] | None = None
    """How the rest is split: owner -> weight; None splits it by direct usage."""
    among: tuple[str, ...] | None = None
    """By usage only: the owners that share the rest (None: every owner with direct usage)."""
    type: Literal["hybrid"] = "hybrid"


@dataclass(frozen=True, slots=True, kw_only=True)
class SharedPoolRule:
    """Costs of shared agents (guardrails, routers) spread by each owner's direct usage."""

    id: str
    """Unique in the file; recorded on every allocation the rule makes."""
    selector: LineSelector
    """The lines this rule takes (the `match:` and `bucket:` keys)."""
    among: tuple[str, ...] | None = None
    """The owners that share (None: every owner with direct usage)."""
    type: Literal["shared_pool"] = "shared_pool"


AllocationRule: TypeAlias = FixedRule | ProportionalRule | HybridRule | SharedPoolRule
"""Any one rule."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AllocationRules:
    """A validated allocation rules file: the owner tag, the statement quantum, the rules."""

    rules: tuple[AllocationRule, ...]
    """In file order; the first that matches a line takes it."""
    owner_tag: str = DEFAULT_OWNER_TAG
    """The tag whose value names the owner that receives allocations (`owner:`)."""
    rounding: Decimal = DEFAULT_ROUNDING
    """Quantum of the chargeback statement (`rounding:`), positive."""
    unallocated: str = DEFAULT_UNALLOCATED_OWNER
    """Owner of costs that have none (`unallocated:`)."""

    @classmethod
    def from_mapping(cls, data: Any, *, source: str = "allocation rules") -> AllocationRules:
        """Validate parsed data (a YAML document); `source` names it in error messages."""
        from agent_finops.allocation._load import allocation_rules_from_mapping

        return allocation_rules_from_mapping(data, source=source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> AllocationRules:
        """Read and validate an allocation rules YAML file (see `load_allocation_rules`)."""
        from agent_finops.allocation._load import load_allocation_rules

        return load_allocation_rules(path)

    def rule_for(self, line: CostLine) -> AllocationRule | None:
        """The rule that takes `line`, or None when the line is direct."""
        for rule in self.rules:
            if rule.selector.matches(line):
                return rule
        return None
