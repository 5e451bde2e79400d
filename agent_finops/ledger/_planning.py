"""Pure reservation planning: what to reserve, charge or give back, decided from counter values.

Every budget store that decides in Python (in-memory, SQLite) runs these functions inside its
serialized section, so all backends share one definition of "fits", "replayed", "settled"
and "overrun". PostgreSQL decides in SQL; it uses `plan_reserve` to explain a refusal.

A reservation is stored as a list of claim records (plain dicts, decimals as exact text, the
same shape in every backend): counter_key, rule_id, unit, limit, amount, enforce, used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from agent_finops.exceptions import ConfigurationError
from agent_finops.ledger._budget import (
    Claim,
    ClaimUsage,
    Overrun,
    Refusal,
    ReservationState,
    ReserveResult,
    Unit,
)
from agent_finops.ledger._money import EXACT, tidy

__all__ = [
    "ClaimRecord",
    "CounterRow",
    "FinishPlan",
    "claim_record",
    "given_back",
    "plan_finish",
    "plan_reserve",
    "replayed",
]

ClaimRecord = dict[str, Any]
"""One claim as a reservation stores it (see the module docstring)."""

_ZERO = Decimal(0)
_add = EXACT.add
_sub = EXACT.subtract


@dataclass(slots=True)
class CounterRow:
    """One budget counter's values, as a store holds them while it decides."""

    unit: str
    limit: Decimal
    spent: Decimal
    reserved: Decimal
    window_end: Any
    """As the store returned it; written back unchanged."""


@dataclass(slots=True)
class FinishPlan:
    """What settling or releasing a reservation changes."""

    counters: dict[str, CounterRow]
    """Counters to write back."""
    actual: dict[str, str] | None
    """Amount charged per counter key (exact text) when settling; None when releasing."""
    changed: bool
    """Whether anything was charged or given back (False: only the state changes)."""
    overruns: tuple[Overrun, ...] = ()


def plan_reserve(
    call_id: str, claims: Sequence[Claim], counters: Mapping[str, CounterRow]
) -> tuple[ReserveResult, dict[str, CounterRow], list[ClaimRecord]]:
    """The outcome; when granted also the counters to write and the claim records to store.

    Refused when, for any enforced claim, spent + reserved + amount > limit. Raises
    `ConfigurationError` when a counter exists in another unit than its claim.
    """
    refusals: list[Refusal] = []
    observed: list[Decimal] = []
    for claim in claims:
        row = counters.get(claim.counter_key)
        if row is not None and row.unit != claim.unit:
            raise ConfigurationError(
                f"counter {claim.counter_key!r} counts {row.unit}, not {claim.unit}",
                field="unit",
                value=claim.unit,
                expected=row.unit,
            )
        used = _ZERO if row is None else _add(row.spent, row.reserved)
        observed.append(used)
        if claim.enforce and _add(used, claim.amount) > claim.limit:
            refusals.append(
                Refusal(
                    claim.counter_key, claim.rule_id, claim.unit, claim.limit, used, claim.amount
                )
            )
    if refusals:
        now_used = tuple(_usage(c, used) for c, used in zip(claims, observed, strict=True))
        return ReserveResult(call_id, now_used, tuple(refusals), state=None), {}, []
    writes: dict[str, CounterRow] = {}
    usages: list[ClaimUsage] = []
    records: list[ClaimRecord] = []
    for claim, used in zip(claims, observed, strict=True):
        row = counters.get(claim.counter_key)
        writes[claim.counter_key] = CounterRow(
            claim.unit,
            claim.limit,
            _ZERO if row is None else row.spent,
            claim.amount if row is None else _add(row.reserved, claim.amount),
            claim.window_end,
        )
        usage = _usage(claim, _add(used, claim.amount))
        usages.append(usage)
        records.append(claim_record(claim, usage.used))
    return ReserveResult(call_id, tuple(usages)), writes, records


def _usage(claim: Claim, used: Decimal) -> ClaimUsage:
    return ClaimUsage(
        claim.counter_key, claim.rule_id, claim.unit, claim.limit, used, claim.enforce
    )


def claim_record(claim: Claim, used: Decimal) -> ClaimRecord:
    """A claim as stored in the reservation (decimals as exact text)."""
    return {
        "counter_key": claim.counter_key,
        "rule_id": claim.rule_id,
        "unit": claim.unit,
        "limit": str(claim.limit),
        "amount": str(claim.amount),
        "enforce": claim.enforce,
        "used": str(used),
    }


def plan_finish(
    state: str,
    records: list[ClaimRecord],
    counters: dict[str, CounterRow],
    target: ReservationState,
    charges: Mapping[str, Decimal | None],
) -> FinishPlan | None:
    """Settle (`target="settled"`) or release a reservation found in `state`.

    None when there is nothing to do (already settled or released). Settling charges each
    claim the actual amount of its unit, or its estimate when that unit's actual is missing
    or None (an unknown cost is never charged 0), and reports every claim charged more than
    its estimate as an `Overrun`. A reservation that expired is still settled (the spend is
    real) but has nothing left to give back; releasing it only changes its state.
    """
    if state not in ("reserved", "expired"):
        return None
    give_back = state == "reserved"  # an expired reservation was given back already
    settling = target == "settled"
    if not (give_back or settling):
        return FinishPlan({}, None, False)  # expired -> released: only the state changes
    actual: dict[str, str] | None = {} if settling else None
    overruns: list[Overrun] = []
    for record in records:
        key = record["counter_key"]
        counter = counters.get(key)
        if counter is None:  # deleted by hand: recreate it, the spend is still real
            counter = counters[key] = CounterRow(
                record["unit"], Decimal(record["limit"]), _ZERO, _ZERO, None
            )
        estimate = Decimal(record["amount"])
        if give_back:
            counter.reserved = _sub(counter.reserved, estimate)
        if actual is not None:
            charge = charges.get(record["unit"])
            if charge is None:
                charge = estimate
            elif charge > estimate:
                overruns.append(Overrun(key, record["rule_id"], record["unit"], estimate, charge))
            counter.spent = _add(counter.spent, charge)
            actual[key] = str(charge)
    return FinishPlan(counters, actual, True, tuple(overruns))


def given_back(expired: Sequence[list[ClaimRecord]]) -> dict[str, Decimal]:
    """Per counter key, the total estimate that expiring these reservations gives back."""
    total: dict[str, Decimal] = {}
    for records in expired:
        for record in records:
            key = record["counter_key"]
            total[key] = _add(total.get(key, _ZERO), Decimal(record["amount"]))
    return total


def replayed(call_id: str, state: str, records: list[ClaimRecord]) -> ReserveResult:
    """The result of reserving a call id again: its original usage, and its state now."""
    usage = tuple(
        ClaimUsage(
            r["counter_key"],
            r["rule_id"],
            cast(Unit, r["unit"]),
            Decimal(r["limit"]),
            tidy(Decimal(r["used"])),
            bool(r["enforce"]),
        )
        for r in records
    )
    return ReserveResult(call_id, usage, replayed=True, state=cast(ReservationState, state))
