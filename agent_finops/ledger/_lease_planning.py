"""Pure budget-lease planning: grow, charge and give back leases, decided from counter values.

A budget lease is the share of a counter's headroom one worker holds in the database (a row
of `finops_budget_leases`, counted in the counter's `reserved`), from which it decides calls
locally (`LeasedBudgetStore`). Every backend runs these functions inside its serialized
section (a `BEGIN IMMEDIATE` transaction, rows locked `FOR UPDATE`, or a lock), so all of
them agree on how big a slice is, when a grow is refused, and what a charge frees.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

from agent_finops.exceptions import ConfigurationError
from agent_finops.ledger._budget import (
    LeaseCharge,
    LeaseGrant,
    LeaseRequest,
    Refusal,
    checked_charge,
)
from agent_finops.ledger._money import EXACT
from agent_finops.ledger._planning import CounterRow

__all__ = [
    "LeasePlan",
    "due_charges",
    "merge_charges",
    "plan_charges",
    "plan_grow",
    "plan_shrink",
    "slice_of",
]

_ZERO = Decimal(0)
_add = EXACT.add
_sub = EXACT.subtract
_WHOLE = Decimal(1)
_USD_STEP = Decimal("0.000001")


@dataclass(slots=True)
class LeasePlan:
    """What to write: counters, and the worker's lease amounts by counter key."""

    counters: dict[str, CounterRow] = field(default_factory=dict)
    leases: dict[str, Decimal] = field(default_factory=dict)
    grants: list[LeaseGrant] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)


def slice_of(unit: str, headroom: Decimal, need: Decimal, fraction: Decimal) -> Decimal:
    """How much to lease: what is needed, or `fraction` of the headroom if more (never above it).

    The extra is rounded down (whole tokens and calls, micro-dollars), so a slice is a short
    decimal; near the limit the fraction is less than the need and a slice is exactly the
    call's shortfall, i.e. the lease store decides like a per-call reservation.
    """
    if headroom <= need:
        return need
    step = _USD_STEP if unit == "usd" else _WHOLE
    extra = EXACT.multiply(headroom, fraction).quantize(step, rounding=ROUND_DOWN)
    return min(headroom, max(need, extra))


def plan_grow(
    requests: Sequence[LeaseRequest],
    counters: Mapping[str, CounterRow],
    leases: Mapping[str, Decimal],
) -> LeasePlan:
    """Grow the worker's leases, all or none: refused when an enforced need does not fit.

    `counters` and `leases` (the worker's, by counter key) as the database holds them.
    Raises `ConfigurationError` when a counter counts another unit than its claim.
    """
    plan = LeasePlan()
    for request in requests:
        claim = request.claim
        row = counters.get(claim.counter_key)
        if row is not None and row.unit != claim.unit:
            raise ConfigurationError(
                f"counter {claim.counter_key!r} counts {row.unit}, not {claim.unit}",
                field="unit",
                value=claim.unit,
                expected=claim.unit if row is None else row.unit,
            )
        spent = _ZERO if row is None else row.spent
        reserved = _ZERO if row is None else row.reserved
        used = _add(_add(spent, reserved), request.unseen)
        headroom = _sub(claim.limit, used)
        if claim.enforce and headroom < claim.amount:
            plan.refusals.append(
                Refusal(
                    claim.counter_key, claim.rule_id, claim.unit, claim.limit, used, claim.amount
                )
            )
            continue
        granted = slice_of(claim.unit, max(headroom, _ZERO), claim.amount, request.fraction)
        reserved = _add(reserved, granted)
        lease = _add(leases.get(claim.counter_key, _ZERO), granted)
        plan.counters[claim.counter_key] = CounterRow(
            claim.unit, claim.limit, spent, reserved, claim.window_end
        )
        plan.leases[claim.counter_key] = lease
        plan.grants.append(LeaseGrant(claim.counter_key, granted, lease, spent, reserved))
    if plan.refusals:
        return LeasePlan(refusals=plan.refusals)
    return plan


def merge_charges(charges: Sequence[LeaseCharge]) -> list[LeaseCharge]:
    """One charge per (worker, counter), amounts summed, in key order (the lock order)."""
    sums: dict[tuple[str, str], list[Any]] = {}  # key -> [first charge, spent, consumed]
    for charge in charges:
        key = (charge.counter_key, charge.worker_id)
        found = sums.get(key)
        if found is None:
            sums[key] = [charge, charge.spent, charge.consumed]
        else:
            found[1] = _add(found[1], charge.spent)
            found[2] = _add(found[2], charge.consumed)
    # Checked charges summed stay checked (exact, storable, consumed <= spent): the
    # writer's hot path skips `LeaseCharge.__post_init__`.
    merged = []
    for key in sorted(sums):
        first, spent, consumed = sums[key]
        merged.append(
            checked_charge(
                first.worker_id, first.counter_key, first.unit, first.limit, spent, consumed, None
            )
        )
    return merged


def plan_charges(
    charges: Sequence[LeaseCharge],
    counters: Mapping[str, CounterRow],
    leases: Mapping[tuple[str, str], Decimal],
) -> tuple[dict[str, CounterRow], dict[tuple[str, str], Decimal]]:
    """Counters and leases (by (worker, counter)) after the charges (merged first).

    `spent` grows by each charge in full; `consumed` leaves the lease and `reserved`, but
    never more than the lease still holds: a lease the reaper gave back already (its worker
    was taken for dead) frees nothing twice. A missing counter is recreated.
    """
    rows: dict[str, CounterRow] = {}
    after: dict[tuple[str, str], Decimal] = {}
    for charge in merge_charges(charges):
        key = charge.counter_key
        row = rows.get(key) or counters.get(key)
        if row is None:
            row = CounterRow(charge.unit, charge.limit, _ZERO, _ZERO, None)
        lease_key = (charge.worker_id, key)
        held = after.get(lease_key, leases.get(lease_key))
        freed = _ZERO if held is None else min(charge.consumed, held)
        if held is not None:
            after[lease_key] = _sub(held, freed)
        rows[key] = CounterRow(
            row.unit,
            row.limit,
            _add(row.spent, charge.spent),
            max(_ZERO, _sub(row.reserved, freed)),
            row.window_end,
        )
    return rows, after


def plan_shrink(
    amounts: Mapping[str, Decimal],
    counters: Mapping[str, CounterRow],
    leases: Mapping[str, Decimal],
) -> tuple[dict[str, CounterRow], dict[str, Decimal]]:
    """Give back up to `amounts` of the worker's leases (never more than they hold)."""
    rows: dict[str, CounterRow] = {}
    after: dict[str, Decimal] = {}
    for key in sorted(amounts):
        held = leases.get(key)
        if held is None:
            continue
        back = min(amounts[key], held)
        after[key] = _sub(held, back)
        row = counters.get(key)
        if row is not None and back:
            rows[key] = CounterRow(
                row.unit,
                row.limit,
                row.spent,
                max(_ZERO, _sub(row.reserved, back)),
                row.window_end,
            )
    return rows, after


def due_charges(
    charges: Sequence[LeaseCharge], written: Collection[str], inserted: Collection[str]
) -> list[LeaseCharge]:
    """The charges to apply: those whose event was inserted now, or that came without one.

    A charge whose event is in the write but was already in the ledger (the write is a
    replay) was applied with it the first time.
    """
    return [
        c
        for c in charges
        if c.event_id is None or c.event_id not in written or c.event_id in inserted
    ]
