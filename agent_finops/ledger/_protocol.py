"""The storage interfaces: `Ledger` (runs, spans, costs, decisions, approvals) and `BudgetStore`.

Callers (tracker, policy engine, approval service, CLI, reports, integrations) are typed to
these protocols, never to a backend. Backends: `InMemoryLedger` (the reference), `SQLLedger`
(SQLite, PostgreSQL). Every backend must pass the conformance suite in
`agent_finops.conformance`; a new backend usually subclasses `LedgerBase`, which provides the
async twins and the context manager.

Errors, the same on every backend: a missing record raises a `NotFound` subclass
(`RunNotFound`, `ApprovalNotFound`, `LedgerNotFound`), a second decision `AlreadyDecided`,
and a storage fault `LedgerError` whose `retryable` says whether trying again can help. No
driver exception (SQLAlchemy, DBAPI) escapes a public call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from decimal import Decimal
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from agent_finops.ledger._aggregates import Aggregate, Window
from agent_finops.ledger._budget import (
    DEFAULT_LEASE_FRACTION,
    DEFAULT_LEASE_IDLE,
    DEFAULT_RESERVATION_RETENTION,
    DEFAULT_RESERVATION_TTL,
    DEFAULT_WORKER_LEASE,
    Claim,
    CounterState,
    LeaseCharge,
    ReservationState,
    ReserveResult,
    Settlement,
)
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
)

__all__ = ["BudgetStore", "ChargeSink", "Clock", "Ledger"]

Clock = Callable[[], datetime]
"""Returns the current time as an aware datetime."""


@runtime_checkable
class BudgetStore(Protocol):
    """Atomic budget reservations: hold a call's worst case on all its budgets, then settle it.

    Never check-then-charge. `reserve` checks *and* reserves on every claim of a call, all or
    none, serialized against every other caller of the same budgets (threads and processes);
    `settle` moves the reservation into `spent` at the actual amounts; `release` gives it
    back when the call failed; `expire` gives back reservations whose worker died. Every
    operation is idempotent by call id. A store never falls back to a local counter when its
    database is unreachable (that would split one budget into several): it raises
    `LedgerError`. Reservation states::

        reserved ──settle──▶ settled
           │  └───release──▶ released ◀──release── expired
           └──────expire───▶ expired ──settle──▶ settled   (a late answer's spend is real)

    Time: expiry is judged on the database's clock, never a worker's (a worker whose clock
    runs ahead must not give back others' live reservations); the caller's `now`/`clock`
    only stamps records, and budget windows are the caller's choice, made in the claims'
    counter keys. Dead workers: a store may tie its reservations to a *worker lease* that
    it renews while it lives (the SQL stores do, every few seconds); `expire` gives back
    the reservations of a worker whose lease ran out, however long their TTL. Finished
    reservations are purged after a retention, which bounds how long a call id stays
    idempotent. See docs/scaling.md ("Clocks", "Dead workers", "Retention").

    Designed for budget leases (issue 12). A later store may let each process take a
    *lease*, a slice of a budget's remaining headroom reserved in the database in one
    transaction, and decide `reserve` calls locally until the slice is used up (slices
    shrinking as the budget nears its limit, so the sum of leases never exceeds it). That
    store fits behind this interface unchanged, because callers only ever:

    - ask for a decision (`reserve`) and get an outcome value, never read a counter to
      decide for themselves, and never assume one round trip per call: a lease store
      answers from its slice and goes to the database only to refill it;
    - learn how full a budget is from `ReserveResult.usage` (for thresholds), which a lease
      store computes from its own view (spent + reserved as last seen, plus its leases);
    - hand back what they did not use through `settle`/`release` (returned to the slice,
      settled in batches), and `close()` the store (or leave its `with` block) when the
      process is done, which is where a lease store returns unused slices and flushes
      pending settlements; `expire` reclaims the leases of dead workers as it reclaims
      their reservations today;
    - read `counter()` for reports and tests only: a lease is itself a reservation on the
      counter, so `spent + reserved <= limit` (what the conformance races check) still
      holds, with leased headroom counted as reserved.

    `Settlement` is a value rather than a bool for the same reason: it can carry more (what
    was charged, overruns) without changing callers that test its truth.
    """

    def reserve(
        self,
        call_id: str,
        claims: Sequence[Claim],
        *,
        trace_id: str | None,
        now: datetime | None = None,
        ttl: timedelta | None = None,
    ) -> ReserveResult:
        """Reserve `amount` on every claim's counter, all or none.

        Refused when, for any enforced claim, spent + reserved + amount > limit; nothing is
        reserved then, and a later retry with the same call id is evaluated afresh.
        Reserving a granted call id again returns the original result (`replayed=True`).
        Before refusing, expired reservations are given back (by the database's clock) and
        the call is tried again. `now` (else the store's clock) only stamps the reservation;
        it expires `ttl` after the database's "now", or earlier when its worker's lease runs
        out (the worker died).
        Raises ValueError for an empty or too long call id or a counter named twice, and
        `ConfigurationError` when a counter already counts another unit.
        """
        ...

    def settle(
        self,
        call_id: str,
        actual: Mapping[str, Decimal | int | None],
        *,
        now: datetime | None = None,
    ) -> Settlement:
        """Charge the actual amounts (by unit: `usd`, `tokens`, `calls`) and free the estimate.

        The actual amount is recorded even when above the estimate (reported in
        `Settlement.overruns`). A unit missing from `actual`, or None (unknown cost), is
        charged its reserved estimate, never zero. The result is truthy iff this call
        recorded the spend; settling again, or after a release, is a no-op. A reservation
        that expired is still settled: the spend is real.
        """
        ...

    def release(self, call_id: str, *, now: datetime | None = None) -> bool:
        """Give the reservation back (the call failed or never ran); idempotent.

        Returns True if reserved amounts were returned now. Settling afterwards is a no-op.
        """
        ...

    def expire(self, now: datetime | None = None) -> list[str]:
        """Give back every reservation past its expiry, or whose worker died; their call ids.

        Judged on the database's clock. `now` is a moment of that clock to judge TTLs at
        instead (tests, operators: `expire(datetime.now(UTC) + timedelta(days=1))` frees
        every reservation made up to a day ago); workers' leases are always judged at the
        database's now. The store's `clock` is never used. Stores also run this
        periodically and before refusing.
        """
        ...

    def purge(self, finished_before: datetime) -> int:
        """Delete settled, released and expired reservations finished before a moment.

        Idempotency holds for as long as a reservation is kept: purge only what no retry
        can still reach. Counters are untouched. Returns the number of reservations deleted.
        `finished_before` is compared with `finished_at`, the caller's time of the finish.
        Stores also purge by themselves, what finished more than their `retention` ago.
        """
        ...

    def reservation(
        self,
        call_id: str,
        claims: Sequence[Claim],
        *,
        trace_id: str | None,
        ttl: timedelta | None = None,
    ) -> AbstractContextManager[ReserveResult]:
        """Reserve around a block: raise `BudgetExceeded` if refused, release on error.

        Settle inside the block with the actual amounts; if the block ends without settling,
        the call is charged its estimates (an unknown cost is never recorded as zero).
        """
        ...

    def counter(self, counter_key: str) -> CounterState | None:
        """(spent, reserved, limit) of a counter, or None if it was never claimed."""
        ...

    def reservation_state(self, call_id: str) -> ReservationState | None:
        """State of a call's reservation, or None if there is none (or it was purged)."""
        ...

    def close(self) -> None:
        """Return what the store holds (connections; with leases, unused headroom)."""
        ...

    def __enter__(self) -> Self:
        """Return the store; it closes on exit."""
        ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        ...


class ChargeSink(Protocol):
    """Where settled charges go to be written (`CostTracker` is one: `emit_charges`, `flush`)."""

    def emit_charges(self, charges: Sequence[LeaseCharge]) -> None:
        """Queue the charges (in one group with whatever the caller is grouping)."""
        ...

    def flush(self, timeout: float | None = ...) -> None:
        """Wait until everything emitted is written."""
        ...


@runtime_checkable
class Ledger(Protocol):
    """Where runs, spans, cost events, policy decisions and approval requests are kept.

    Thread-safe. `setup()` is safe to call any number of times (and from several processes
    at once). Writes are idempotent: runs and spans are upserted by id (the latest state
    wins); events, decisions and approval requests are inserted once by id (a repeated id
    is ignored). Reads return fresh records; datetimes come back in UTC; money is exact to
    18 decimal places below 1e20 on every backend (`MONEY_PLACES`, `MONEY_LIMIT`; see
    docs/ledger.md).

    Ids: `get_*`/`load_*`/`resolve_*` of one record raise a `NotFound` subclass when there is
    none, with `candidates` when a prefix is ambiguous; `find_*` return None instead. A
    human-typed id may be a unique prefix wherever the parameter is named `id_or_prefix`.

    Async twins (`a...`) exist for the calls integrations make from async code (LangGraph
    `ainvoke`, CrewAI `kickoff_async`); `LedgerBase` implements them once, by running the
    sync method in a worker thread.
    """

    # -- lifecycle ------------------------------------------------------------------------

    def setup(self) -> None:
        """Create or migrate the storage; safe to call any number of times."""
        ...

    def close(self) -> None:
        """Release connections (budget stores from `budget_store()` are closed separately)."""
        ...

    def __enter__(self) -> Self:
        """Return the ledger; it closes on exit."""
        ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the ledger."""
        ...

    # -- runs, spans, events, decisions -----------------------------------------------------

    def write(
        self,
        *,
        runs: Sequence[RunRecord] = (),
        spans: Sequence[SpanRecord] = (),
        events: Sequence[CostEvent] = (),
        decisions: Sequence[DecisionRecord] = (),
        charges: Sequence[LeaseCharge] = (),
    ) -> None:
        """Write records in one transaction: all of them or none (idempotent, see above).

        `charges` (budget-lease charges, `LeasedBudgetStore`) are applied to their budget
        counters in the same transaction: a charge whose event is in this write only if that
        event is inserted now (so a replayed write charges nothing twice), one without an
        event in the write always.

        A record the ledger cannot store (a required field missing, a naive datetime, money
        out of range) raises `LedgerError` with `retryable=False` and nothing is written.
        """
        ...

    def list_runs(self, *, limit: int = 20, thread_id: str | None = None) -> list[RunSummary]:
        """The most recent runs (of one thread, if given) with their totals, newest first."""
        ...

    def thread_runs(self, thread_id: str) -> list[RunRecord]:
        """Every run of a thread, oldest first (empty if the thread has none)."""
        ...

    def resolve_run_id(self, id_or_prefix: str) -> str:
        """The full trace id of a run from its id or a unique prefix.

        Raises `RunNotFound` when no run matches, with `candidates` (the matching ids) when
        the prefix matches several (uuid7 ids of runs started close together share long
        prefixes).
        """
        ...

    def resolve_thread_id(self, id_or_prefix: str) -> str | None:
        """The full thread id from an id or a unique prefix of one; None if no run has it.

        Raises `RunNotFound` with `candidates` when the prefix matches several threads.
        (None, not an error, so that a command taking "a run or a thread" can try both.)
        """
        ...

    def load_trace(self, trace_id: str) -> TraceData:
        """The run, its spans (by start) and its cost events (by time); `RunNotFound` if none."""
        ...

    def decisions_for(self, trace_id: str) -> list[DecisionRecord]:
        """Every policy decision recorded for a run, oldest first."""
        ...

    # -- finance: aggregates, event streams, alerts ---------------------------------------

    def aggregate(
        self,
        *,
        by: Sequence[str] = (),
        windows: Sequence[Window],
        where: Mapping[str, Sequence[str]] | None = None,
        runtime: bool = False,
        distinct: bool = True,
    ) -> list[Aggregate]:
        """Totals of the cost events in each `[start, end)` window, grouped by tag values.

        `by` names tags (standard or free-form; an event without the tag groups under None);
        `where` keeps only events whose tag is one of the given values. Computed by the
        backend (in SQL on SQL backends), exactly. Windows may overlap (an event counts in
        each). Only groups with events are returned, ordered by window, then group (None
        first). With `runtime`, `runtime_seconds` is filled too (the group's runs' wall-clock
        time: a join with the runs, so a second pass; zero otherwise). With
        `distinct=False`, `runs` and `tasks` are not counted (zero): one statement less per
        window, for callers that only need sums (anomaly scans over many windows). Raises
        `ConfigurationError` for a bad tag name, a naive or empty window, too many tags
        (`MAX_DIMENSIONS`) or windows (`MAX_WINDOWS`).
        """
        ...

    def iter_events(
        self,
        start: datetime,
        end: datetime,
        *,
        where: Mapping[str, Sequence[str]] | None = None,
        batch_size: int = 1000,
    ) -> Iterator[CostEvent]:
        """Cost events created in `[start, end)`, ordered by (created_at, event_id).

        Read in batches of `batch_size` (keyset pages, no cursor held between batches), so
        memory stays flat however many events there are; for exports.
        """
        ...

    def add_alert(self, alert: AlertRecord) -> bool:
        """Keep an alert unless one with its id exists; whether it was new (raise it then)."""
        ...

    def mark_alert_delivered(self, alert_id: str, channel: str) -> None:
        """Record that an alert reached a channel (idempotent); `NotFound` for an unknown id."""
        ...

    def list_alerts(self, *, since: datetime | None = None, limit: int = 50) -> list[AlertRecord]:
        """Alerts created at or after `since`, newest first."""
        ...

    # -- approvals ------------------------------------------------------------------------

    def add_approval(self, approval: ApprovalRecord) -> ApprovalRecord:
        """Persist a new approval request (idempotent by `approval_id`); the stored record."""
        ...

    def get_approval(self, id_or_prefix: str) -> ApprovalRecord:
        """An approval request by id or unique prefix; `ApprovalNotFound` if none matches."""
        ...

    def find_approval(self, approval_id: str) -> ApprovalRecord | None:
        """An approval request by its full id, or None."""
        ...

    def list_approvals(
        self,
        *,
        status: ApprovalStatus | None = None,
        trace_id: str | None = None,
        thread_id: str | None = None,
        limit: int = 50,
    ) -> list[ApprovalRecord]:
        """Approval requests, newest first, optionally filtered."""
        ...

    def due_approvals(self, now: datetime, *, limit: int = 100) -> list[ApprovalRecord]:
        """Pending requests whose `expires_at` is at or before `now`, soonest expiry first."""
        ...

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
        """Decide a *pending* request (id or unique prefix), atomically: first decision wins.

        `status` is `approved`, `denied` or `expired` (an expiry is decided like any other
        decision, e.g. `by="expiry"`). Raises `ApprovalNotFound` for an unknown id and
        `AlreadyDecided` if the request was decided (or expired) before.
        """
        ...

    def take_decision(
        self, *, thread_id: str | None, trace_id: str | None, at: datetime
    ) -> ApprovalRecord | None:
        """The oldest decided (or expired), not yet applied request of a run, marked applied.

        The run is its thread when `thread_id` is given, else its trace. Atomic: several
        workers resuming the same thread take each decision exactly once between them.
        """
        ...

    def has_open_requests(self, *, thread_id: str | None, trace_id: str | None) -> bool:
        """Whether a run has a pending request or a decision it has not taken up yet."""
        ...

    def mark_applied(self, approval_id: str, *, at: datetime) -> None:
        """Record that the run took up this request's decision (no-op if it was already)."""
        ...

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
        """A budget store on the same database (close it before the ledger).

        `leases=True` gives a `LeasedBudgetStore`: decisions in process from per-worker
        budget leases, its settlements written as `LeaseCharge`s through `charges_to` (the
        tracker: with each call's cost event; default: a writer of its own), taking
        `lease_fraction` of the headroom left per grow, giving back slices idle for
        `lease_idle`.

        `clock` gives the caller's "now" when an operation is not given one (record stamps;
        never expiry). `default_ttl` is the longest a reservation holds budget (database
        clock); `worker_lease` how long it outlives its worker's last heartbeat (a dead
        worker blocks budget about this long; None: TTL only); `retention` how long finished
        reservations are kept, and their call ids idempotent, before the store purges them
        (None: never). See docs/scaling.md, "Clocks" and "Dead workers".
        """
        ...

    # -- async twins ----------------------------------------------------------------------

    async def awrite(
        self,
        *,
        runs: Sequence[RunRecord] = (),
        spans: Sequence[SpanRecord] = (),
        events: Sequence[CostEvent] = (),
        decisions: Sequence[DecisionRecord] = (),
    ) -> None:
        """Async twin of `write`."""
        ...

    async def aload_trace(self, trace_id: str) -> TraceData:
        """Async twin of `load_trace`."""
        ...

    async def aget_approval(self, id_or_prefix: str) -> ApprovalRecord:
        """Async twin of `get_approval`."""
        ...

    async def afind_approval(self, approval_id: str) -> ApprovalRecord | None:
        """Async twin of `find_approval`."""
        ...

    async def alist_approvals(
        self,
        *,
        status: ApprovalStatus | None = None,
        trace_id: str | None = None,
        thread_id: str | None = None,
        limit: int = 50,
    ) -> list[ApprovalRecord]:
        """Async twin of `list_approvals`."""
        ...

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
        ...

    async def atake_decision(
        self, *, thread_id: str | None, trace_id: str | None, at: datetime
    ) -> ApprovalRecord | None:
        """Async twin of `take_decision`."""
        ...

    async def ahas_open_requests(self, *, thread_id: str | None, trace_id: str | None) -> bool:
        """Async twin of `has_open_requests`."""
        ...

    async def amark_applied(self, approval_id: str, *, at: datetime) -> None:
        """Async twin of `mark_applied`."""
        ...
