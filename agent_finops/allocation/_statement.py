"""The chargeback statement: exact allocations rounded to cents that still add up.

Rounding is done twice by the largest-remainder method, owners first:

1. The raw total is rounded half-even to the quantum: that is the statement's total.
2. Each owner's raw total is floored to the quantum, and the quanta still missing to reach
   the rounded total go one each to the owners with the largest remainders (a tie to the
   larger raw amount, then the owner name in code-point order).
3. Within each owner, its lines (one per rule that gave it something) are rounded the same
   way to sum to the owner's rounded total (a tie to the larger raw amount, then the
   earlier rule in the file, direct lines first).

So the owners' amounts sum exactly to the rounded total, each line's amounts sum exactly to
its owner's, and every rounded amount is within one quantum of its raw amount. A rule's
rounded total is the sum of its rounded lines; it can differ from the rule's raw pool by
more than one quantum (the owners' totals are what is booked, so they are the ones kept
within a quantum).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import NamedTuple

from agent_finops.allocation._largest_remainder import half_even, round_units, tie_order
from agent_finops.allocation._lines import Source, at_quantum, from_units, to_units
from agent_finops.exceptions import ConfigurationError

__all__ = ["ChargebackStatement", "StatementCell", "StatementLine", "build_statement"]


@dataclass(frozen=True, slots=True)
class StatementLine:
    """What one rule gave one owner in the period: raw and rounded."""

    owner: str
    """Who is charged."""
    rule_id: str
    """The rule, or `DIRECT_RULE` for the owner's own (direct or untagged) costs."""
    source: Source
    """Why the owner got it (see `Source`)."""
    raw_amount: Decimal
    """Exact (1e-18): the rule's pool split by largest remainder."""
    amount: Decimal
    """Rounded to the statement quantum."""


@dataclass(frozen=True, slots=True)
class ChargebackStatement:
    """A period's allocation per owner and rule, rounded so that every level sums exactly."""

    owner_tag: str
    """The tag whose values are the owners."""
    quantum: Decimal
    """The rounding quantum (0.01 for cents)."""
    lines: tuple[StatementLine, ...]
    """Non-zero lines, by owner, then rule in file order (direct first)."""
    owner_totals: Mapping[str, Decimal]
    """Owner -> rounded total (what to charge); sums exactly to `total`."""
    raw_owner_totals: Mapping[str, Decimal]
    """Owner -> exact total; sums exactly to `raw_total`."""
    rule_totals: Mapping[str, Decimal]
    """Rule id (direct first, then file order) -> sum of its rounded lines."""
    raw_rule_totals: Mapping[str, Decimal]
    """Rule id -> exact total of the lines it took (its pool)."""
    raw_total: Decimal
    """Every cost line, summed exactly."""
    total: Decimal
    """`raw_total` rounded half-even to `quantum`."""
    rounding_difference: Decimal
    """`total - raw_total`: what rounding added (negative: removed), never hidden."""


class StatementCell(NamedTuple):
    """A raw amount, in 1e-18 units, for one (owner, rule, source)."""

    owner: str
    rule_id: str
    source: Source
    units: int


def build_statement(
    cells: Sequence[StatementCell],
    *,
    rule_ids: Sequence[str],
    owner_tag: str,
    rounding: Decimal,
) -> ChargebackStatement:
    """Round `cells` (raw, in any order) into a statement; `rule_ids` in display order."""
    quantum = _quantum(rounding)
    rank = {rule_id: index for index, rule_id in enumerate(rule_ids)}
    kept = sorted(
        (cell for cell in cells if cell.units),
        key=lambda cell: (cell.owner, rank[cell.rule_id], cell.source),
    )
    by_owner: dict[str, list[int]] = {}
    for cell in kept:  # sorted by owner, so each owner's cells stay in display order
        by_owner.setdefault(cell.owner, []).append(cell.units)
    owners = list(by_owner)
    raw_owner = [sum(units) for units in by_owner.values()]
    raw_total = sum(raw_owner)
    total = half_even(raw_total, quantum)
    rounded_owner = round_units(raw_owner, quantum, total, tie_order(raw_owner, owners))
    rounded: list[int] = []
    for mine, owner_total in zip(by_owner.values(), rounded_owner, strict=True):
        rounded += round_units(mine, quantum, owner_total, tie_order(mine))
    show = _shown_at(rounding)
    lines = tuple(
        StatementLine(cell.owner, cell.rule_id, cell.source, from_units(cell.units), show(units))
        for cell, units in zip(kept, rounded, strict=True)
    )
    raw_rule = dict.fromkeys(rule_ids, 0)
    rule = dict.fromkeys(rule_ids, 0)
    for cell, units in zip(kept, rounded, strict=True):
        raw_rule[cell.rule_id] += cell.units
        rule[cell.rule_id] += units
    return ChargebackStatement(
        owner_tag=owner_tag,
        quantum=rounding,
        lines=lines,
        owner_totals=_frozen(owners, rounded_owner, show),
        raw_owner_totals=_frozen(owners, raw_owner, from_units),
        rule_totals=MappingProxyType({key: show(units) for key, units in rule.items()}),
        raw_rule_totals=MappingProxyType({k: from_units(u) for k, u in raw_rule.items()}),
        raw_total=from_units(raw_total),
        total=show(total),
        rounding_difference=from_units(total - raw_total),
    )


def _quantum(rounding: Decimal) -> int:
    try:
        quantum = to_units(rounding)
    except ConfigurationError:
        quantum = 0
    if quantum <= 0:
        raise ConfigurationError(
            "invalid statement rounding",
            field="rounding",
            value=rounding,
            expected="a positive decimal with at most 18 decimal places, such as 0.01",
        )
    return quantum


def _shown_at(rounding: Decimal) -> Callable[[int], Decimal]:
    def show(units: int) -> Decimal:
        return at_quantum(units, rounding)

    return show


def _frozen(
    owners: Sequence[str], units: Sequence[int], show: Callable[[int], Decimal]
) -> Mapping[str, Decimal]:
    return MappingProxyType(
        {owner: show(amount) for owner, amount in zip(owners, units, strict=True)}
    )
