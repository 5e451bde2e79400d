"""What every backend shares: async twins, the context manager, argument checks, reserve's retry.

`LedgerBase` and `BudgetStoreBase` are for backend implementers. A backend implements the
sync methods; the base classes add the async twins (each runs the sync method in a worker
thread with `asyncio.to_thread`, so a backend whose calls block on I/O never blocks the event
loop), `with` support, and the argument checks and rules that must not differ between
backends (call ids, amounts, limits, the expire-then-retry of a refused reservation).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import TracebackType
from typing import Self

from agent_finops.exceptions import ConfigurationError, NotFound
from agent_finops.ledger._budget import (
    MAX_CALL_ID_LENGTH,
    Claim,
    CounterState,
    ReservationState,
    ReserveResult,
    Settlement,
    exact_amount,
)
from agent_finops.ledger._protocol import Clock
from agent_finops.ledger._records import (
    ApprovalRecord,
    ApprovalStatus,
    CostEvent,
    DecidedStatus,
    DecisionRecord,
    RunRecord,
    RunSummary,
    SpanRecord,
    TraceData,
)

__all__ = [
    "MAX_CANDIDATES",
    "BudgetStoreBase",
    "LedgerBase",
    "as_utc",
    "check_aware",
    "check_limit",
    "check_status",
    "one_match",
    "utcnow",
]

DECIDED_STATUSES = frozenset(("approved", "denied", "expired"))
MAX_LIMIT = 100_000
MAX_CANDIDATES = 20
"""How many matching ids a `NotFound` for an ambiguous prefix carries."""


def utcnow() -> datetime:
    """The current time, aware, in UTC (the default clock)."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """Aware, in UTC; a naive datetime is taken to be UTC (budget stores always did)."""
    if moment.tzinfo is UTC:
        return moment
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def check_limit(limit: int) -> int:
    """A row limit given to a list call: an int from 1 to 100,000."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ConfigurationError(
            "bad row limit", field="limit", value=limit, expected=f"an integer 1-{MAX_LIMIT}"
        )
    return limit


def check_aware(moment: datetime, name: str) -> datetime:
    """A moment given to a ledger call: it must be timezone-aware (the ledger stores UTC)."""
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise ConfigurationError(
            "a ledger needs timezone-aware datetimes",
            field=name,
            value=moment,
            expected="an aware datetime, e.g. datetime.now(UTC)",
        )
    return moment


def one_match(prefix: str, matches: Sequence[str], error: type[NotFound], what: str) -> str:
    """The one id of sorted `matches` (ids starting with `prefix`), else `error`.

    Ambiguous: the error carries the first `MAX_CANDIDATES` matches as `candidates`.
    """
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise error(f"no {what} {prefix!r} in the ledger", key=prefix)
    raise error(
        f"{what} id prefix {prefix!r} is ambiguous",
        key=prefix,
        candidates=list(matches[:MAX_CANDIDATES]),
    )


def check_status(status: str) -> None:
    """A status `decide_approval` can set."""
    if status not in DECIDED_STATUSES:
        raise ConfigurationError(
            "an approval can only be decided approved, denied or expired",
            field="status",
            value=status,
            expected="approved, denied or expired",
        )


class LedgerBase(ABC):
    """Base class of ledger backends: the `Ledger` protocol's async twins and `with` support.

    Subclasses implement the sync methods of `Ledger`.
    """

    def __enter__(self) -> Self:
        """Return the ledger; it closes on exit."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the ledger."""
        self.close()

    @abstractmethod
    def close(self) -> None:
        """Release what the ledger holds."""

    @abstractmethod
    def write(
        self,
        *,
        runs: Sequence[RunRecord] = (),
        spans: Sequence[SpanRecord] = (),
        events: Sequence[CostEvent] = (),
        decisions: Sequence[DecisionRecord] = (),
    ) -> None:
        """Write records in one transaction (see `Ledger.write`)."""

    @abstractmethod
    def list_runs(self, *, limit: int = 20, thread_id: str | None = None) -> list[RunSummary]:
        """See `Ledger.list_runs`."""

    @abstractmethod
    def load_trace(self, trace_id: str) -> TraceData:
        """See `Ledger.load_trace`."""

    @abstractmethod
    def get_approval(self, id_or_prefix: str) -> ApprovalRecord:
        """See `Ledger.get_approval`."""

    @abstractmethod
    def find_approval(self, approval_id: str) -> ApprovalRecord | None:
        """See `Ledger.find_approval`."""

    @abstractmethod
    def list_approvals(
        self,
        *,
        status: ApprovalStatus | None = None,
        trace_id: str | None = None,
        thread_id: str | None = None,
        limit: int = 50,
    ) -> list[ApprovalRecord]:
        """See `Ledger.list_approvals`."""

    @abstractmethod
    def decide_approval(
        self,
        approval_id: str,
        *,
        status: DecidedStatus,
        by: str,
        at: datetime,
        reason: str | None = None,
        extra: Decimal | None = None,
    ) -> ApprovalRecord:
        """See `Ledger.decide_approval`."""

    @abstractmethod
    def take_decision(
        self, *, thread_id: str | None, trace_id: str | None, at: datetime
    ) -> ApprovalRecord | None:
        """See `Ledger.take_decision`."""

    @abstractmethod
    def has_open_requests(self, *, thread_id: str | None, trace_id: str | None) -> bool:
        """See `Ledger.has_open_requests`."""

    @abstractmethod
    def mark_applied(self, approval_id: str, *, at: datetime) -> None:
        """See `Ledger.mark_applied`."""

    # -- async twins: the sync method, in a worker thread -----------------------------------

    async def awrite(
        self,
        *,
        runs: Sequence[RunRecord] = (),
        spans: Sequence[SpanRecord] = (),
        events: Sequence[CostEvent] = (),
        decisions: Sequence[DecisionRecord] = (),
    ) -> None:
        """Async twin of `write`."""
        await asyncio.to_thread(
            self.write, runs=runs, spans=spans, events=events, decisions=decisions
        )

    async def aload_trace(self, trace_id: str) -> TraceData:
        """Async twin of `load_trace`."""
        return await asyncio.to_thread(self.load_trace, trace_id)

    async def aget_approval(self, id_or_prefix: str) -> ApprovalRecord:
        """Async twin of `get_approval`."""
        return await asyncio.to_thread(self.get_approval, id_or_prefix)

    async def afind_approval(self, approval_id: str) -> ApprovalRecord | None:
        """Async twin of `find_approval`."""
        return await asyncio.to_thread(self.find_approval, approval_id)

    async def alist_approvals(
        self,
        *,
        status: ApprovalStatus | None = None,
        trace_id: str | None = None,
        thread_id: str | None = None,
        limit: int = 50,
    ) -> list[ApprovalRecord]:
        """Async twin of `list_approvals`."""
        return await asyncio.to_thread(
            self.list_approvals, status=status, trace_id=trace_id, thread_id=thread_id, limit=limit
        )

    async def adecide_approval(
        self,
        approval_id: str,
        *,
        status: DecidedStatus,
        by: str,
        at: datetime,
        reason: str | None = None,
        extra: Decimal | None = None,
    ) -> ApprovalRecord:
        """Async twin of `decide_approval`."""
        return await asyncio.to_thread(
            self.decide_approval,
            approval_id,
            status=status,
            by=by,
            at=at,
            reason=reason,
            extra=extra,
        )

    async def atake_decision(
        self, *, thread_id: str | None, trace_id: str | None, at: datetime
    ) -> ApprovalRecord | None:
        """Async twin of `take_decision`."""
        return await asyncio.to_thread(
            self.take_decision, thread_id=thread_id, trace_id=trace_id, at=at
        )

    async def ahas_open_requests(self, *, thread_id: str | None, trace_id: str | None) -> bool:
        """Async twin of `has_open_requests`."""
        return await asyncio.to_thread(
            self.has_open_requests, thread_id=thread_id, trace_id=trace_id
        )

    async def amark_applied(self, approval_id: str, *, at: datetime) -> None:
        """Async twin of `mark_applied`."""
        await asyncio.to_thread(self.mark_applied, approval_id, at=at)


class BudgetStoreBase(ABC):
    """Base class of budget stores: argument checks, reserve's retry, `reservation`, `with`.

    Subclasses implement the primitive operations (`_reserve`, `_settle`, `_release`,
    `_expire`) and the reads; the public methods here validate their arguments and fill in
    "now" from the clock (always aware UTC: a naive moment is taken to be UTC), so that every
    backend refuses and defaults alike.

    Two times. The caller's "now" (an operation's `now=`, else the store's `clock`) only
    stamps what the caller did (`created_at`, `finished_at`, counters' `updated_at`; what
    `purge(finished_before)` compares with); budget windows are chosen from it by the caller,
    in the claims' counter keys. Reservation expiry never trusts it: `_reserve` gets the
    TTL, not a deadline, and the backend computes `expires_at` from the database's clock;
    `_expire(None)` judges by that clock too (a worker whose clock runs ahead must not give
    back other workers' live reservations).
    """

    def __init__(self, *, clock: Clock | None, default_ttl: timedelta) -> None:
        """Keep the clock and the default time to live of a reservation."""
        self._clock: Clock = clock or utcnow
        self._default_ttl = default_ttl

    # -- primitives ---------------------------------------------------------------------

    @abstractmethod
    def _reserve(
        self,
        call_id: str,
        claims: Sequence[Claim],
        trace_id: str | None,
        now: datetime,
        ttl: timedelta,
    ) -> ReserveResult:
        """Reserve once (validated arguments); no expire-and-retry.

        `now` is the caller's time (stamps only); the reservation expires `ttl` after the
        database's "now" (its worker's lease may end it earlier).
        """

    @abstractmethod
    def _settle(
        self, call_id: str, now: datetime, charges: Mapping[str, Decimal | None]
    ) -> Settlement:
        """Settle at validated charges (`None`: charge the estimate)."""

    @abstractmethod
    def _release(self, call_id: str, now: datetime) -> bool:
        """Release; True if amounts were given back now."""

    @abstractmethod
    def _expire(self, at: datetime | None) -> list[str]:
        """Expire reservations due at `at` on the database's timeline (None: its clock now).

        Due: past their `expires_at`, or held by a worker whose lease ran out. Their call
        ids, sorted.
        """

    @abstractmethod
    def purge(self, finished_before: datetime) -> int:
        """See `BudgetStore.purge`."""

    @abstractmethod
    def counter(self, counter_key: str) -> CounterState | None:
        """See `BudgetStore.counter`."""

    @abstractmethod
    def reservation_state(self, call_id: str) -> ReservationState | None:
        """See `BudgetStore.reservation_state`."""

    @abstractmethod
    def close(self) -> None:
        """See `BudgetStore.close`."""

    # -- the protocol -------------------------------------------------------------------

    def reserve(
        self,
        call_id: str,
        claims: Sequence[Claim],
        *,
        trace_id: str | None,
        now: datetime | None = None,
        ttl: timedelta | None = None,
    ) -> ReserveResult:
        """See `BudgetStore.reserve`."""
        _check_call_id(call_id)
        if len({c.counter_key for c in claims}) != len(claims):
            raise ValueError(f"claims of call {call_id!r} name a counter more than once")
        now = as_utc(now or self._clock())
        ttl = self._default_ttl if ttl is None else ttl
        result = self._reserve(call_id, claims, trace_id, now, ttl)
        # Reclaim by the database's clock, never by `now`: a skewed caller expires nothing live.
        if not result.granted and self._expire(None):
            result = self._reserve(call_id, claims, trace_id, now, ttl)
        return result

    def settle(
        self,
        call_id: str,
        actual: Mapping[str, Decimal | int | None],
        *,
        now: datetime | None = None,
    ) -> Settlement:
        """See `BudgetStore.settle`."""
        charges: dict[str, Decimal | None] = {}
        for unit, value in actual.items():
            if value is None:
                charges[unit] = None
            elif isinstance(value, Decimal | int) and not isinstance(value, bool):
                charges[unit] = exact_amount(value, "actual", unit)
            else:
                raise TypeError(f"actual[{unit!r}] must be a Decimal or int, got {value!r}")
        return self._settle(call_id, as_utc(now or self._clock()), charges)

    def release(self, call_id: str, *, now: datetime | None = None) -> bool:
        """See `BudgetStore.release`."""
        return self._release(call_id, as_utc(now or self._clock()))

    def expire(self, now: datetime | None = None) -> list[str]:
        """See `BudgetStore.expire` (`now` is a moment of the database's clock, not `clock`)."""
        return self._expire(None if now is None else as_utc(now))

    @contextmanager
    def reservation(
        self,
        call_id: str,
        claims: Sequence[Claim],
        *,
        trace_id: str | None,
        ttl: timedelta | None = None,
    ) -> Iterator[ReserveResult]:
        """See `BudgetStore.reservation`."""
        result = self.reserve(call_id, claims, trace_id=trace_id, ttl=ttl)
        result.raise_if_refused(trace_id=trace_id)
        try:
            yield result
        except BaseException:
            self.release(call_id)
            raise
        self.settle(call_id, {})

    def __enter__(self) -> Self:
        """Return the store; it closes on exit."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        self.close()


def _check_call_id(call_id: str) -> None:
    if not isinstance(call_id, str) or not call_id or len(call_id) > MAX_CALL_ID_LENGTH:
        raise ValueError(f"call_id must be 1-{MAX_CALL_ID_LENGTH} characters, got {call_id!r}")
