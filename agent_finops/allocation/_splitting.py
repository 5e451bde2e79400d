"""One amount split by weights at any quantum, exactly: the allocator's arithmetic, alone.

`split_amount(Decimal("10.00"), {"a": 1, "b": 1, "c": 1}, quantum=Decimal("0.01"))` gives
`{"a": 3.34, "b": 3.33, "c": 3.33}`: each owner gets the floor of its exact share in whole
quanta, and the quanta left go one each to the largest remainders (a tie to the larger
weight, then the owner name), so the parts always sum to the amount.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from agent_finops.allocation._largest_remainder import split_units, tie_order
from agent_finops.allocation._lines import FINE_QUANTUM, at_quantum, to_units
from agent_finops.exceptions import ConfigurationError

__all__ = ["split_amount"]


def split_amount(
    amount: Decimal,
    weights: Mapping[str, Decimal | int],
    *,
    quantum: Decimal = FINE_QUANTUM,
) -> dict[str, Decimal]:
    """`amount` split in proportion to `weights`, in multiples of `quantum` summing to it.

    `amount` must be a multiple of `quantum` (at most 18 decimal places each); weights are
    non-negative with at least one positive. Every owner in `weights` is in the result (in
    name order), each within one quantum of its exact share, never negative for a
    non-negative amount; a negative amount splits as the mirror image of its absolute value.
    """
    step = to_units(quantum)
    if step <= 0:
        raise ConfigurationError(
            "invalid quantum", field="quantum", value=quantum, expected="a positive decimal"
        )
    units, off = divmod(to_units(amount), step)
    if off:
        raise ConfigurationError(
            "amount is not a whole number of quanta",
            field="amount",
            value=amount,
            expected=f"a multiple of {quantum}",
        )
    owners = sorted(weights)
    scaled = [_weight(weights[owner], owner) for owner in owners]
    total = sum(scaled)
    if total <= 0:
        raise ConfigurationError(
            "no positive weight", field="weights", value=dict(weights), expected="a weight > 0"
        )
    parts = split_units(units, scaled, total, tie_order(scaled, owners))
    return {
        owner: at_quantum(part * step, quantum) for owner, part in zip(owners, parts, strict=True)
    }


def _weight(weight: Decimal | int, owner: str) -> int:
    value = Decimal(weight) if isinstance(weight, int) and not isinstance(weight, bool) else weight
    try:
        units = to_units(value)
    except ConfigurationError:
        units = -1
    if units < 0:
        raise ConfigurationError(
            "invalid weight",
            field=f"weights.{owner}",
            value=weight,
            expected="a non-negative Decimal or int with at most 18 decimal places",
        )
    return units
