"""`SQLBudgetStore`: the `BudgetStore` protocol on the ledger's SQLite or PostgreSQL database.

Besides the operations, a store keeps an **upkeep thread** (started at its first
reservation): every quarter of `worker_lease` it renews the store's worker lease (one row of
`finops_budget_workers`, on the database's clock), runs the reaper (`expire()`: reservations
past their TTL, or of workers whose lease ran out, e.g. a process killed with SIGKILL), and
every `purge_interval(retention)` it purges finished reservations older than `retention`, in
batches of `PURGE_BATCH` rows (one short transaction each). None of it runs on a caller's
thread, except a lease renewal when the thread fell behind (a process paused for a while).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.engine import Engine

from agent_finops.ledger._base import BudgetStoreBase
from agent_finops.ledger._budget import (
    DEFAULT_RESERVATION_RETENTION,
    DEFAULT_RESERVATION_TTL,
    DEFAULT_WORKER_LEASE,
    Claim,
    CounterState,
    LeaseGrant,
    LeaseRequest,
    Refusal,
    ReservationState,
    ReserveResult,
    Settlement,
)
from agent_finops.ledger._protocol import Clock
from agent_finops.ledger.sql._dialect import BudgetBackend, dialect_named
from agent_finops.ledger.sql._faults import faults
from agent_finops.ledger.sql._tables import BUDGET_TABLES, metadata

__all__ = [
    "DEFAULT_MAX_IDLE_CONNECTIONS",
    "MAX_PURGE_INTERVAL",
    "PURGE_BATCH",
    "SQLBudgetStore",
    "purge_interval",
]

DEFAULT_MAX_IDLE_CONNECTIONS = 4
"""PostgreSQL connections a store keeps checked out between calls."""
PURGE_BATCH = 1000
"""Finished reservations deleted per transaction by the scheduled purge."""
MAX_PURGE_INTERVAL = timedelta(minutes=5)
"""The scheduled purge runs at least this often (more often for a short retention)."""
MIN_BEAT = 0.05
"""Seconds: the shortest upkeep interval, whatever the lease."""

_log = logging.getLogger("agent_finops.ledger")


def purge_interval(retention: timedelta) -> timedelta:
    """How often the upkeep thread purges: half the retention, from 1 s to 5 minutes."""
    return max(timedelta(seconds=1), min(MAX_PURGE_INTERVAL, retention / 2))


@dataclass(slots=True)
class _Lease:
    """This store's worker lease, shared with its upkeep thread (never the store itself)."""

    length: timedelta | None
    worker_id: str = ""
    pid: int = 0
    """The process that registered `worker_id` (0: none yet); a forked child takes a new id."""
    renewed: float = 0.0
    """`time.monotonic()` before the last renewal that succeeded."""
    lapses: int = 0
    """Renewals that found the lease had lapsed or its row gone (the reaper may have given
    back what the worker held: a `LeasedBudgetStore` then drops its slices)."""


class SQLBudgetStore(BudgetStoreBase):
    """Atomic budget reservations on a SQLite or PostgreSQL database; see `BudgetStore`.

    Thread-safe and multi-process-safe. Database failures raise `LedgerError`; there is no
    local fallback counter. The store keeps a few pooled connections checked out for speed,
    and an upkeep thread (module docstring): `close()` it (or use it as a context manager)
    before disposing of the engine. Usually made by `SQLLedger.budget_store()`.

    Times: expiry, leases and the scheduled purge are judged on the database's clock
    (PostgreSQL `statement_timestamp()`, SQLite `strftime(..., 'now')`, the host's clock);
    `clock` and `now=` only stamp records and pick the moment `purge(finished_before)` and
    `expire(now)` are given explicitly (see docs/scaling.md, "Clocks").
    """

    def __init__(
        self,
        engine: Engine,
        *,
        auto_setup: bool = True,
        clock: Clock | None = None,
        default_ttl: timedelta = DEFAULT_RESERVATION_TTL,
        worker_lease: timedelta | None = DEFAULT_WORKER_LEASE,
        retention: timedelta | None = DEFAULT_RESERVATION_RETENTION,
        durable_commits: bool = True,
        max_idle_connections: int = DEFAULT_MAX_IDLE_CONNECTIONS,
    ) -> None:
        """Budgets on `engine`'s database.

        Args:
            engine: the ledger's engine (`SQLLedger.engine`).
            auto_setup: create the budget tables if missing.
            clock: the caller's "now" (aware) when an operation is not given one: stamps
                `created_at`/`finished_at`; never used for expiry.
            default_ttl: the longest a reservation holds budget (database clock), even when
                its worker is alive: it must outlast the slowest call.
            worker_lease: how long this store's reservations outlive its last heartbeat
                (the upkeep thread renews it every quarter of it), so a killed process
                blocks its budgets for about this long. None: no lease, only the TTL.
            retention: finished reservations older than this (database clock vs their
                `finished_at`) are purged by the upkeep thread; a call id stays idempotent
                for as long as its reservation is kept. None: never purged by the store.
            durable_commits: PostgreSQL only. False runs budget transactions with
                `synchronous_commit = off`: no WAL flush wait at commit; a server crash may
                lose the last fraction of a second of budget updates but never corrupts or
                half-applies one (the guarantee SQLite gives with `synchronous=NORMAL`).
            max_idle_connections: PostgreSQL connections kept checked out between calls
                (skips the pool's pre-ping round trip); SQLite always keeps one.
        """
        super().__init__(clock=clock, default_ttl=default_ttl)
        for name, value in (("worker_lease", worker_lease), ("retention", retention)):
            if value is not None and value <= timedelta(0):
                raise ValueError(f"{name} must be positive or None, got {value!r}")
        self.engine = engine
        self._db: BudgetBackend = dialect_named(engine.dialect.name).budget_backend(
            engine, durable_commits=durable_commits, max_idle_connections=max_idle_connections
        )
        self._lease = _Lease(worker_lease)
        self._retention = retention
        self._start_lock = threading.Lock()
        self._stop = threading.Event()
        self._upkeep: threading.Thread | None = None
        self._stop_upkeep = weakref.finalize(self, self._stop.set)
        if auto_setup:
            self.setup()

    def setup(self) -> None:
        """Create the budget tables if missing; safe to call any number of times."""
        url = self.engine.url.render_as_string(hide_password=True)
        with faults(f"cannot create budget tables at {url}"):
            metadata.create_all(self.engine, tables=list(BUDGET_TABLES), checkfirst=True)

    @property
    def worker_id(self) -> str | None:
        """This store's worker lease id in this process (None before its first reservation)."""
        lease = self._lease
        return lease.worker_id if lease.pid == os.getpid() else None

    def close(self) -> None:
        """Stop the upkeep thread, end the worker lease, return the connections."""
        self._stop.set()
        upkeep, self._upkeep = self._upkeep, None
        if upkeep is not None and upkeep.ident is not None and upkeep.is_alive():
            upkeep.join(timeout=5)
        lease = self._lease
        if lease.pid == os.getpid():
            lease.pid = 0
            try:  # its reservations still open are given back by the next reaper
                self._db.drop_worker(lease.worker_id)
            except Exception:  # the lease then runs out by itself
                _log.debug("could not end worker lease %s", lease.worker_id, exc_info=True)
        self._db.close()

    # -- the worker lease and the upkeep thread -------------------------------------------

    def _worker(self) -> str | None:
        """The worker id to tie a reservation to: registered (and fresh) in this process."""
        lease = self._lease
        if lease.length is None and self._retention is None:
            return None
        if lease.pid != os.getpid():
            with self._start_lock:
                if lease.pid != os.getpid():
                    self._begin()
        elif (
            lease.length is not None
            and time.monotonic() - lease.renewed > lease.length.total_seconds() / 2
        ):
            _renew(self._db, lease)  # the upkeep thread fell behind: never reserve on a stale lease
        return lease.worker_id if lease.length is not None else None

    def _begin(self) -> None:
        """Register a new lease (new in this process, or after a fork) and start the upkeep."""
        lease = self._lease
        if lease.length is not None:
            lease.worker_id = uuid.uuid4().hex
            lease.renewed = 0.0  # a new worker: its first renewal registers it
            _renew(self._db, lease)
        lease.pid = os.getpid()
        self._stop.clear()
        thread = threading.Thread(
            target=_upkeep,
            args=(weakref.ref(self._db), lease, self._retention, self._stop),
            name="agent-finops-budget-upkeep",
            daemon=True,
        )
        thread.start()
        self._upkeep = thread

    # -- budget leases (`LeasedBudgetStore` decides from them) ------------------------------

    def lease_worker(self) -> str:
        """This store's worker id, registered and fresh (budget leases need a worker lease)."""
        worker = self._worker()
        if worker is None:
            raise ValueError("budget leases need a worker lease (worker_lease=None was given)")
        return worker

    def lease_lapses(self) -> int:
        """How many times a renewal found this worker's lease had lapsed."""
        return self._lease.lapses

    def lease_age(self) -> float:
        """Seconds since the worker lease was last renewed (infinity before the first)."""
        lease = self._lease
        if lease.pid != os.getpid() or not lease.renewed:
            return float("inf")
        return time.monotonic() - lease.renewed

    @property
    def worker_lease_seconds(self) -> float:
        """The worker lease's length in seconds (infinity without one)."""
        length = self._lease.length
        return float("inf") if length is None else length.total_seconds()

    def grow_leases(
        self, worker_id: str, requests: Sequence[LeaseRequest], now: datetime
    ) -> tuple[list[LeaseGrant], list[Refusal]]:
        """Grow this worker's budget leases in one transaction (see `plan_grow`)."""
        return self._db.grow_leases(worker_id, requests, now)

    def shrink_leases(self, worker_id: str, amounts: Mapping[str, Decimal], now: datetime) -> None:
        """Give back up to `amounts` of this worker's leases."""
        self._db.shrink_leases(worker_id, amounts, now)

    # -- primitives -----------------------------------------------------------------------

    def _reserve(
        self,
        call_id: str,
        claims: Sequence[Claim],
        trace_id: str | None,
        now: datetime,
        ttl: timedelta,
    ) -> ReserveResult:
        return self._db.reserve(call_id, claims, trace_id, now, ttl, self._worker())

    def _settle(
        self, call_id: str, now: datetime, charges: Mapping[str, Decimal | None]
    ) -> Settlement:
        return self._db.finish(call_id, now, "settled", charges)

    def _release(self, call_id: str, now: datetime) -> bool:
        return self._db.finish(call_id, now, "released", {}).settled

    def _expire(self, at: datetime | None) -> list[str]:
        return self._db.expire(at)

    def purge(self, finished_before: datetime) -> int:
        """See `BudgetStore.purge`."""
        return self._db.purge(finished_before)

    def counter(self, counter_key: str) -> CounterState | None:
        """See `BudgetStore.counter`."""
        return self._db.counter(counter_key)

    def charged_events(self, event_ids: Sequence[str]) -> set[str]:
        """Those of `event_ids` in the ledger: a charge is written with its event, or not."""
        return self._db.events_present(event_ids)

    def reservation_state(self, call_id: str) -> ReservationState | None:
        """See `BudgetStore.reservation_state`."""
        return self._db.reservation_state(call_id)


# Module functions, not methods: the upkeep thread must not refer to the store, and only
# weakly to its backend, so that a store dropped without `close()` is freed by reference
# counting at once, with its connections (its finalizer also stops the thread).


def _renew(db: BudgetBackend, lease: _Lease) -> None:
    assert lease.length is not None
    started = time.monotonic()
    first = not lease.renewed
    live = db.renew_worker(lease.worker_id, socket.gethostname()[:255], os.getpid(), lease.length)
    if not live and not first:
        lease.lapses += 1
    lease.renewed = started


def _upkeep(
    backend: weakref.ref[BudgetBackend],
    lease: _Lease,
    retention: timedelta | None,
    stop: threading.Event,
) -> None:
    """Renew the lease, reap, purge, until `stop`; database faults are logged and retried."""
    beat = (lease.length or MAX_PURGE_INTERVAL).total_seconds() / 4
    every = None if retention is None else purge_interval(retention).total_seconds()
    if every is not None:
        beat = min(beat, every)
    beat = max(MIN_BEAT, beat)
    next_purge = time.monotonic() + (every or 0)
    while not stop.wait(beat):
        db = backend()
        if db is None:  # the store was dropped
            return
        try:
            if lease.length is not None:
                _renew(db, lease)
            db.expire(None)
            if retention is not None and every is not None and time.monotonic() >= next_purge:
                while db.purge_older(retention, PURGE_BATCH) >= PURGE_BATCH:
                    if stop.is_set():
                        return
                next_purge = time.monotonic() + every
        except Exception:  # the database is down or busy: try again at the next beat
            _log.warning("budget store upkeep failed; retrying", exc_info=True)
        finally:
            del db
