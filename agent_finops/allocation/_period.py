"""What a period's allocation depends on, measured in one pass: direct usage and rule pools.

*Direct usage* of an owner in a period is the sum of the period's lines that no rule takes
and that carry that owner's tag value. Usage-based rules (`proportional` with `by:
direct_usage`, the rest of a `hybrid`, `shared_pool`) split by it; a `hybrid` rule also
needs its *pool*, the sum of the lines it takes, to carve out its base fees. Measuring
keeps only these sums, so it runs over any number of lines in constant memory, and a
rollup's groups (tags plus summed cost) measure the same as the events they sum.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType

from agent_finops.allocation._lines import CostLine, from_units, to_units
from agent_finops.allocation._rules import AllocationRules
from agent_finops.exceptions import ConfigurationError

__all__ = ["PeriodTotals", "measure_period"]

_ZERO = Decimal(0)


def _frozen(values: Mapping[str, Decimal]) -> Mapping[str, Decimal]:
    return MappingProxyType(dict(sorted(values.items())))


@dataclass(frozen=True, slots=True)
class PeriodTotals:
    """Sums of one period's lines, by where the rules put them.

    Build it with `measure_period`, or from database aggregates (for each owner, the cost
    of its lines no rule takes; for each rule, the cost of the lines it takes).
    """

    direct: Mapping[str, Decimal] = field(default_factory=dict)
    """Owner -> sum of its direct lines (matched by no rule, carrying the owner tag)."""
    untagged: Decimal = _ZERO
    """Sum of the direct lines without the owner tag (they go to the unallocated owner)."""
    pools: Mapping[str, Decimal] = field(default_factory=dict)
    """Rule id -> sum of the lines the rule takes."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "direct", _frozen(self.direct))
        object.__setattr__(self, "pools", _frozen(self.pools))
        sums = [("untagged", self.untagged)]
        sums += [(f"direct.{owner}", amount) for owner, amount in self.direct.items()]
        sums += [(f"pools.{rule_id}", amount) for rule_id, amount in self.pools.items()]
        for field_name, amount in sums:
            try:
                to_units(amount)
            except ConfigurationError as exc:
                raise ConfigurationError(
                    "cannot allocate this amount exactly",
                    source="period totals",
                    field=field_name,
                    value=amount,
                    expected=exc.expected,
                ) from None

    @property
    def total(self) -> Decimal:
        """The raw total of the period: every line, exactly."""
        units = to_units(self.untagged)
        units += sum(to_units(amount) for amount in self.direct.values())
        units += sum(to_units(amount) for amount in self.pools.values())
        return from_units(units)


def measure_period(rules: AllocationRules, lines: Iterable[CostLine]) -> PeriodTotals:
    """Direct usage per owner and the pool of each rule, in one pass over `lines`."""
    direct: dict[str, int] = {}
    pools: dict[str, int] = {}
    untagged = 0
    owner_tag = rules.owner_tag
    for line in lines:
        units = to_units(line.amount, line)
        rule = rules.rule_for(line)
        if rule is not None:
            pools[rule.id] = pools.get(rule.id, 0) + units
            continue
        owner = line.tags.get(owner_tag)
        if owner:
            direct[owner] = direct.get(owner, 0) + units
        else:
            untagged += units
    return PeriodTotals(
        direct={owner: from_units(units) for owner, units in direct.items()},
        untagged=from_units(untagged),
        pools={rule_id: from_units(units) for rule_id, units in pools.items()},
    )
