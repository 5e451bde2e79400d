"""The value types of the `BudgetStore` protocol: claims, reservation outcomes, settlements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, NamedTuple, TypeVar

from agent_finops.exceptions import BudgetExceeded
from agent_finops.ledger._money import MONEY_LIMIT, MONEY_PLACES, stored_money

Unit = Literal["usd", "tokens", "calls"]
ReservationState = Literal["reserved", "settled", "released", "expired"]

UNITS: frozenset[str] = frozenset(("usd", "tokens", "calls"))
DEFAULT_RESERVATION_TTL = timedelta(minutes=30)
"""The longest a reservation holds budget, on the database's clock, even if its worker lives."""
DEFAULT_WORKER_LEASE = timedelta(seconds=10)
"""How long a worker's reservations outlive its last heartbeat (its death), database clock."""
DEFAULT_RESERVATION_RETENTION = timedelta(days=1)
"""How long a finished reservation is kept (and its call id idempotent) before it is purged."""
MAX_COUNTER_KEY_LENGTH = 512
MAX_CALL_ID_LENGTH = 128

_ZERO = Decimal(0)
_T = TypeVar("_T")
_INFINITY = Decimal("Infinity")


def exact_amount(value: object, what: str, key: str | None = None) -> Decimal:
    """A finite, non-negative, storable `Decimal` from a Decimal, int or decimal string.

    Floats are refused (inexact). More than 18 decimals are rounded half-even to 18, the
    quantum every backend stores (`MONEY_PLACES`). `what` (and `key`: `what[key]`) names the
    value in errors. On the hot path of every reservation: a plain Decimal in range costs
    three comparisons.
    """
    if type(value) is Decimal and value.is_finite() and _ZERO <= value < MONEY_LIMIT:
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and exponent >= -MONEY_PLACES:
            return value
        return stored_money(value)
    name = what if key is None else f"{what}[{key!r}]"
    if isinstance(value, float | bool) or not isinstance(value, Decimal | int | str):
        raise TypeError(f"{name} must be a Decimal, not {value!r} (inexact)")
    amount = value if isinstance(value, Decimal) else Decimal(value)
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{name} must be a finite amount >= 0, got {value!r}")
    if amount >= MONEY_LIMIT:
        raise ValueError(f"{name} must be below {MONEY_LIMIT:.0e}, got {value!r}")
    return stored_money(amount)


@dataclass(frozen=True, slots=True)
class Claim:
    """One budget a call counts against, and the call's worst-case amount in its unit."""

    counter_key: str
    """Identity of the counter: rule, scope values and window (e.g. `daily|team=a|2025-01-02`)."""
    rule_id: str
    """The policy rule that owns the budget (reported on refusal)."""
    unit: Unit
    """`usd`, `tokens` or `calls`."""
    limit: Decimal
    """The cap, in `unit`."""
    amount: Decimal
    """Worst-case estimate of this call, in `unit`."""
    window_end: datetime | None = None
    """End of the budget window the counter belongs to (None: no window)."""
    enforce: bool = True
    """False: shadow / warn only; counted but never refuses."""
    private: bool = False
    """Only this process ever charges the counter (the cap of a run without a thread: it
    cannot be resumed elsewhere, and its key holds the trace id minted here). A lease
    store decides it in memory from the whole limit, with no database transaction; its
    spend still reaches the counter, with each call's cost event. Other stores ignore it."""

    def __post_init__(self) -> None:
        """Validate, and accept `int` or `str` amounts as exact decimals."""
        object.__setattr__(self, "limit", exact_amount(self.limit, "Claim.limit"))
        object.__setattr__(self, "amount", exact_amount(self.amount, "Claim.amount"))
        if self.unit not in UNITS:
            raise ValueError(f"Claim.unit must be one of {sorted(UNITS)}, got {self.unit!r}")
        if not self.counter_key or len(self.counter_key) > MAX_COUNTER_KEY_LENGTH:
            raise ValueError(f"Claim.counter_key must be 1-{MAX_COUNTER_KEY_LENGTH} characters")


@dataclass(frozen=True, slots=True)
class ClaimUsage:
    """How full one counter is after the reservation (or now, when refused)."""

    counter_key: str
    rule_id: str
    unit: Unit
    limit: Decimal
    used: Decimal
    """spent + reserved on the counter, this call included when granted."""
    enforce: bool

    @property
    def fraction(self) -> Decimal:
        """`used / limit` (Infinity for a zero limit with use), for threshold notifications."""
        if self.limit > 0:
            return self.used / self.limit
        return _INFINITY if self.used > 0 else _ZERO


@dataclass(frozen=True, slots=True)
class Refusal:
    """An enforced claim that the call would push over its limit."""

    counter_key: str
    rule_id: str
    unit: Unit
    limit: Decimal
    observed: Decimal
    """spent + reserved on the counter before this call."""
    amount: Decimal
    """The call's estimate that did not fit."""

    def to_error(self, *, trace_id: str | None = None) -> BudgetExceeded:
        """The `BudgetExceeded` to raise for this refusal."""
        return BudgetExceeded(
            f"budget {self.rule_id!r} ({self.counter_key}) would be exceeded: "
            f"{self.observed} {self.unit} spent or reserved + {self.amount} estimated "
            f"> limit {self.limit}",
            rule_id=self.rule_id,
            limit=self.limit,
            observed=self.observed,
            trace_id=trace_id,
            unit=self.unit,
        )


@dataclass(frozen=True, slots=True)
class ReserveResult:
    """Outcome of `BudgetStore.reserve`."""

    call_id: str
    usage: tuple[ClaimUsage, ...]
    """One entry per claim, in claim order."""
    refusals: tuple[Refusal, ...] = ()
    """Enforced claims that did not fit, in claim order; empty when granted."""
    replayed: bool = False
    """True when this call id had been reserved before: the original result is returned."""
    state: ReservationState | None = "reserved"
    """The reservation's state now (None when refused: nothing was reserved)."""

    @property
    def granted(self) -> bool:
        """True when every claim was reserved."""
        return not self.refusals

    @property
    def refused(self) -> Refusal | None:
        """The first refusal, if any."""
        return self.refusals[0] if self.refusals else None

    def raise_if_refused(self, *, trace_id: str | None = None) -> None:
        """Raise `BudgetExceeded` (limit, observed, rule_id as attributes) if refused."""
        if self.refusals:
            raise self.refusals[0].to_error(trace_id=trace_id)


@dataclass(frozen=True, slots=True)
class Overrun:
    """A claim whose settled actual amount exceeded the amount reserved for it."""

    counter_key: str
    rule_id: str
    unit: Unit
    reserved: Decimal
    """The call's estimate on this counter."""
    actual: Decimal
    """What was charged (more than `reserved`)."""
    used: Decimal | None = field(default=None, compare=False)
    """Spent + reserved on the counter after the charge, as the store sees it (None: read
    the counter; a lease store's view includes charges not yet written)."""
    limit: Decimal | None = field(default=None, compare=False)
    """The counter's limit, with `used`."""

    @property
    def excess(self) -> Decimal:
        """`actual - reserved` (> 0)."""
        return self.actual - self.reserved


@dataclass(frozen=True, slots=True)
class Settlement:
    """Outcome of `BudgetStore.settle`: truthy iff this call recorded the spend now.

    Falsy when the reservation was already settled, was released, or never existed (every
    settle after the first is a no-op), so `if store.settle(...):` reads as before.
    """

    call_id: str
    settled: bool
    overruns: tuple[Overrun, ...] = ()
    """Claims whose actual amount exceeded their reservation, in claim order (the policy
    engine records an `overrun` decision for each). Empty when not settled now."""

    def __bool__(self) -> bool:
        """Whether the spend was recorded by this call."""
        return self.settled


class CounterState(NamedTuple):
    """A counter as stored."""

    spent: Decimal
    reserved: Decimal
    limit: Decimal


DEFAULT_LEASE_FRACTION = Decimal("0.125")
"""The share of a budget's remaining headroom a worker leases at a time, beyond a call's need."""
DEFAULT_LEASE_IDLE = timedelta(seconds=2)
"""A budget lease unused for this long is given back (so other workers can have it)."""


@dataclass(frozen=True, slots=True)
class LeaseCharge:
    """What a call decided from a worker's budget lease cost, for one counter.

    Written by the ledger in the same transaction as the call's cost event (`Ledger.write`),
    so the counter and the ledger never disagree: the counter's `spent` grows by `spent`,
    and `consumed` of it (at most what the worker's lease still holds in the database) moves
    out of the lease and out of the counter's `reserved`. Applied once: when `event_id` is
    given, only if that event is inserted by the same write (a replayed write is a no-op).
    """

    worker_id: str
    counter_key: str
    unit: Unit
    limit: Decimal
    """The limit claimed (recreates the counter if it was deleted by hand)."""
    spent: Decimal
    consumed: Decimal
    event_id: str | None = None
    """The cost event this charge belongs to (its idempotency key), if any."""

    def __post_init__(self) -> None:
        """Validate the amounts (exact, storable, consumed <= spent)."""
        object.__setattr__(self, "spent", exact_amount(self.spent, "LeaseCharge.spent"))
        object.__setattr__(self, "consumed", exact_amount(self.consumed, "LeaseCharge.consumed"))
        object.__setattr__(self, "limit", exact_amount(self.limit, "LeaseCharge.limit"))
        if self.consumed > self.spent:
            raise ValueError(
                f"LeaseCharge.consumed ({self.consumed}) must not exceed spent ({self.spent})"
            )
        if self.unit not in UNITS:
            raise ValueError(f"LeaseCharge.unit must be one of {sorted(UNITS)}, got {self.unit!r}")


@dataclass(frozen=True, slots=True)
class LeaseRequest:
    """Grow a worker's lease on one counter by at least `claim.amount` (a call's shortfall)."""

    claim: Claim
    """The counter, its rule, unit, limit (written to the counter), window; `amount`: needed."""
    fraction: Decimal = DEFAULT_LEASE_FRACTION
    """Take up to this share of the counter's remaining headroom, if more than needed."""
    unseen: Decimal = _ZERO
    """Spend of this worker's calls beyond its lease that the database may not hold yet
    (an overrun, a call that failed open, whose charge is still on its way): counted as
    used by the grow, so a grow never decides from a counter without it."""


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    """What a lease grew by, and the counter as the database holds it afterwards."""

    counter_key: str
    granted: Decimal
    lease: Decimal
    """The worker's lease on the counter in the database, after the grant."""
    spent: Decimal
    reserved: Decimal
    """The counter's reserved amount after the grant (every worker's leases included)."""


def _unchecked(cls: type[_T]) -> Callable[..., _T]:
    """A constructor of the frozen slotted dataclass `cls` that skips `__post_init__`.

    It takes the field values in field order and sets each slot through its descriptor
    (a frozen class refuses `setattr`): generated once per class, a third of the cost of
    a loop of `object.__setattr__` (measured), for the hot path of every guarded call.
    """
    names = tuple(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    scope: dict[str, Any] = {"new": object.__new__, "cls": cls}
    scope.update({f"set_{name}": getattr(cls, name).__set__ for name in names})
    sets = "".join(f"    set_{name}(made, {name})\n" for name in names)
    source = f"def make({', '.join(names)}):\n    made = new(cls)\n{sets}    return made\n"
    exec(source, scope)  # the source is built from the class's own field names
    made: Callable[..., _T] = scope["make"]
    return made


def checked_claim(
    counter_key: str,
    rule_id: str,
    unit: Unit,
    limit: Decimal,
    amount: Decimal,
    window_end: datetime | None,
    enforce: bool,
    private: bool = False,
) -> Claim:
    """A `Claim` of values its caller has already checked (`Claim.__post_init__` skipped).

    For the policy engine's hot path: `limit` and `amount` are stored amounts
    (`exact_amount`), `unit` one of `UNITS`, `counter_key` of an accepted length.
    """
    return _new_claim(counter_key, rule_id, unit, limit, amount, window_end, enforce, private)


def checked_charge(
    worker_id: str,
    counter_key: str,
    unit: Unit,
    limit: Decimal,
    spent: Decimal,
    consumed: Decimal,
    event_id: str | None,
) -> LeaseCharge:
    """A `LeaseCharge` of checked values; `LeaseCharge.__post_init__` skipped.

    For a lease store's settle: from its checked claim and the settled amount, with
    `consumed <= spent`.
    """
    return _new_charge(worker_id, counter_key, unit, limit, spent, consumed, event_id)


_new_claim = _unchecked(Claim)
_new_charge = _unchecked(LeaseCharge)
