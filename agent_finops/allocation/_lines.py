"""What allocation reads and writes per cost: a `CostLine` in, `Allocation` parts out.

Plain frozen dataclasses, no ledger: a line can be one cost event of an export, or a
rollup's group (its tags and summed cost). Amounts are exact `Decimal` with at most 18
decimal places (what every ledger backend stores); allocation refuses anything else with a
`ConfigurationError` rather than round it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Literal

from agent_finops.exceptions import ConfigurationError
from agent_finops.ledger._money import EXACT, MONEY_PLACES, tidy

__all__ = ["DIRECT_RULE", "FINE_QUANTUM", "Allocation", "CostLine", "Source"]

DIRECT_RULE: Final = "(direct)"
"""`rule_id` of an allocation no rule made: the line stayed with its own owner. No rule id
in a file can be this (ids cannot contain parentheses)."""
FINE_QUANTUM: Final = Decimal(1).scaleb(-MONEY_PLACES)
"""1e-18: the ledger's money quantum, at which a single event is split exactly."""

Source = Literal["direct", "untagged", "fixed", "proportional", "hybrid", "shared_pool", "no_usage"]
"""Why an owner got an amount.

- `direct`: the line matched no rule and carries the owner tag;
- `untagged`: it matched no rule and has no owner tag (the owner is the unallocated one);
- `fixed`, `proportional`, `hybrid`, `shared_pool`: the type of the rule that split it;
- `no_usage`: a usage-based rule (or a hybrid rule's rest) found no direct usage among its
  owners in the period, so its share went to the unallocated owner.
"""


@dataclass(frozen=True, slots=True)
class CostLine:
    """One cost to allocate: its tags, its exact amount, and optionally its bucket and id."""

    tags: Mapping[str, str]
    """Attribution tags (`team`, `project`, `agent`, ...); read, never copied or changed."""
    amount: Decimal
    """USD, exact; negative for a credit or refund."""
    bucket: str | None = None
    """What the cost is for (`tokens`, `tools`, `compute`, `overhead`), if known."""
    id: str | None = None
    """The cost event id, for error messages and reconciliation; allocation ignores it."""


@dataclass(frozen=True, slots=True)
class Allocation:
    """One owner's part of a cost: how much, by which rule, and on what basis."""

    owner: str
    """Who is charged: a value of the owner tag, or the unallocated owner."""
    amount: Decimal
    """USD, exact at the quantum of the split (1e-18 for an event, cents on a statement)."""
    rule_id: str
    """The rule that made it, or `DIRECT_RULE` for a line no rule took."""
    source: Source
    """Why this owner got it (see `Source`)."""


def to_units(amount: object, line: CostLine | None = None) -> int:
    """`amount` in whole 1e-18 dollars; `ConfigurationError` if it is not an exact one."""
    if isinstance(amount, Decimal) and amount.is_finite():
        scaled = amount.scaleb(MONEY_PLACES, EXACT)
        units = int(scaled)
        if units == scaled:
            return units
    where = f"cost line {line.id!r}" if line is not None and line.id else "cost line"
    raise ConfigurationError(
        "cannot allocate this amount exactly",
        source=where,
        field="amount",
        value=amount,
        expected=f"a finite Decimal with at most {MONEY_PLACES} decimal places",
    )


def from_units(units: int) -> Decimal:
    """Whole 1e-18 dollars back as an exact `Decimal`, without trailing zeros."""
    return tidy(Decimal(units).scaleb(-MONEY_PLACES, EXACT))


def at_quantum(units: int, quantum: Decimal) -> Decimal:
    """Whole 1e-18 dollars shown with the decimal places of `quantum` (0.01: two)."""
    exponent = quantum.normalize(EXACT).as_tuple().exponent
    assert isinstance(exponent, int)  # a finite quantum: callers converted it with to_units
    places = Decimal(1).scaleb(min(exponent, 0))
    return Decimal(units).scaleb(-MONEY_PLACES, EXACT).quantize(places, context=EXACT)
