"""The reference backend: a thread-safe ledger and budget store in this process's memory.

Same semantics as the SQL backends (it passes the same conformance suite), decided by the same
pure planning functions, with one lock instead of a database. Nothing survives the process:
use it in tests, in notebooks, and as the model for a new backend.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar, cast

from agent_finops.exceptions import (
    AlertNotFound,
    AlreadyDecided,
    ApprovalNotFound,
    LedgerError,
    RunNotFound,
)
from agent_finops.ledger._aggregates import (
    Aggregate,
    Window,
    aggregate_events,
    check_query,
    dimension_value,
)
from agent_finops.ledger._base import (
    BudgetStoreBase,
    LedgerBase,
    as_utc,
    check_aware,
    check_limit,
    check_status,
    one_match,
    utcnow,
)
from agent_finops.ledger._budget import (
    DEFAULT_LEASE_FRACTION,
    DEFAULT_LEASE_IDLE,
    DEFAULT_RESERVATION_RETENTION,
    DEFAULT_RESERVATION_TTL,
    DEFAULT_WORKER_LEASE,
    Claim,
    CounterState,
    LeaseCharge,
    LeaseGrant,
    LeaseRequest,
    Refusal,
    ReservationState,
    ReserveResult,
    Settlement,
)
from agent_finops.ledger._lease_planning import (
    due_charges,
    plan_charges,
    plan_grow,
    plan_shrink,
)
from agent_finops.ledger._leased import LeasedBudgetStore
from agent_finops.ledger._money import EXACT, stored_money, tidy
from agent_finops.ledger._planning import (
    ClaimRecord,
    CounterRow,
    given_back,
    plan_finish,
    plan_reserve,
    replayed,
)
from agent_finops.ledger._protocol import BudgetStore, ChargeSink, Clock, Ledger
from agent_finops.ledger._records import (
    AlertRecord,
    ApprovalRecord,
    ApprovalStatus,
    CostEvent,
    DecidedStatus,
    DecisionRecord,
    RunRecord,
    RunSummary,
    SpanRecord,
    TraceData,
    bucket_of,
    with_event_spans,
)

__all__ = ["InMemoryBudgetStore", "InMemoryLedger"]

_DECIDED = ("approved", "denied", "expired")
_R = TypeVar("_R")


class InMemoryLedger(LedgerBase):
    """A `Ledger` held in memory: thread-safe, idempotent, all-or-nothing, like the SQL ones.

    Records are copied in and out (changing a record after writing it, or one read back,
    changes nothing stored). `budget_store()` returns stores that share this ledger's
    budget counters, as stores on one database do.
    """

    def __init__(self) -> None:
        """An empty ledger."""
        self._lock = threading.RLock()
        self._runs: dict[str, RunRecord] = {}
        self._spans: dict[str, SpanRecord] = {}
        self._events: dict[str, CostEvent] = {}
        self._decisions: dict[str, DecisionRecord] = {}
        self._approvals: dict[str, ApprovalRecord] = {}
        self._alerts: dict[str, AlertRecord] = {}
        self._book = _BudgetBook()

    # -- lifecycle ------------------------------------------------------------------------

    def setup(self) -> None:
        """Nothing to create; safe to call any number of times."""

    def close(self) -> None:
        """Nothing to release (the records stay readable)."""

    # -- writes ---------------------------------------------------------------------------

    def write(
        self,
        *,
        runs: Sequence[RunRecord] = (),
        spans: Sequence[SpanRecord] = (),
        events: Sequence[CostEvent] = (),
        decisions: Sequence[DecisionRecord] = (),
        charges: Sequence[LeaseCharge] = (),
    ) -> None:
        """Write records all or none; see `Ledger.write`."""
        try:
            new_runs = [_stored(r) for r in runs]
            new_spans = [_stored(s) for s in spans if not s.on_event]  # on their events
            new_events = [_stored(e) for e in events]
            new_decisions = [_stored(d) for d in decisions]
        except (TypeError, ValueError) as exc:
            raise LedgerError(
                f"ledger write failed, nothing written: {exc}", retryable=False
            ) from exc
        with self._lock:
            self._runs.update((r.trace_id, r) for r in new_runs)
            self._spans.update((s.span_id, s) for s in new_spans)
            inserted = set()
            for event in new_events:
                if event.event_id not in self._events:
                    inserted.add(event.event_id)
                    self._events[event.event_id] = event
            if charges:
                written = {e.event_id for e in new_events}
                self._book.apply_charges(due_charges(charges, written, inserted))
            for decision in new_decisions:
                self._decisions.setdefault(decision.decision_id, decision)

    # -- runs -----------------------------------------------------------------------------

    def list_runs(self, *, limit: int = 20, thread_id: str | None = None) -> list[RunSummary]:
        """See `Ledger.list_runs`."""
        check_limit(limit)
        with self._lock:
            runs = [r for r in self._runs.values() if thread_id is None or r.thread_id == thread_id]
            runs.sort(key=lambda r: r.started_at, reverse=True)
            runs = runs[:limit]
            wanted = {r.trace_id for r in runs}
            events = [e for e in self._events.values() if e.trace_id in wanted]
        cost = {r.trace_id: Decimal(0) for r in runs}
        counts = {r.trace_id: [0, 0, 0] for r in runs}  # unpriced, model, tool
        for e in events:
            if e.cost is None:
                counts[e.trace_id][0] += 1
            else:
                cost[e.trace_id] = EXACT.add(cost[e.trace_id], e.cost)
            counts[e.trace_id][1 if e.kind == "model" else 2] += 1
        return [RunSummary(_copy(r), cost[r.trace_id], *counts[r.trace_id]) for r in runs]

    def thread_runs(self, thread_id: str) -> list[RunRecord]:
        """See `Ledger.thread_runs`."""
        with self._lock:
            runs = [r for r in self._runs.values() if r.thread_id == thread_id]
        return [_copy(r) for r in sorted(runs, key=lambda r: r.started_at)]

    def resolve_run_id(self, id_or_prefix: str) -> str:
        """See `Ledger.resolve_run_id`."""
        with self._lock:
            if id_or_prefix in self._runs:
                return id_or_prefix
            matches = sorted(i for i in self._runs if i.startswith(id_or_prefix))
        return one_match(id_or_prefix, matches, RunNotFound, "run")

    def resolve_thread_id(self, id_or_prefix: str) -> str | None:
        """See `Ledger.resolve_thread_id`."""
        with self._lock:
            threads = {r.thread_id for r in self._runs.values() if r.thread_id is not None}
        if id_or_prefix in threads:
            return id_or_prefix
        matches = sorted(t for t in threads if t.startswith(id_or_prefix))
        if not matches:
            return None
        return one_match(id_or_prefix, matches, RunNotFound, "thread")

    def load_trace(self, trace_id: str) -> TraceData:
        """See `Ledger.load_trace`."""
        with self._lock:
            run = self._runs.get(trace_id)
            if run is None:
                raise RunNotFound(f"no run {trace_id!r} in the ledger", key=trace_id)
            spans = [s for s in self._spans.values() if s.trace_id == trace_id]
            events = [e for e in self._events.values() if e.trace_id == trace_id]
        spans.sort(key=lambda s: s.started_at)
        events.sort(key=lambda e: e.created_at)
        copies = [_copy(s) for s in spans]
        return TraceData(
            run=_copy(run),
            spans=with_event_spans(copies, events),
            events=[_copy(e) for e in events],
        )

    def decisions_for(self, trace_id: str) -> list[DecisionRecord]:
        """See `Ledger.decisions_for`."""
        with self._lock:
            found = [d for d in self._decisions.values() if d.trace_id == trace_id]
        return [_copy(d) for d in sorted(found, key=lambda d: d.created_at)]

    # -- approvals ------------------------------------------------------------------------

    def add_approval(self, approval: ApprovalRecord) -> ApprovalRecord:
        """See `Ledger.add_approval`."""
        try:
            stored = _stored(approval)
        except (TypeError, ValueError) as exc:
            raise LedgerError(f"cannot record approval request: {exc}", retryable=False) from exc
        with self._lock:
            return _copy(self._approvals.setdefault(stored.approval_id, stored))

    def get_approval(self, id_or_prefix: str) -> ApprovalRecord:
        """See `Ledger.get_approval`."""
        with self._lock:
            found = self._approvals.get(id_or_prefix)
            if found is None:
                ids = sorted(i for i in self._approvals if i.startswith(id_or_prefix))
                found = self._approvals[
                    one_match(id_or_prefix, ids, ApprovalNotFound, "approval request")
                ]
            return _copy(found)

    def find_approval(self, approval_id: str) -> ApprovalRecord | None:
        """See `Ledger.find_approval`."""
        with self._lock:
            found = self._approvals.get(approval_id)
            return None if found is None else _copy(found)

    def list_approvals(
        self,
        *,
        status: ApprovalStatus | None = None,
        trace_id: str | None = None,
        thread_id: str | None = None,
        limit: int = 50,
    ) -> list[ApprovalRecord]:
        """See `Ledger.list_approvals`."""
        check_limit(limit)
        with self._lock:
            found = [
                a
                for a in self._approvals.values()
                if (status is None or a.status == status)
                and (trace_id is None or a.trace_id == trace_id)
                and (thread_id is None or a.thread_id == thread_id)
            ]
        found.sort(key=lambda a: a.created_at, reverse=True)
        return [_copy(a) for a in found[:limit]]

    def due_approvals(self, now: datetime, *, limit: int = 100) -> list[ApprovalRecord]:
        """See `Ledger.due_approvals`."""
        check_limit(limit)
        now = check_aware(now, "now").astimezone(UTC)
        with self._lock:
            due = [
                a
                for a in self._approvals.values()
                if a.status == "pending" and a.expires_at is not None and a.expires_at <= now
            ]
        due.sort(key=lambda a: cast(datetime, a.expires_at))
        return [_copy(a) for a in due[:limit]]

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
        check_status(status)
        at = check_aware(at, "at").astimezone(UTC)
        extra = None if extra is None else _money(extra, "extra")
        with self._lock:
            request = self._approvals[self.get_approval(approval_id).approval_id]
            if request.status != "pending":
                raise AlreadyDecided(
                    request.approval_id,
                    status=request.status,
                    decided_by=request.decided_by,
                    decided_at=request.decided_at,
                )
            decided = replace(
                request, status=status, decided_by=by, decided_at=at, reason=reason, extra=extra
            )
            self._approvals[decided.approval_id] = decided
            return _copy(decided)

    def take_decision(
        self, *, thread_id: str | None, trace_id: str | None, at: datetime
    ) -> ApprovalRecord | None:
        """See `Ledger.take_decision`."""
        at = check_aware(at, "at").astimezone(UTC)
        with self._lock:
            ready = [
                a
                for a in self._of_run(thread_id, trace_id)
                if a.status in _DECIDED and a.applied_at is None
            ]
            if not ready:
                return None
            oldest = min(ready, key=lambda a: a.created_at)
            taken = self._approvals[oldest.approval_id] = replace(oldest, applied_at=at)
            return _copy(taken)

    def has_open_requests(self, *, thread_id: str | None, trace_id: str | None) -> bool:
        """See `Ledger.has_open_requests`."""
        with self._lock:
            return any(
                a.status == "pending" or (a.status in _DECIDED and a.applied_at is None)
                for a in self._of_run(thread_id, trace_id)
            )

    def mark_applied(self, approval_id: str, *, at: datetime) -> None:
        """See `Ledger.mark_applied`."""
        at = check_aware(at, "at").astimezone(UTC)
        with self._lock:
            found = self._approvals.get(approval_id)
            if found is not None and found.applied_at is None:
                self._approvals[approval_id] = replace(found, applied_at=at)

    def _of_run(self, thread_id: str | None, trace_id: str | None) -> list[ApprovalRecord]:
        if thread_id is not None:
            return [a for a in self._approvals.values() if a.thread_id == thread_id]
        return [a for a in self._approvals.values() if a.trace_id == trace_id]

    # -- finance ------------------------------------------------------------------------

    def aggregate(
        self,
        *,
        by: Sequence[str] = (),
        windows: Sequence[Window],
        where: Mapping[str, Sequence[str]] | None = None,
        runtime: bool = False,
        distinct: bool = True,
    ) -> list[Aggregate]:
        """See `Ledger.aggregate`."""
        dims, spans, filters = check_query(by, windows, where)
        with self._lock:
            events = list(self._events.values())
            seconds = (
                {
                    r.trace_id: (r.ended_at - r.started_at).total_seconds()
                    for r in self._runs.values()
                    if r.ended_at is not None
                }
                if runtime
                else {}
            )
        found = aggregate_events(events, seconds, dims, spans, filters)
        if not distinct:
            for a in found:
                a.totals.runs = a.totals.tasks = 0
        return found

    def iter_events(
        self,
        start: datetime,
        end: datetime,
        *,
        where: Mapping[str, Sequence[str]] | None = None,
        batch_size: int = 1000,
    ) -> Iterator[CostEvent]:
        """See `Ledger.iter_events`."""
        check_limit(batch_size)
        _, _, filters = check_query((), [(start, end)], where)
        with self._lock:
            found = [
                e
                for e in self._events.values()
                if start <= e.created_at < end
                and all(dimension_value(e, k) in v for k, v in filters.items())
            ]
        found.sort(key=lambda e: (e.created_at, e.event_id))
        return (_copy(e) for e in found)

    def add_alert(self, alert: AlertRecord) -> bool:
        """See `Ledger.add_alert`."""
        try:
            stored = _stored(alert)
        except (TypeError, ValueError) as exc:
            raise LedgerError(f"cannot record alert: {exc}", retryable=False) from exc
        stored.drivers = [dict(d) for d in alert.drivers]
        stored.delivered = list(alert.delivered)
        with self._lock:
            if stored.alert_id in self._alerts:
                return False
            self._alerts[stored.alert_id] = stored
            return True

    def mark_alert_delivered(self, alert_id: str, channel: str) -> None:
        """See `Ledger.mark_alert_delivered`."""
        with self._lock:
            found = self._alerts.get(alert_id)
            if found is None:
                raise AlertNotFound(f"no alert {alert_id!r}", key=alert_id)
            if channel not in found.delivered:
                found.delivered = [*found.delivered, channel]

    def list_alerts(self, *, since: datetime | None = None, limit: int = 50) -> list[AlertRecord]:
        """See `Ledger.list_alerts`."""
        check_limit(limit)
        floor = None if since is None else check_aware(since, "since")
        with self._lock:
            found = [a for a in self._alerts.values() if floor is None or a.created_at >= floor]
        found.sort(key=lambda a: (a.created_at, a.alert_id), reverse=True)
        return [_alert_copy(a) for a in found[:limit]]

    # -- budgets --------------------------------------------------------------------------

    def budget_store(
        self,
        *,
        clock: Clock | None = None,
        default_ttl: timedelta = DEFAULT_RESERVATION_TTL,
        worker_lease: timedelta | None = DEFAULT_WORKER_LEASE,
        retention: timedelta | None = DEFAULT_RESERVATION_RETENTION,
        leases: bool = False,
        charges_to: ChargeSink | None = None,
        lease_fraction: Decimal = DEFAULT_LEASE_FRACTION,
        lease_idle: timedelta | None = DEFAULT_LEASE_IDLE,
    ) -> BudgetStore:
        """A store on this ledger's budget counters (every store of the ledger shares them).

        `worker_lease` is accepted for the protocol and unused: every store of an in-memory
        ledger lives and dies with its one process, so no worker can die alone.
        `leases=True`: a `LeasedBudgetStore` on it (the same decisions as on a database,
        for tests of code that runs on one).
        """
        store = InMemoryBudgetStore._sharing(
            self._book, clock=clock, default_ttl=default_ttl, retention=retention
        )
        if not leases:
            return store
        own = charges_to is None
        return LeasedBudgetStore(
            store,
            charges_to or _InlineCharges(self),
            clock=clock,
            default_ttl=default_ttl,
            fraction=lease_fraction,
            idle=lease_idle,
            close_sink=own,
        )


class _InlineCharges:
    """Charges written at once (an in-memory write is as cheap as a queue)."""

    def __init__(self, ledger: InMemoryLedger) -> None:
        self.ledger = ledger

    def emit_charges(self, charges: Sequence[LeaseCharge]) -> None:
        """Write them now."""
        self.ledger.write(charges=charges)

    def flush(self, timeout: float | None = None) -> None:
        """Nothing is pending."""


# -- budgets ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Reservation:
    trace_id: str | None
    state: ReservationState
    records: list[ClaimRecord]
    created_at: datetime
    expires_at: datetime
    actual: dict[str, str] | None = None
    finished_at: datetime | None = None


PURGE_EVERY = 1000
"""An in-memory store purges old finished reservations once per this many finished calls."""


class _BudgetBook:
    """The counters and reservations the stores of one in-memory ledger share."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counters: dict[str, CounterRow] = {}
        self.reservations: dict[str, _Reservation] = {}
        self.leases: dict[tuple[str, str], Decimal] = {}
        """Budget leases by (worker id, counter key)."""
        self.charged: set[str] = set()
        """Event ids whose charges were applied (the ledger holds those events anyway)."""
        self.finished = 0

    def copies(self, keys: Iterable[str]) -> dict[str, CounterRow]:
        """Working copies of the named counters that exist (planning may change them)."""
        return {k: replace(self.counters[k]) for k in keys if k in self.counters}

    def apply_charges(self, charges: Sequence[LeaseCharge]) -> None:
        """Budget-lease charges into the counters and leases (see `plan_charges`)."""
        with self.lock:
            counters = self.copies(c.counter_key for c in charges)
            rows, after = plan_charges(charges, counters, self.leases)
            self.counters.update(rows)
            self.leases.update(after)
            self.charged.update(c.event_id for c in charges if c.event_id is not None)


class InMemoryBudgetStore(BudgetStoreBase):
    """A `BudgetStore` on an in-memory ledger's counters: one lock serializes every operation.

    Get one from `InMemoryLedger.budget_store()`; a store made on its own has its own counters.
    Its "database clock", which reservation expiry is judged by, is this process's real
    clock (`datetime.now(UTC)`), never `clock`. Finished reservations older than `retention`
    (by that clock) are purged once every `PURGE_EVERY` settled or released calls.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        default_ttl: timedelta = DEFAULT_RESERVATION_TTL,
        retention: timedelta | None = DEFAULT_RESERVATION_RETENTION,
    ) -> None:
        """A store with counters of its own (`retention=None`: never purge by itself)."""
        super().__init__(clock=clock, default_ttl=default_ttl)
        self._book = _BudgetBook()
        self._retention = retention
        self._worker_id = uuid.uuid4().hex

    @classmethod
    def _sharing(
        cls,
        book: _BudgetBook,
        *,
        clock: Clock | None,
        default_ttl: timedelta,
        retention: timedelta | None,
    ) -> InMemoryBudgetStore:
        """A store on a ledger's counters."""
        store = cls(clock=clock, default_ttl=default_ttl, retention=retention)
        store._book = book
        return store

    def _reserve(
        self,
        call_id: str,
        claims: Sequence[Claim],
        trace_id: str | None,
        now: datetime,
        ttl: timedelta,
    ) -> ReserveResult:
        book = self._book
        expires_at = utcnow() + ttl  # this process's clock is the "database's"
        with book.lock:
            existing = book.reservations.get(call_id)
            if existing is not None:
                return replayed(call_id, existing.state, existing.records)
            counters = book.copies(c.counter_key for c in claims)
            result, writes, records = plan_reserve(call_id, claims, counters)
            if result.granted:
                book.counters.update(writes)
                book.reservations[call_id] = _Reservation(
                    trace_id, "reserved", records, now, expires_at
                )
            return result

    def _finish(
        self,
        call_id: str,
        now: datetime,
        target: ReservationState,
        charges: Mapping[str, Decimal | None],
    ) -> Settlement:
        book = self._book
        with book.lock:
            found = book.reservations.get(call_id)
            if found is None:
                return Settlement(call_id, False)
            counters = book.copies(r["counter_key"] for r in found.records)
            plan = plan_finish(found.state, found.records, counters, target, charges)
            if plan is None:
                return Settlement(call_id, False)
            book.counters.update(plan.counters)
            found.state, found.actual, found.finished_at = target, plan.actual, now
            book.finished += 1
            due = self._retention is not None and book.finished % PURGE_EVERY == 0
        if due:
            assert self._retention is not None
            self.purge(utcnow() - self._retention)
        return Settlement(call_id, plan.changed, plan.overruns)

    def _settle(
        self, call_id: str, now: datetime, charges: Mapping[str, Decimal | None]
    ) -> Settlement:
        return self._finish(call_id, now, "settled", charges)

    def _release(self, call_id: str, now: datetime) -> bool:
        return self._finish(call_id, now, "released", {}).settled

    def _expire(self, at: datetime | None) -> list[str]:
        now = utcnow() if at is None else at
        book = self._book
        with book.lock:
            due = sorted(
                call_id
                for call_id, r in book.reservations.items()
                if r.state == "reserved" and r.expires_at <= now
            )
            back = given_back([book.reservations[c].records for c in due])
            for key, amount in back.items():
                counter = book.counters.get(key)
                if counter is not None:
                    counter.reserved = EXACT.subtract(counter.reserved, amount)
            for call_id in due:
                found = book.reservations[call_id]
                found.state, found.finished_at = "expired", now
            return due

    def purge(self, finished_before: datetime) -> int:
        """See `BudgetStore.purge`."""
        before = as_utc(finished_before)
        book = self._book
        with book.lock:
            done = [
                call_id
                for call_id, r in book.reservations.items()
                if r.state != "reserved" and r.finished_at is not None and r.finished_at < before
            ]
            for call_id in done:
                del book.reservations[call_id]
            return len(done)

    def counter(self, counter_key: str) -> CounterState | None:
        """See `BudgetStore.counter`."""
        with self._book.lock:
            found = self._book.counters.get(counter_key)
            if found is None:
                return None
            return CounterState(tidy(found.spent), tidy(found.reserved), tidy(found.limit))

    def reservation_state(self, call_id: str) -> ReservationState | None:
        """See `BudgetStore.reservation_state`."""
        with self._book.lock:
            found = self._book.reservations.get(call_id)
            return None if found is None else found.state

    # -- budget leases (one process: the worker never dies alone) ------------------------

    def lease_worker(self) -> str:
        """This store's worker id."""
        return self._worker_id

    def lease_age(self) -> float:
        """Always fresh: no worker of an in-memory ledger dies alone."""
        return 0.0

    def lease_lapses(self) -> int:
        """Never."""
        return 0

    @property
    def worker_lease_seconds(self) -> float:
        """Infinite."""
        return float("inf")

    def grow_leases(
        self, worker_id: str, requests: Sequence[LeaseRequest], now: datetime
    ) -> tuple[list[LeaseGrant], list[Refusal]]:
        """Grow under the ledger's lock (see `plan_grow`)."""
        book = self._book
        with book.lock:
            keys = [r.claim.counter_key for r in requests]
            counters = book.copies(keys)
            held = {k: book.leases[worker_id, k] for k in keys if (worker_id, k) in book.leases}
            plan = plan_grow(requests, counters, held)
            if plan.refusals:
                return [], plan.refusals
            book.counters.update(plan.counters)
            book.leases.update(((worker_id, k), v) for k, v in plan.leases.items())
            return plan.grants, []

    def charged_events(self, event_ids: Sequence[str]) -> set[str]:
        """Those of `event_ids` whose charges were applied."""
        with self._book.lock:
            return {e for e in event_ids if e in self._book.charged}

    def shrink_leases(self, worker_id: str, amounts: Mapping[str, Decimal], now: datetime) -> None:
        """Give back under the ledger's lock."""
        book = self._book
        with book.lock:
            held = {k: book.leases[worker_id, k] for k in amounts if (worker_id, k) in book.leases}
            rows, after = plan_shrink(amounts, book.copies(amounts), held)
            book.counters.update(rows)
            for key, left in after.items():
                if left > 0:
                    book.leases[worker_id, key] = left
                else:
                    del book.leases[worker_id, key]

    def close(self) -> None:
        """Nothing to give back."""


# -- helpers ----------------------------------------------------------------------------------


def _money(value: Decimal, name: str) -> Decimal:
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, got {value!r}")
    return stored_money(value)


@dataclass(frozen=True, slots=True)
class _Shape:
    """How to check and copy one record type: required, datetime, money and dict fields."""

    required: tuple[str, ...]
    times: tuple[str, ...]
    money: tuple[str, ...]
    dicts: tuple[str, ...]


_SHAPES: dict[type, _Shape] = {}


def _shape(kind: type) -> _Shape:
    shape = _SHAPES.get(kind)
    if shape is None:
        fields = dataclasses.fields(kind)
        types = {f.name: str(f.type) for f in fields}
        shape = _SHAPES[kind] = _Shape(
            required=tuple(n for n, t in types.items() if "None" not in t),
            times=tuple(n for n, t in types.items() if "datetime" in t),
            money=tuple(n for n, t in types.items() if "Decimal" in t),
            dicts=tuple(n for n, t in types.items() if t.startswith("dict")),
        )
    return shape


def _stored(record: _R) -> _R:
    """A checked copy of a record as the ledger keeps it (UTC times, money to 18 places)."""
    shape = _shape(type(record))
    name = type(record).__name__
    changes: dict[str, Any] = {}
    for field in shape.required:
        if getattr(record, field) is None:
            raise ValueError(f"{name}.{field} is required (got None)")
    for field in shape.times:
        value = getattr(record, field)
        if value is not None:
            if not isinstance(value, datetime) or value.utcoffset() is None:
                raise ValueError(f"{name}.{field} must be a timezone-aware datetime: {value!r}")
            changes[field] = value.astimezone(UTC)
    for field in shape.money:
        value = getattr(record, field)
        if value is not None:
            changes[field] = _money(value, f"{name}.{field}")
    for field in shape.dicts:
        changes[field] = dict(getattr(record, field))
    if isinstance(record, CostEvent):
        changes["bucket"] = bucket_of(record)
    return cast(_R, replace(cast(Any, record), **changes))


def _alert_copy(alert: AlertRecord) -> AlertRecord:
    copy = _copy(alert)
    copy.drivers = [dict(d) for d in alert.drivers]
    copy.delivered = list(alert.delivered)
    return copy


def _copy(record: _R) -> _R:
    """A copy the caller may change without changing the ledger."""
    shape = _shape(type(record))
    copies = {f: dict(getattr(record, f)) for f in shape.dicts}
    return cast(_R, replace(cast(Any, record), **copies))


def _conforms(ledger: InMemoryLedger, store: InMemoryBudgetStore) -> tuple[Ledger, BudgetStore]:
    return ledger, store  # the type checker proves here that the backend fits the protocols
