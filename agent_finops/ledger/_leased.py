"""`LeasedBudgetStore`: the `BudgetStore` protocol decided in process, from budget leases.

A worker takes a **lease** on a counter, a slice of its remaining headroom reserved in the
database in one transaction (`grow_leases`; a row per worker and counter, counted in the
counter's `reserved`), and decides `reserve` calls locally until the slice is used: a call
fits when the lease minus what calls in flight hold covers its estimate. Slices are a
fraction (`DEFAULT_LEASE_FRACTION`) of the headroom left when taken, so they shrink as the
budget nears its limit, and the sum of every worker's leases and spend never exceeds it
(the database refuses a grow that does not fit). Near the limit a slice is exactly a call's
shortfall: one transaction per call, as a per-call reservation.

Settling is local too: it emits a `LeaseCharge` per counter (spent, and what that frees
from the lease) through `charges_to`, a record sink, normally the tracker's, inside the
same group as the call's cost event, so the ledger writes the event and the charge in one
transaction (`Ledger.write(charges=...)`): a SIGKILL loses both or neither.

Unused slices go back when idle (`idle`), when the store closes, and, for a dead worker,
by the reaper of any live one (`expire`: the lease rows of workers whose worker lease ran
out). A call id is idempotent within the process that reserved it (reserve, settle and
release of an id this store does not know go to the database store underneath).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from agent_finops.clock import utcnow
from agent_finops.exceptions import LedgerError
from agent_finops.ledger._base import BudgetStoreBase
from agent_finops.ledger._budget import (
    DEFAULT_LEASE_FRACTION,
    DEFAULT_LEASE_IDLE,
    DEFAULT_RESERVATION_TTL,
    Claim,
    ClaimUsage,
    CounterState,
    LeaseCharge,
    LeaseGrant,
    LeaseRequest,
    Overrun,
    Refusal,
    ReservationState,
    ReserveResult,
    Settlement,
    checked_charge,
)
from agent_finops.ledger._money import EXACT
from agent_finops.ledger._protocol import BudgetStore, ChargeSink, Clock

__all__ = ["LeaseBackend", "LeasedBudgetStore"]

_log = logging.getLogger("agent_finops.ledger")
_ZERO = Decimal(0)
_add = EXACT.add
_sub = EXACT.subtract
KEPT_CALLS = 100_000
"""Finished calls a store remembers (their ids stay idempotent in this process)."""
KEPT_PRIVATE = 100_000
"""Private counters (`Claim.private`) held before the long-unused ones are forgotten."""
PRIVATE_STALE = 3600
"""Seconds a private counter goes unused before it may be forgotten (only past KEPT_PRIVATE:
a run that ends forgets its own at once)."""
_GROW_TRIES = 16
_VIEW_FLUSH_TIMEOUT = 2.0
"""Seconds a grow waits for this worker's charges to be written (its view, not the limit)."""
_VIEW_FLUSH_BACKOFF = 10.0
"""After such a flush failed, grows go without one for this many seconds."""


class LeaseBackend(BudgetStore, Protocol):
    """A database budget store that can hold budget leases for its worker."""

    def lease_worker(self) -> str:
        """The worker id leases are tied to: registered in this process, its lease fresh."""
        ...

    def lease_age(self) -> float:
        """Seconds since the worker lease was last renewed (infinity before the first)."""
        ...

    def lease_lapses(self) -> int:
        """How many times a renewal found the worker lease had lapsed (or its row gone)."""
        ...

    @property
    def worker_lease_seconds(self) -> float:
        """How long the worker lease lasts without renewal."""
        ...

    def grow_leases(
        self, worker_id: str, requests: Sequence[LeaseRequest], now: datetime
    ) -> tuple[list[LeaseGrant], list[Refusal]]:
        """Grow the worker's leases in one transaction, all or none (see `plan_grow`)."""
        ...

    def shrink_leases(self, worker_id: str, amounts: Mapping[str, Decimal], now: datetime) -> None:
        """Give back up to `amounts` of the worker's leases; leases left at zero are deleted."""
        ...

    def charged_events(self, event_ids: Sequence[str]) -> set[str]:
        """Those of `event_ids` whose charges the database holds (written with their event)."""
        ...


@dataclass(slots=True)
class _Slice:
    """This worker's lease on one counter, as the store sees it."""

    unit: str
    limit: Decimal
    amount: Decimal = _ZERO
    """Leased and not consumed by a settled call (the database row, minus charges in flight)."""
    held: Decimal = _ZERO
    """Estimates of the calls in flight on it."""
    seen: Decimal = _ZERO
    """Spent plus other workers' reserved, at the last grow."""
    since: Decimal = _ZERO
    """Charged by this store since the last grow."""
    used_at: float = 0.0
    private: bool = False
    """A counter only this process charges (`Claim.private`, in `_State.private`): no
    database lease; `amount` is the limit less what was charged (it never grows), and its
    charges consume nothing."""


@dataclass(slots=True)
class _Unseen:
    """Spend of one call beyond this worker's lease on one counter, not known written."""

    amount: Decimal
    queued: float | None = None
    """When its charge was handed to the writer (monotonic); None: in a caller's open record
    group (then only its event in the database says it is written)."""


@dataclass(slots=True)
class _Call:
    claims: tuple[Claim, ...]
    slices: tuple[_Slice, ...]
    """The slices the call holds on, one per claim: a slice given back or dropped stays
    this call's, so its settle never touches a newer slice of the same counter."""
    result: ReserveResult
    expires_at: datetime
    state: ReservationState = "reserved"
    finished_at: datetime | None = None


@dataclass(slots=True)
class _State:
    """Shared with the upkeep thread (which must not refer to the store)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    slices: dict[str, _Slice] = field(default_factory=dict)
    """This worker's leases, by counter key."""
    private: dict[str, _Slice] = field(default_factory=dict)
    """Private counters (`Claim.private`), by key: no database lease behind them."""
    calls: dict[str, _Call] = field(default_factory=dict)
    """Calls in flight (reserved, or expired and not yet settled), oldest first."""
    done: OrderedDict[str, tuple[ReservationState, datetime]] = field(default_factory=OrderedDict)
    """Finished calls (settled, released): state and when, oldest first, at most KEPT_CALLS.
    Two plain values each, not the call: a long-lived worker keeps 100,000 of them, and
    the garbage collector walks whatever they hold at every full collection."""
    worker: str | None = None
    pid: int = field(default_factory=os.getpid)
    lapses: int = 0
    """The backing store's count of lapsed worker leases, as last seen."""

    def found(self, call_id: str) -> ReserveResult | None:
        """A replay of a call this store reserved (under the lock), or None."""
        call = self.calls.get(call_id)
        if call is not None:
            return _replayed(call)
        done = self.done.get(call_id)
        if done is not None:
            return ReserveResult(call_id, (), replayed=True, state=done[0])
        return None

    def finish(self, call_id: str, state: ReservationState, at: datetime) -> None:
        """The call in flight `call_id` ended (under the lock)."""
        del self.calls[call_id]
        done = self.done
        done[call_id] = (state, at)
        while len(done) > KEPT_CALLS:
            done.popitem(last=False)


class LeasedBudgetStore(BudgetStoreBase):
    """Budget decisions in process from per-worker leases on a database store (module doc).

    Thread-safe. Get one from `SQLLedger.budget_store(leases=True)` or let the
    `PolicyEngine` make it (its default on SQL ledgers). `close()` returns every slice.
    """

    def __init__(
        self,
        backing: LeaseBackend,
        charges_to: ChargeSink,
        *,
        clock: Clock | None = None,
        default_ttl: timedelta = DEFAULT_RESERVATION_TTL,
        fraction: Decimal = DEFAULT_LEASE_FRACTION,
        idle: timedelta | None = DEFAULT_LEASE_IDLE,
        close_backing: bool = True,
        close_sink: bool = False,
    ) -> None:
        """Lease from `backing`; settled charges go to `charges_to`.

        Args:
            backing: the database store leases are taken from (its worker lease ties them
                to this process: a killed worker's leases are reaped like its reservations).
            charges_to: the sink that writes `LeaseCharge`s (the tracker's, so a charge is
                written in one transaction with its call's cost event).
            clock: the caller's "now" for stamps.
            default_ttl: how long a call may hold its estimate before it is given back.
            fraction: the share of a counter's remaining headroom a grow takes beyond the
                shortfall (0 < fraction <= 1).
            idle: a slice unused this long is given back (None: only at close).
            close_backing: also close `backing` in `close()`.
            close_sink: also close `charges_to` in `close()` (a sink made for this store).
        """
        super().__init__(clock=clock, default_ttl=default_ttl)
        if not isinstance(fraction, Decimal):
            raise TypeError(f"fraction must be a Decimal, got {fraction!r}")
        if not _ZERO < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
        if idle is not None and idle <= timedelta(0):
            raise ValueError(f"idle must be positive or None, got {idle!r}")
        self.backing = backing
        self.charges_to = charges_to
        self.fraction = fraction
        self._idle = idle
        self._close_backing = close_backing
        self._close_sink = close_sink
        self._state = _State()
        self._grow_lock = threading.Lock()
        self._unwritten: set[str] = set()
        """Counters with charges emitted since the last flush (a grow of one writes them
        first, so this worker's view of them, for thresholds, includes them; a grow of
        counters without any, such as a new run's cap, does not wait)."""
        self._flush_failed = float("-inf")
        self._grouping: Callable[[], bool] | None = getattr(charges_to, "grouping", None)
        """The sink's `grouping()` (`CostTracker`'s): whether what it is given now waits in
        the caller's open record group; a sink without it queues at once."""
        self._unseen: dict[str, dict[str, _Unseen]] = {}
        """By counter: spend beyond this worker's lease (overruns, calls that failed open)
        by event id, until the database is seen to hold that event (and so its charge), or
        a flush started after the charge was queued to the writer has finished.
        A grow counts it as used (`LeaseRequest.unseen`): whether the charge is still in a
        caller's open record group, the writer's queue or a retry, the grow cannot decide
        from a counter without it."""
        self._stop = threading.Event()
        self._upkeep: threading.Thread | None = None
        self._stop_upkeep = weakref.finalize(self, self._stop.set)
        self._closed = False

    # -- the worker -----------------------------------------------------------------------

    def _worker(self) -> str:
        """The worker id; slices taken under a worker lease that may have lapsed are dropped.

        Dropped (their unused part given back: a no-op for rows the reaper took) when the
        lease is older than 3/4 of its length, or when a renewal found it had lapsed (a
        process paused longer than the lease, then renewed by its upkeep thread first).
        """
        if self._closed:
            raise LedgerError("the budget store is closed", retryable=False)
        state = self._state
        if state.pid != os.getpid():
            self._forked()
        backing = self.backing
        if state.worker and backing.lease_age() > backing.worker_lease_seconds * 0.75:
            self._drop_all("the worker lease was not renewed in time")
        worker = backing.lease_worker()
        lapses = backing.lease_lapses()
        if lapses != state.lapses:
            if state.worker:
                self._drop_all("the worker lease lapsed (the reaper may have its leases)")
            state.lapses = lapses
        if worker != state.worker:
            with state.lock:
                state.worker = worker
            self._start_upkeep()
        return worker

    def _forked(self) -> None:
        """In a forked child: the parent's slices, calls and locks are the parent's."""
        self._state = _State(pid=os.getpid())
        self._grow_lock = threading.Lock()
        self._unwritten = set()
        self._unseen = {}
        self._upkeep = None

    def _drop_all(self, why: str) -> None:
        state = self._state
        with state.lock:
            slices, state.slices = state.slices, {}
            worker = state.worker
        if not slices or worker is None:
            return
        _log.warning("giving back every budget lease of worker %s: %s", worker, why)
        try:
            self._give_back(worker, slices)
        except Exception:  # the reaper gives them back
            _log.warning("could not give back budget leases of %s", worker, exc_info=True)

    def _start_upkeep(self) -> None:
        if self._idle is None or (self._upkeep is not None and self._upkeep.is_alive()):
            return
        thread = threading.Thread(
            target=_upkeep,
            args=(weakref.ref(self), self._idle.total_seconds(), self._stop),
            name="agent-finops-lease-upkeep",
            daemon=True,
        )
        thread.start()
        self._upkeep = thread

    # -- primitives -----------------------------------------------------------------------

    def _reserve(
        self,
        call_id: str,
        claims: Sequence[Claim],
        trace_id: str | None,
        now: datetime,
        ttl: timedelta,
    ) -> ReserveResult:
        state = self._state
        with state.lock:
            found = state.found(call_id)
            if found is not None:  # only granted calls are kept
                return found
        worker = self._worker()
        for _ in range(_GROW_TRIES):
            with state.lock:
                short = self._shortfalls(claims)
                if not short:
                    return self._grant(call_id, claims, now, ttl)
                private = self._private_refusals(short)
            if len(private) == len(short):  # no grow can help
                return self._refused(call_id, claims, private)
            # One grow at a time: threads short on the same counter wait for one grow, then
            # decide from it (instead of each taking a slice, or a replay being refused).
            with self._grow_lock:
                with state.lock:
                    found = state.found(call_id)
                    if found is not None:
                        return found
                    short = self._shortfalls(claims)
                    if not short:
                        return self._grant(call_id, claims, now, ttl)
                    # A private claim that does not fit is refused; the grow still asks
                    # the others, so the refusal names every rule the call would exceed.
                    private = self._private_refusals(short)
                    short = [(c, amount) for c, amount in short if not c.private]
                if not short:
                    return self._refused(call_id, claims, private)
                with state.lock:
                    keys = [c.counter_key for c, _ in short]
                    unwritten = any(k in self._unwritten or k in self._unseen for k in keys)
                    if unwritten:
                        self._unwritten = set()
                grants, refusals, unseen = self._grow(worker, short, keys, unwritten, now)
                if refusals:
                    return self._refused(call_id, claims, [*refusals, *private])
                with state.lock:  # decide from the grant at once, before other threads
                    self._take(grants, short, unseen)  # kept for the next calls if refused
                    grown = {g.counter_key for g in grants}
                    if not private and not self._shortfalls(claims, grown=grown):
                        return self._grant(call_id, claims, now, ttl)
                if private:
                    return self._refused(call_id, claims, private)
        raise RuntimeError(f"budget leases of {call_id!r} kept being used up by other threads")

    def _grow(
        self,
        worker: str,
        short: Sequence[tuple[Claim, Decimal]],
        keys: Sequence[str],
        unwritten: bool,
        now: datetime,
    ) -> tuple[list[LeaseGrant], list[Refusal], dict[str, Decimal]]:
        """One grow of the short claims' leases (under the grow lock).

        This worker's unseen spend is counted; with `unwritten`, the charges it emitted so
        far are written first.
        """
        flushed = None
        if unwritten and time.monotonic() - self._flush_failed > _VIEW_FLUSH_BACKOFF:
            # This worker's view of these counters (thresholds) is taken from the
            # database: write the charges it emitted so far first. Best effort: the
            # limit never depends on it (unseen spend is counted below).
            started = time.monotonic()
            try:
                self.charges_to.flush(_VIEW_FLUSH_TIMEOUT)
                flushed = started
            except LedgerError:  # the writer is behind or the ledger down
                self._flush_failed = time.monotonic()
                _log.debug("charges not written before a grow", exc_info=True)
        unseen = self._unseen_of(keys, flushed)
        grants, refusals = self.backing.grow_leases(
            worker,
            [
                LeaseRequest(_need(c, amount), self.fraction, unseen.get(c.counter_key, _ZERO))
                for c, amount in short
            ],
            now,
        )
        return grants, refusals, unseen

    def _shortfalls(
        self, claims: Sequence[Claim], grown: Collection[str] = ()
    ) -> list[tuple[Claim, Decimal]]:
        """The claims the slices cannot cover now, with how much more each needs.

        `grown`: counters a grow just decided with this worker's unseen spend counted.
        """
        short = []
        slices = self._state.slices
        unseen = self._unseen
        private = self._state.private
        for claim in claims:
            if claim.private:
                s = private.get(claim.counter_key)
                if s is None:
                    if len(private) >= KEPT_PRIVATE:
                        self._forget_stale_private()
                    s = private[claim.counter_key] = _Slice(
                        claim.unit, claim.limit, claim.limit, private=True
                    )
                elif s.limit != claim.limit:  # a limit raised by an approval
                    s.amount = _add(s.amount, _sub(claim.limit, s.limit))
                    s.limit = claim.limit
                if claim.enforce and _sub(s.amount, s.held) < claim.amount:
                    short.append((claim, claim.amount))  # refused: a private slice never grows
                continue
            s = slices.get(claim.counter_key)
            if s is None or s.limit != claim.limit or s.unit != claim.unit:
                short.append((claim, claim.amount))
                continue
            free = _sub(s.amount, s.held)
            if free < claim.amount:
                short.append((claim, _sub(claim.amount, free)))
            elif claim.enforce and claim.counter_key in unseen and claim.counter_key not in grown:
                # Spend beyond the lease the database may not hold yet: let a grow, which
                # counts it, decide, not the slice.
                short.append((claim, claim.amount))
        return short

    def _private_refusals(self, short: Sequence[tuple[Claim, Decimal]]) -> list[Refusal]:
        """The refusals of short private claims (under the state lock): no grow can help."""
        private = self._state.private
        out = []
        for claim, _ in short:
            if claim.private:
                s = private[claim.counter_key]
                observed = _add(s.since, s.held)
                out.append(
                    Refusal(
                        claim.counter_key,
                        claim.rule_id,
                        claim.unit,
                        claim.limit,
                        observed,
                        claim.amount,
                    )
                )
        return out

    def _forget_stale_private(self) -> None:
        """Too many private slices (runs that never ended?): forget the long-unused ones."""
        cutoff = time.monotonic() - PRIVATE_STALE
        private = self._state.private
        held = len(private)
        stale = [k for k, s in private.items() if s.held <= 0 and s.used_at <= cutoff]
        for key in stale:
            del private[key]
        _log.warning(
            "%d private budget counters held (runs that never ended?): forgot %d unused for %d s",
            held,
            len(stale),
            PRIVATE_STALE,
        )

    @property
    def private_held(self) -> int:
        """Private counters held in memory (`Claim.private`): one per live run with a cap."""
        with self._state.lock:
            return len(self._state.private)

    def end_private(self, counter_keys: Collection[str]) -> None:
        """Forget the private counters of a finished run (`Claim.private`).

        Calls still holding them settle against the slice they hold.
        """
        with self._state.lock:
            private = self._state.private
            for key in counter_keys:
                private.pop(key, None)

    def _take(
        self,
        grants: Sequence[LeaseGrant],
        short: Sequence[tuple[Claim, Decimal]],
        unseen: Mapping[str, Decimal],
    ) -> None:
        slices = self._state.slices
        claims = {c.counter_key: c for c, _ in short}
        now = time.monotonic()
        for grant in grants:
            claim = claims[grant.counter_key]
            s = slices.get(grant.counter_key)
            if s is None:
                s = slices[grant.counter_key] = _Slice(claim.unit, claim.limit)
            s.limit, s.unit = claim.limit, claim.unit
            s.amount = _add(s.amount, grant.granted)
            # Spent + every other worker's reserved, as the database just said, and this
            # worker's spend it does not hold yet.
            extra = unseen.get(grant.counter_key, _ZERO)
            s.seen = _add(_sub(_add(grant.spent, grant.reserved), grant.lease), extra)
            s.since = _ZERO
            s.used_at = now

    def _grant(
        self, call_id: str, claims: Sequence[Claim], now: datetime, ttl: timedelta
    ) -> ReserveResult:
        state = self._state
        found = state.found(call_id)
        if found is not None:  # another thread reserved this call id meanwhile
            return found
        usage = []
        held: list[_Slice] = []
        moment = time.monotonic()
        for claim in claims:
            s = (state.private if claim.private else state.slices)[claim.counter_key]
            held.append(s)
            s.held = _add(s.held, claim.amount)
            s.used_at = moment
            used = _add(_add(s.seen, s.since), s.held)
            usage.append(
                ClaimUsage(
                    claim.counter_key, claim.rule_id, claim.unit, claim.limit, used, claim.enforce
                )
            )
        result = ReserveResult(call_id, tuple(usage))
        calls = state.calls
        calls[call_id] = _Call(tuple(claims), tuple(held), result, utcnow() + ttl)
        if len(calls) > KEPT_CALLS:  # expired calls never settled: finished as expired
            for old in [k for k, c in calls.items() if c.state == "expired"]:
                finished_at = calls[old].finished_at
                assert finished_at is not None
                state.finish(old, "expired", finished_at)
        return result

    def _refused(
        self, call_id: str, claims: Sequence[Claim], refusals: Sequence[Refusal]
    ) -> ReserveResult:
        by_key = {r.counter_key: r for r in refusals}
        usage = []
        with self._state.lock:
            for claim in claims:
                s = self._state.slices.get(claim.counter_key)
                refusal = by_key.get(claim.counter_key)
                if refusal is not None:
                    used = refusal.observed
                elif s is not None:
                    used = _add(_add(s.seen, s.since), s.held)
                else:
                    used = _ZERO
                usage.append(
                    ClaimUsage(
                        claim.counter_key,
                        claim.rule_id,
                        claim.unit,
                        claim.limit,
                        used,
                        claim.enforce,
                    )
                )
        ordered = tuple(by_key[c.counter_key] for c in claims if c.counter_key in by_key)
        return ReserveResult(call_id, tuple(usage), ordered, state=None)

    def _settle(
        self, call_id: str, now: datetime, charges: Mapping[str, Decimal | None]
    ) -> Settlement:
        out: list[LeaseCharge] = []
        overruns: list[Overrun] = []
        settled = self._settle_locally(call_id, now, charges, out, overruns)
        if settled is None:
            return self.backing.settle(call_id, charges, now=now)
        if not settled:
            return Settlement(call_id, False)
        self._emit(out)
        return Settlement(call_id, True, tuple(overruns))

    def emit_charges(self, charges: Sequence[LeaseCharge]) -> None:
        """Emit charges that no lease of this store held (e.g. a call that failed open).

        Through `charges_to`. What a charge spends beyond a lease is this worker's unseen
        spend until the database holds its event: the next grow of that counter counts it,
        and no enforced call is decided from the counter's slice meanwhile. Each charge
        needs its `event_id` (the event it is written with).
        """
        if not charges:
            return
        missing = [c.counter_key for c in charges if c.event_id is None]
        if missing:
            raise ValueError(f"charges emitted through a lease store need an event_id: {missing}")
        with self._state.lock:
            for charge in charges:
                if charge.consumed < charge.spent:
                    assert charge.event_id is not None
                    self._add_unseen(
                        charge.counter_key, charge.event_id, _sub(charge.spent, charge.consumed)
                    )
        self._emit(charges)

    def _add_unseen(self, key: str, event_id: str, amount: Decimal) -> None:
        # Under the state lock.
        pending = self._unseen.setdefault(key, {})
        found = pending.get(event_id)
        pending[event_id] = _Unseen(amount if found is None else _add(found.amount, amount))

    def _unseen_of(self, keys: Sequence[str], flushed: float | None) -> dict[str, Decimal]:
        """This worker's unseen spend on `keys`, less what the database is known to hold.

        Known: an entry queued to the writer before a finished flush that started at
        `flushed` (monotonic), or whose event the database holds (its charge is written
        with it; a charge still in a caller's open record group has no event there yet).
        """
        with self._state.lock:
            pending = {k: dict(self._unseen[k]) for k in keys if self._unseen.get(k)}
        if not pending:
            return {}
        done = {
            event_id
            for entries in pending.values()
            for event_id, entry in entries.items()
            if flushed is not None and entry.queued is not None and entry.queued <= flushed
        }
        asked = sorted({e for entries in pending.values() for e in entries} - done)
        if asked:
            done |= self.backing.charged_events(asked)
        out: dict[str, Decimal] = {}
        with self._state.lock:
            for key in pending:
                mine = self._unseen.get(key, {})
                for event_id in done & mine.keys():  # entries added meanwhile stay
                    del mine[event_id]
                if not mine:
                    self._unseen.pop(key, None)
                total = _ZERO
                for entry in mine.values():
                    total = _add(total, entry.amount)
                if total:
                    out[key] = total
        return out

    def _emit(self, charges: Sequence[LeaseCharge]) -> None:
        held = self._grouping is not None and self._grouping()
        self.charges_to.emit_charges(charges)
        queued = None if held else time.monotonic()
        with self._state.lock:  # after emitting: a flush from here on writes them
            self._unwritten.update(c.counter_key for c in charges)
            if queued is not None and self._unseen:
                for c in charges:
                    entry = self._unseen.get(c.counter_key, {}).get(c.event_id or "")
                    if entry is not None and entry.queued is None:
                        entry.queued = queued

    def _settle_locally(
        self,
        call_id: str,
        now: datetime,
        charges: Mapping[str, Decimal | None],
        out: list[LeaseCharge],
        overruns: list[Overrun],
    ) -> bool | None:
        """Settle a call of this store's (its charges into `out`); None: not one of them."""
        state = self._state
        with state.lock:
            call = state.calls.get(call_id)
            if call is None:
                return False if call_id in state.done else None
            worker = state.worker or ""
            for claim, s in zip(call.claims, call.slices, strict=True):
                charge = charges.get(claim.unit)
                if charge is None:
                    charge = claim.amount
                elif charge > claim.amount:
                    overruns.append(
                        Overrun(claim.counter_key, claim.rule_id, claim.unit, claim.amount, charge)
                    )
                if call.state == "reserved":
                    s.held = max(_ZERO, _sub(s.held, claim.amount))
                s.since = _add(s.since, charge)
                if s.private:  # no lease in the database: the charge only adds to spent
                    s.amount = _sub(s.amount, charge)
                    consumed = _ZERO
                else:
                    # Never what other calls in flight hold: an overrun must not free their
                    # backing in the database.
                    consumed = min(charge, max(_sub(s.amount, s.held), _ZERO))
                    s.amount = _sub(s.amount, consumed)
                    if consumed < charge:
                        self._add_unseen(claim.counter_key, call_id, _sub(charge, consumed))
                if overruns and overruns[-1].counter_key == claim.counter_key:
                    overruns[-1] = replace(
                        overruns[-1],
                        used=_add(_add(s.seen, s.since), s.held),
                        limit=s.limit,
                    )
                out.append(  # all checked: the claim's, the settled amount, consumed <= it
                    checked_charge(
                        "" if s.private else worker,
                        claim.counter_key,
                        claim.unit,
                        claim.limit,
                        charge,
                        consumed,
                        call_id,
                    )
                )
            state.finish(call_id, "settled", now)
        return True

    def _release(self, call_id: str, now: datetime) -> bool:
        state = self._state
        with state.lock:
            call = state.calls.get(call_id)
            if call is not None:
                reserved = call.state == "reserved"
                if reserved:
                    for claim, s in zip(call.claims, call.slices, strict=True):
                        s.held = max(_ZERO, _sub(s.held, claim.amount))
                state.finish(call_id, "released", now)
                return reserved
            if call_id in state.done:
                return False
        return self.backing.release(call_id, now=now)

    def _expire(self, at: datetime | None) -> list[str]:
        return sorted(self._expire_local(at) + self.backing.expire(at))

    def _expire_local(self, at: datetime | None = None) -> list[str]:
        """Give back the estimates of this process's calls past their TTL."""
        moment = utcnow() if at is None else at
        due = []
        with self._state.lock:
            for call_id, call in self._state.calls.items():
                if call.state == "reserved" and call.expires_at <= moment:
                    for claim, s in zip(call.claims, call.slices, strict=True):
                        s.held = max(_ZERO, _sub(s.held, claim.amount))
                    call.state, call.finished_at = "expired", moment
                    due.append(call_id)
        return due

    def purge(self, finished_before: datetime) -> int:
        """See `BudgetStore.purge` (this process's finished calls, then the database's)."""
        with self._state.lock:
            calls, done = self._state.calls, self._state.done
            expired = [
                k
                for k, c in calls.items()
                if c.finished_at is not None and c.finished_at < finished_before
            ]
            for key in expired:
                del calls[key]
            ended = [k for k, (_, at) in done.items() if at < finished_before]
            for key in ended:
                del done[key]
        return len(expired) + len(ended) + self.backing.purge(finished_before)

    def counter(self, counter_key: str) -> CounterState | None:
        """The counter as this worker sees it (the database's, less its own unused lease).

        The charges emitted so far are written first. `reserved` is what calls in flight
        hold plus what other workers lease (their unused slices are theirs to decide from);
        `spent + reserved <= limit` holds as for any store. `leased()` is what this worker
        holds.
        """
        self.charges_to.flush(30.0)
        found = self.backing.counter(counter_key)
        if found is None:
            return None
        with self._state.lock:
            s = self._state.slices.get(counter_key)
            unused = _ZERO if s is None else max(_ZERO, _sub(s.amount, s.held))
        return CounterState(found.spent, max(_ZERO, _sub(found.reserved, unused)), found.limit)

    def reservation_state(self, call_id: str) -> ReservationState | None:
        """This process's call, else the database's reservation."""
        with self._state.lock:
            call = self._state.calls.get(call_id)
            if call is not None:
                return call.state
            done = self._state.done.get(call_id)
            if done is not None:
                return done[0]
        return self.backing.reservation_state(call_id)

    def leased(self) -> dict[str, Decimal]:
        """This worker's leases by counter key: leased and not yet consumed."""
        with self._state.lock:
            return {k: s.amount for k, s in self._state.slices.items()}

    # -- giving slices back -----------------------------------------------------------------

    def give_back_idle(self, idle: float) -> int:
        """Give back the slices no call used for `idle` seconds; how many."""
        state = self._state
        cutoff = time.monotonic() - idle
        with state.lock:
            worker = state.worker
            retired = {k: s for k, s in state.slices.items() if s.held <= 0 and s.used_at <= cutoff}
            for key in retired:
                del state.slices[key]
        if not retired or worker is None:
            return 0
        self._give_back(worker, retired)
        return len(retired)

    def _give_back(self, worker: str, retired: Mapping[str, _Slice]) -> None:
        """Give back what retired slices hold beyond their calls in flight.

        The charges of the calls that used them go first (a charge must find its lease);
        what calls still in flight hold stays leased until they settle or the worker ends.
        """
        self.charges_to.flush(30.0)
        with self._state.lock:
            amounts = {k: max(_sub(s.amount, s.held), _ZERO) for k, s in retired.items()}
            for k, s in retired.items():
                s.amount = _sub(s.amount, amounts[k])
        amounts = {k: v for k, v in amounts.items() if v > 0}
        if amounts:
            self.backing.shrink_leases(worker, amounts, self._clock())

    def close(self) -> None:
        """Return every slice (after the charges are written), then close the backing store."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        upkeep, self._upkeep = self._upkeep, None
        if upkeep is not None and upkeep.is_alive() and upkeep is not threading.current_thread():
            upkeep.join(timeout=5)
        state = self._state
        if state.pid != os.getpid():  # a forked child: the leases are the parent's
            return
        with state.lock:
            slices, state.slices = state.slices, {}
            worker = state.worker
        try:
            if slices and worker is not None:
                self._give_back(worker, slices)
        except Exception:  # the reaper gives them back once the worker lease ends
            _log.warning("could not give back budget leases at close", exc_info=True)
        finally:
            if self._close_sink:
                close = getattr(self.charges_to, "close", None)
                if close is not None:
                    close()
            if self._close_backing:
                self.backing.close()


def _need(claim: Claim, amount: Decimal) -> Claim:
    """The claim with its amount replaced by what a grow must at least add."""
    return Claim(
        counter_key=claim.counter_key,
        rule_id=claim.rule_id,
        unit=claim.unit,
        limit=claim.limit,
        amount=amount,
        window_end=claim.window_end,
        enforce=claim.enforce,
    )


def _replayed(call: _Call) -> ReserveResult:
    r = call.result
    return ReserveResult(r.call_id, r.usage, r.refusals, replayed=True, state=call.state)


def _upkeep(store_ref: weakref.ref[LeasedBudgetStore], idle: float, stop: threading.Event) -> None:
    """Give back idle slices and expire overdue calls until `stop` (faults logged, retried)."""
    beat = max(0.05, idle / 2)
    while not stop.wait(beat):
        store = store_ref()
        if store is None:
            return
        try:
            store.give_back_idle(idle)
            store._expire_local()
        except Exception:
            _log.warning("budget lease upkeep failed; retrying", exc_info=True)
        finally:
            del store
