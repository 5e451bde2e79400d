"""Largest-remainder arithmetic on whole units: parts that sum exactly, each within one unit.

Everything here works on Python integers (amounts in units of a quantum: 1e-18 dollars for a
fine split, cents for a statement), so no step rounds and no step depends on a `Decimal`
context. Two operations share one rule for handing out what flooring left over:

- `split_units`: `amount` in proportion to integer `weights`. Each part is the floor of its
  exact share `amount * w / W`; the units still missing go one each to the largest
  remainders. A part is therefore the floor or the ceiling of its exact share: within one
  unit of it, and never negative when `amount` is not.
- `round_units`: values already in fine units, rounded to a coarser `quantum` so that they
  sum to a given `target` (a multiple of `quantum` within one quantum of their sum per
  value): floors first, then one quantum each to the largest remainders.

A tie between equal remainders goes to the participant that comes first in `order`, which
the caller builds (larger weight first, then owner name: see `tie_order`). A zero remainder
never receives a unit, so an exact part is never moved.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["half_even", "round_units", "split_units", "tie_order"]


def tie_order(weights: Sequence[int], names: Sequence[str] | None = None) -> tuple[int, ...]:
    """Indices in tie-break order: larger weight first, then the smaller name, then position."""
    if names is None:
        return tuple(sorted(range(len(weights)), key=lambda i: (-weights[i], i)))
    return tuple(sorted(range(len(weights)), key=lambda i: (-weights[i], names[i], i)))


def split_units(amount: int, weights: Sequence[int], total: int, order: Sequence[int]) -> list[int]:
    """`amount` split in proportion to `weights` (each >= 0, `total` their sum, > 0).

    The parts sum to `amount` exactly. A negative amount is split as the mirror image of
    its absolute value, so a refund undoes its charge part for part.
    """
    if amount < 0:
        return [-part for part in split_units(-amount, weights, total, order)]
    parts: list[int] = []
    remainders: list[int] = []
    for weight in weights:
        part, remainder = divmod(amount * weight, total)
        parts.append(part)
        remainders.append(remainder)
    _hand_out(parts, remainders, order, amount - sum(parts))
    return parts


def round_units(
    values: Sequence[int], quantum: int, target: int, order: Sequence[int]
) -> list[int]:
    """`values` rounded to multiples of `quantum` (> 0) that sum to `target` exactly.

    `target` must be a multiple of `quantum` no lower than the sum of the floors and no
    higher than it plus one quantum per value with a non-zero remainder (true whenever
    `target` is within one quantum of the sum of `values`, as the rounded total is).
    """
    floors: list[int] = []
    remainders: list[int] = []
    for value in values:
        floor, remainder = divmod(value, quantum)
        floors.append(floor)
        remainders.append(remainder)
    missing, off = divmod(target, quantum)
    missing -= sum(floors)
    if off or not 0 <= missing <= sum(1 for r in remainders if r):
        raise ValueError(f"target {target} is not reachable by rounding to {quantum}")
    _hand_out(floors, remainders, order, missing)
    return [floor * quantum for floor in floors]


def half_even(value: int, quantum: int) -> int:
    """`value` rounded to the nearest multiple of `quantum`, a tie to the even multiple."""
    floor, remainder = divmod(value, quantum)
    twice = 2 * remainder
    if twice > quantum or (twice == quantum and floor % 2):
        floor += 1
    return floor * quantum


def _hand_out(parts: list[int], remainders: list[int], order: Sequence[int], count: int) -> None:
    """One unit each to the `count` largest remainders; ties go by `order` (stable sort)."""
    if count <= 0:
        return
    if count == 1:  # the common case: no sort
        best = order[0]
        for index in order:
            if remainders[index] > remainders[best]:
                best = index
        parts[best] += 1
        return
    for index in sorted(order, key=remainders.__getitem__, reverse=True)[:count]:
        parts[index] += 1
