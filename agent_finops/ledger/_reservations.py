"""Budget reservations: hold a call's worst-case cost on every budget at once, then settle it.

Never check-then-charge. `BudgetStore.reserve` checks *and* reserves in one serialized write
transaction, on every claim of the call, all or none; `settle` moves the reservation into
`spent` at the actual amount; `release` gives it back when the call failed; `expire` gives back
reservations whose worker died, so a crash cannot leave a phantom "budget exceeded" behind.
Every operation is idempotent by call id.

Serialization:

- SQLite: `BEGIN IMMEDIATE` takes the database write lock before the counters are read, so
  the check and the update are one transaction across threads and processes (WAL, busy
  timeout). Money is text there, so arithmetic is done in Python with `Decimal` inside the
  transaction. Threads of one process also queue on an in-process lock, which hands the write
  lock over faster than SQLite's sleeping busy handler. WAL checkpoints (their fsyncs) run on a
  background thread, not inside a caller's commit (see `_Checkpointer`).
- PostgreSQL: reserve, settle and release are each one statement (one round trip, its own
  transaction). A `MATERIALIZED` CTE runs `SELECT ... ORDER BY counter_key FOR UPDATE`, so
  counter rows are always locked in one global order (no deadlocks), before the decision and
  the updates, which are gated on it. Missing counter rows are first created in their own
  short transaction with `INSERT ... ON CONFLICT DO NOTHING`. Money is `NUMERIC(38, 18)`.

The hot path talks to the DBAPI connection directly (no ORM, no statement compilation), and
the store keeps its connections checked out between calls (SQLite: one per process;
PostgreSQL: a few, which skips the pool's pre-ping round trip; a connection found dropped
is replaced and the operation retried, which is safe because every operation is idempotent).
Decimal arithmetic uses an 80-digit context, so NUMERIC(38, 18) sums never round.

Reservation states::

    reserved ──settle──▶ settled
       │  └───release──▶ released ◀──release── expired
       └──────expire───▶ expired ──settle──▶ settled   (a late answer's spend is still real)
"""

from __future__ import annotations

import json
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal
from typing import Any, Literal, NamedTuple, Self, TypeVar, cast

from sqlalchemy import JSON, Column, Index, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Field, SQLModel

from agent_finops.exceptions import BudgetExceeded, ConfigurationError, LedgerError
from agent_finops.ledger._schema import Money

__all__ = [
    "DEFAULT_RESERVATION_TTL",
    "BudgetCounterRow",
    "BudgetStore",
    "Claim",
    "ClaimUsage",
    "CounterState",
    "Refusal",
    "ReservationRow",
    "ReservationState",
    "ReserveResult",
    "Unit",
]

Unit = Literal["usd", "tokens", "calls"]
ReservationState = Literal["reserved", "settled", "released", "expired"]

UNITS: frozenset[str] = frozenset(("usd", "tokens", "calls"))
DEFAULT_RESERVATION_TTL = timedelta(minutes=30)
"""How long a reservation holds budget before `expire` may give it back (crashed worker)."""
DEFAULT_MAX_IDLE_CONNECTIONS = 4
"""PostgreSQL connections a store keeps checked out between calls."""
MAX_COUNTER_KEY_LENGTH = 512
MAX_CALL_ID_LENGTH = 128
CHECKPOINT_EVERY = 64
"""SQLite (WAL): a store's commits between two background checkpoints."""
WAL_RESTART_PAGES = 2000
"""SQLite (WAL): WAL size (pages) at which a background checkpoint briefly holds the store's
writers back, so that the WAL can restart from its beginning."""
WAL_BACKSTOP_PAGES = 4000
"""SQLite (WAL): WAL size (pages) at which the store's connection checkpoints inline (a bound
reached only when the background checkpoints fall behind)."""

log = logging.getLogger("agent_finops")

_ZERO = Decimal(0)
_EXACT = Context(prec=80)
"""Arithmetic context: NUMERIC(38, 18) sums never round (the default context keeps 28 digits)."""
_INFINITY = Decimal("Infinity")
_T = TypeVar("_T")


# -- tables ---------------------------------------------------------------------------------


class BudgetCounterRow(SQLModel, table=True):
    """Spend and outstanding reservations of one budget counter (one rule, scope and window)."""

    __tablename__ = "finops_budget_counters"
    __table_args__ = {"sqlite_with_rowid": False}  # clustered by key: one b-tree, fewer pages
    counter_key: str = Field(primary_key=True, max_length=MAX_COUNTER_KEY_LENGTH)
    unit: str = Field(max_length=16)
    limit: Decimal = Field(sa_column=Column("limit", Money(), nullable=False))
    """The limit last claimed against this counter (the policy in force)."""
    spent: Decimal = Field(default=_ZERO, sa_column=Column(Money(), nullable=False))
    """Settled actual amounts; may exceed `limit` when a call cost more than its estimate."""
    reserved: Decimal = Field(default=_ZERO, sa_column=Column(Money(), nullable=False))
    """Estimates of calls in flight."""
    window_end: datetime | None = None
    updated_at: datetime


class ReservationRow(SQLModel, table=True):
    """One call's reservation on all its counters; the claims are kept as JSON."""

    __tablename__ = "finops_reservations"
    __table_args__ = (
        # Only open reservations are indexed, so `expire` finds them without a scan.
        Index(
            "ix_finops_reservations_open",
            "expires_at",
            sqlite_where=text("state = 'reserved'"),
            postgresql_where=text("state = 'reserved'"),
        ),
        {"sqlite_with_rowid": False},
    )
    call_id: str = Field(primary_key=True, max_length=MAX_CALL_ID_LENGTH)
    trace_id: str | None = Field(default=None, max_length=64)
    state: str = Field(max_length=16)
    claims: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    """Per claim: counter_key, rule_id, unit, limit, amount, enforce, used (decimals as text)."""
    actual: dict[str, str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    """Amount charged per counter key when settled."""
    created_at: datetime
    expires_at: datetime
    finished_at: datetime | None = None


_TABLES = [BudgetCounterRow.__table__, ReservationRow.__table__]  # type: ignore[attr-defined]
_C = BudgetCounterRow.__tablename__
_R = ReservationRow.__tablename__


# -- values ---------------------------------------------------------------------------------


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

    def __post_init__(self) -> None:
        """Validate, and accept `int` or `str` amounts as exact decimals."""
        for name in ("limit", "amount"):
            value: object = getattr(self, name)
            if isinstance(value, float) or not isinstance(value, Decimal | int | str):
                raise TypeError(f"Claim.{name} must be a Decimal, not {value!r} (inexact)")
            if not isinstance(value, Decimal):
                object.__setattr__(self, name, Decimal(value))
            if not getattr(self, name).is_finite() or getattr(self, name) < 0:
                raise ValueError(f"Claim.{name} must be a finite amount >= 0, got {value!r}")
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


class CounterState(NamedTuple):
    """A counter as stored."""

    spent: Decimal
    reserved: Decimal
    limit: Decimal


@dataclass(slots=True)
class _Counter:
    unit: str
    limit: Decimal
    spent: Decimal
    reserved: Decimal
    window_end: Any  # as the driver returned it; written back unchanged


class _StaleConnection(Exception):
    """Internal control flow: a kept connection was dropped by the server; retry once."""


# -- store ----------------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC)


class BudgetStore:
    """Atomic budget reservations on the ledger's database (SQLite or PostgreSQL).

    Thread-safe and multi-process-safe. Database failures raise `LedgerError`; there is no
    local fallback counter (that would silently split one budget into several). The store
    keeps a few pooled connections checked out for speed: call `close()` (or use it as a
    context manager) before disposing of the engine.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        auto_setup: bool = True,
        clock: Callable[[], datetime] = _utcnow,
        default_ttl: timedelta = DEFAULT_RESERVATION_TTL,
        durable_commits: bool = True,
        max_idle_connections: int = DEFAULT_MAX_IDLE_CONNECTIONS,
    ) -> None:
        """Wrap the ledger's engine.

        Args:
            engine: the ledger's engine (`SQLLedger.engine`).
            auto_setup: create the two tables if missing.
            clock: source of "now" (UTC) when an operation is not given one.
            default_ttl: how long a reservation holds budget before `expire` may free it.
            durable_commits: PostgreSQL only. False runs budget transactions with
                `synchronous_commit = off`: no WAL flush wait at commit; a server crash may
                lose the last fraction of a second of budget updates but never corrupts or
                half-applies one (the guarantee SQLite gives with `synchronous=NORMAL`).
            max_idle_connections: PostgreSQL connections kept checked out between calls
                (skips the pool's pre-ping round trip); SQLite always keeps one.
        """
        dialect = engine.dialect.name
        if dialect == "sqlite":
            self._db: _Backend = _SQLite(engine)
        elif dialect == "postgresql":
            self._db = _Postgres(engine, durable_commits, max_idle_connections)
        else:
            raise ConfigurationError(
                "budget reservations need SQLite or PostgreSQL",
                field="engine",
                value=dialect,
                expected="sqlite or postgresql",
            )
        self.engine = engine
        self._clock = clock
        self._default_ttl = default_ttl
        if auto_setup:
            self.setup()

    def setup(self) -> None:
        """Create the reservation tables if missing; safe to call any number of times."""
        try:
            SQLModel.metadata.create_all(self.engine, tables=_TABLES)
        except SQLAlchemyError as exc:
            message = str(exc).lower()
            if "already exists" in message or "duplicate key" in message:
                return  # another process created them at the same moment
            raise LedgerError(f"cannot create budget tables at {self.engine.url!r}: {exc}") from exc

    def close(self) -> None:
        """Return the connections the store keeps to the engine's pool."""
        self._db.close()

    def __enter__(self) -> Self:
        """Return self; the store closes on exit."""
        return self

    def __exit__(self, *_exc: object) -> None:
        """Close the store."""
        self.close()

    # -- operations ---------------------------------------------------------------------

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
        Before refusing, expired reservations are given back and the call is tried again.
        """
        _check_call_id(call_id)
        keys = {c.counter_key for c in claims}
        if len(keys) != len(claims):
            raise ValueError(f"claims of call {call_id!r} name a counter more than once")
        now = now or self._clock()
        expires_at = now + (self._default_ttl if ttl is None else ttl)
        result = self._db.reserve(call_id, claims, trace_id, now, expires_at)
        if not result.granted and self._db.expire(now):
            result = self._db.reserve(call_id, claims, trace_id, now, expires_at)
        return result

    def settle(
        self,
        call_id: str,
        actual: Mapping[str, Decimal | int | None],
        *,
        now: datetime | None = None,
    ) -> bool:
        """Charge the actual amounts (by unit: `usd`, `tokens`, `calls`) and free the estimate.

        The actual amount is recorded even when above the estimate. A unit missing from
        `actual`, or None (unknown cost), is charged its reserved estimate, never zero.
        Returns True if this call recorded the spend; False if it was already settled, was
        released, or was never reserved. A reservation that expired is still settled: the
        spend is real.
        """
        charges: dict[str, Decimal | None] = {}
        for unit, value in actual.items():
            if value is None:
                charges[unit] = None
                continue
            if isinstance(value, float) or not isinstance(value, Decimal | int):
                raise TypeError(f"actual[{unit!r}] must be a Decimal or int, got {value!r}")
            amount = Decimal(value)
            if not amount.is_finite() or amount < 0:
                raise ValueError(f"actual[{unit!r}] must be a finite amount >= 0, got {value!r}")
            charges[unit] = amount
        return self._db.finish(call_id, now or self._clock(), "settled", charges)

    def release(self, call_id: str, *, now: datetime | None = None) -> bool:
        """Give the reservation back (the call failed or never ran); idempotent.

        Returns True if reserved amounts were returned now. Settling afterwards is a no-op.
        """
        return self._db.finish(call_id, now or self._clock(), "released", {})

    def expire(self, now: datetime | None = None) -> list[str]:
        """Give back every reservation past its expiry (its worker died); their call ids."""
        return self._db.expire(now or self._clock())

    def purge(self, finished_before: datetime) -> int:
        """Delete settled, released and expired reservations finished before a moment.

        Idempotency holds for as long as a reservation is kept: purge only what no retry
        can still reach. Counters are untouched. Returns the number of rows deleted.
        """
        return self._db.purge(finished_before)

    @contextmanager
    def reservation(
        self,
        call_id: str,
        claims: Sequence[Claim],
        *,
        trace_id: str | None,
        ttl: timedelta | None = None,
    ) -> Iterator[ReserveResult]:
        """Reserve around a block: raise `BudgetExceeded` if refused, release on error.

        Settle inside the block with the actual amounts; if the block ends without settling,
        the call is charged its estimates (an unknown cost is never recorded as zero).
        """
        result = self.reserve(call_id, claims, trace_id=trace_id, ttl=ttl)
        result.raise_if_refused(trace_id=trace_id)
        try:
            yield result
        except BaseException:
            self.release(call_id)
            raise
        self.settle(call_id, {})

    # -- reads --------------------------------------------------------------------------

    def counter(self, counter_key: str) -> CounterState | None:
        """(spent, reserved, limit) of a counter, or None if it was never claimed."""
        rows = self._db.read(self._db.sql_counter, (counter_key,))
        if not rows:
            return None
        spent, reserved, limit = rows[0]
        return CounterState(_tidy(Decimal(spent)), _tidy(Decimal(reserved)), _tidy(Decimal(limit)))

    def reservation_state(self, call_id: str) -> ReservationState | None:
        """State of a call's reservation, or None if there is none."""
        rows = self._db.read(self._db.sql_reservation, (call_id,))
        return cast(ReservationState, rows[0][0]) if rows else None


def _check_call_id(call_id: str) -> None:
    if not call_id or len(call_id) > MAX_CALL_ID_LENGTH:
        raise ValueError(f"call_id must be 1-{MAX_CALL_ID_LENGTH} characters, got {call_id!r}")


def _naive_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


# -- decisions (pure; run inside the serialized transaction) ----------------------------------

_add = _EXACT.add
_sub = _EXACT.subtract


def _plan_reserve(
    call_id: str, claims: Sequence[Claim], counters: Mapping[str, _Counter]
) -> tuple[ReserveResult, dict[str, _Counter], list[dict[str, Any]]]:
    """The outcome; when granted also the counters to write and the claims to store."""
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
    writes: dict[str, _Counter] = {}
    usages: list[ClaimUsage] = []
    records: list[dict[str, Any]] = []
    for claim, used in zip(claims, observed, strict=True):
        row = counters.get(claim.counter_key)
        writes[claim.counter_key] = _Counter(
            claim.unit,
            claim.limit,
            _ZERO if row is None else row.spent,
            claim.amount if row is None else _add(row.reserved, claim.amount),
            claim.window_end,
        )
        usage = _usage(claim, _add(used, claim.amount))
        usages.append(usage)
        records.append(_record(claim, usage.used))
    return ReserveResult(call_id, tuple(usages)), writes, records


def _usage(claim: Claim, used: Decimal) -> ClaimUsage:
    return ClaimUsage(
        claim.counter_key, claim.rule_id, claim.unit, claim.limit, used, claim.enforce
    )


def _record(claim: Claim, used: Decimal) -> dict[str, Any]:
    """A claim as stored in the reservation row (decimals as exact text)."""
    return {
        "counter_key": claim.counter_key,
        "rule_id": claim.rule_id,
        "unit": claim.unit,
        "limit": str(claim.limit),
        "amount": str(claim.amount),
        "enforce": claim.enforce,
        "used": str(used),
    }


def _plan_finish(
    state: str,
    records: list[dict[str, Any]],
    counters: dict[str, _Counter],
    target: ReservationState,
    charges: Mapping[str, Decimal | None],
) -> tuple[dict[str, _Counter], dict[str, str] | None, bool] | None:
    """Counters to write, amounts charged, and whether anything was charged or given back.

    None when there is nothing to do (already settled or released).
    """
    if state not in ("reserved", "expired"):
        return None
    give_back = state == "reserved"  # an expired reservation was given back already
    settling = target == "settled"
    if not (give_back or settling):
        return {}, None, False  # expired -> released: only the state changes
    actual: dict[str, str] | None = {} if settling else None
    for record in records:
        key = record["counter_key"]
        counter = counters.get(key)
        if counter is None:  # deleted by hand: recreate it, the spend is still real
            counter = counters[key] = _Counter(
                record["unit"], Decimal(record["limit"]), _ZERO, _ZERO, None
            )
        estimate = Decimal(record["amount"])
        if give_back:
            counter.reserved = _sub(counter.reserved, estimate)
        if actual is not None:
            charge = charges.get(record["unit"])
            charge = estimate if charge is None else charge
            counter.spent = _add(counter.spent, charge)
            actual[key] = str(charge)
    return counters, actual, True


def _replayed(call_id: str, state: str, records: list[dict[str, Any]]) -> ReserveResult:
    usage = tuple(
        ClaimUsage(
            r["counter_key"],
            r["rule_id"],
            r["unit"],
            Decimal(r["limit"]),
            _tidy(Decimal(r["used"])),
            bool(r["enforce"]),
        )
        for r in records
    )
    return ReserveResult(call_id, usage, replayed=True, state=cast(ReservationState, state))


def _tidy(value: Decimal) -> Decimal:
    """NUMERIC(38, 18) pads 18 decimals; drop trailing zeros without changing the value."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1), context=_EXACT)
    return value.normalize(_EXACT)


# -- backends -------------------------------------------------------------------------------

_COLUMNS = 'counter_key, unit, "limit", spent, reserved, window_end'
_INHERITED: list[Any] = []
"""Connections a forked child inherited: never used nor closed (that would break the parent)."""


class _Backend:
    """Transactions on the DBAPI connection; subclasses give the dialect's details."""

    param = "?"
    json_param = "?"
    lock = ""
    """Row-lock clause (PostgreSQL); SQLite's write lock is taken by BEGIN IMMEDIATE."""

    def __init__(self, engine: Engine, max_idle: int) -> None:
        self.engine = engine
        dbapi = engine.dialect.loaded_dbapi
        self._dbapi_error: type[Exception] = dbapi.Error
        self._max_idle = max_idle
        self._kept = _Kept(self.release_connection)
        self._pid = os.getpid()
        self._finalizer = weakref.finalize(self, self._kept.close)
        p, j, lock = self.param, self.json_param, self.lock
        self._upserts: dict[int, str] = {}
        self.sql_create = (
            f"INSERT INTO {_C} ({_COLUMNS}, updated_at) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})"
            " ON CONFLICT (counter_key) DO NOTHING"
        )
        self.sql_counter = f'SELECT spent, reserved, "limit" FROM {_C} WHERE counter_key = {p}'
        self.sql_reservation = f"SELECT state, claims FROM {_R} WHERE call_id = {p}"
        self.sql_insert_reservation = (
            f"INSERT INTO {_R} (call_id, trace_id, state, claims, created_at, expires_at)"
            f" VALUES ({p}, {p}, 'reserved', {j}, {p}, {p})"
        )
        self.sql_finish = (
            f"UPDATE {_R} SET state = {p}, actual = {j}, finished_at = {p} WHERE call_id = {p}"
        )
        self.sql_any_expired = (
            f"SELECT 1 FROM {_R} WHERE state = 'reserved' AND expires_at <= {p} LIMIT 1"
        )
        self.sql_expired = (
            f"SELECT call_id, claims FROM {_R} WHERE state = 'reserved' AND expires_at <= {p}"
            f" ORDER BY call_id{lock}"
        )
        self.sql_purge = f"DELETE FROM {_R} WHERE state <> 'reserved' AND finished_at < {p}"

    # -- dialect hooks ------------------------------------------------------------------

    def transaction(self) -> AbstractContextManager[Any]:
        """A write transaction: yields the DBAPI connection, commits at the end."""
        raise NotImplementedError  # pragma: no cover

    def read(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """Rows of one read-only query."""
        raise NotImplementedError  # pragma: no cover

    def query_counters(self, conn: Any, keys: list[str]) -> Any:
        """Start reading (and, on PostgreSQL, locking in key order) counter rows."""
        raise NotImplementedError  # pragma: no cover

    def read_for_reserve(
        self, conn: Any, keys: list[str], call_id: str
    ) -> tuple[dict[str, _Counter], Any]:
        """The counters, and the call's stored reservation (state, claims) if any."""
        counters = self._counters(self.query_counters(conn, keys))
        return counters, conn.execute(self.sql_reservation, (call_id,)).fetchone()

    def money(self, value: Decimal) -> Any:
        return value

    def time(self, moment: datetime | str | None) -> Any:
        return moment if moment is None or isinstance(moment, str) else _naive_utc(moment)

    def json_out(self, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    def _acquire(self, fairy: Any) -> None:
        """Prepare a connection taken from the engine's pool."""

    @staticmethod
    def release_connection(fairy: Any) -> None:
        """Undo `_acquire` before a connection goes back to the engine's pool."""

    # -- connections --------------------------------------------------------------------

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """A DBAPI connection, kept checked out between calls; invalidated if it broke."""
        if self._pid != os.getpid():  # forked: the parent's connections are not ours
            _INHERITED.append(self._kept)
            self._finalizer.detach()
            self._kept = _Kept(self.release_connection)
            self._finalizer = weakref.finalize(self, self._kept.close)
            self._pid = os.getpid()
        idle = self._kept.idle
        try:
            fairy, kept = idle.pop(), True
        except IndexError:
            fairy, kept = self.engine.raw_connection(), False
            try:
                self._acquire(fairy)
            except BaseException:
                fairy.close()
                raise
        try:
            yield fairy.driver_connection
        except BaseException as exc:
            if isinstance(exc, self._dbapi_error) and self.engine.dialect.is_disconnect(
                cast(Any, exc), fairy.dbapi_connection, None
            ):
                fairy.invalidate(exc)
                fairy.close()
                if kept:
                    raise _StaleConnection from exc
                raise
            self._kept.give_back(fairy)  # the pool rolls it back before reuse
            raise
        if len(idle) < self._max_idle:
            idle.append(fairy)
        else:
            self._kept.give_back(fairy)

    def close(self) -> None:
        self._finalizer()

    def _run(self, what: str, operation: Callable[[], _T]) -> _T:
        """Run an operation, once more on a fresh connection if a kept one had gone stale.

        Retrying is safe because every operation is idempotent by call id.
        """
        try:
            try:
                return operation()
            except _StaleConnection:
                return operation()
        except _StaleConnection as exc:
            raise LedgerError(f"budget {what} failed: {exc.__cause__}") from exc.__cause__
        except (self._dbapi_error, SQLAlchemyError) as exc:
            raise LedgerError(f"budget {what} failed: {exc}") from exc

    def _counters(self, cursor: Any) -> dict[str, _Counter]:
        return {
            key: _Counter(unit, Decimal(limit), Decimal(spent), Decimal(reserved), end)
            for key, unit, limit, spent, reserved, end in cursor.fetchall()
        }

    def _write_counters(self, conn: Any, counters: Mapping[str, _Counter], now: Any) -> None:
        """Upsert counters, in key order, with one statement."""
        if not counters:
            return
        money, time = self.money, self.time
        params: list[Any] = []
        for key, c in sorted(counters.items()):
            end = time(c.window_end)
            params += (key, c.unit, money(c.limit), money(c.spent), money(c.reserved), end, now)
        sql = self._upserts.get(len(counters))
        if sql is None:
            row = "(" + ", ".join([self.param] * 7) + ")"
            sql = self._upserts[len(counters)] = (
                f"INSERT INTO {_C} ({_COLUMNS}, updated_at) VALUES "
                + ", ".join([row] * len(counters))
                + ' ON CONFLICT (counter_key) DO UPDATE SET "limit" = excluded."limit",'
                " spent = excluded.spent, reserved = excluded.reserved,"
                " window_end = excluded.window_end, updated_at = excluded.updated_at"
            )
        conn.execute(sql, params)

    # -- operations (SQLite runs them all; PostgreSQL overrides the hot ones) -------------

    def reserve(
        self,
        call_id: str,
        claims: Sequence[Claim],
        trace_id: str | None,
        now: datetime,
        expires_at: datetime,
    ) -> ReserveResult:
        keys = sorted(c.counter_key for c in claims)

        def attempt() -> ReserveResult:
            with self.transaction() as conn:
                counters, existing = self.read_for_reserve(conn, keys, call_id)
                if existing is not None:
                    return _replayed(call_id, existing[0], self.json_out(existing[1]))
                result, writes, records = _plan_reserve(call_id, claims, counters)
                if result.granted:
                    stamp = self.time(now)
                    self._write_counters(conn, writes, stamp)
                    conn.execute(
                        self.sql_insert_reservation,
                        (call_id, trace_id, json.dumps(records), stamp, self.time(expires_at)),
                    )
                return result

        return self._run("reservation", attempt)

    def finish(
        self,
        call_id: str,
        now: datetime,
        target: ReservationState,
        charges: Mapping[str, Decimal | None],
    ) -> bool:
        def attempt() -> bool:
            with self.transaction() as conn:
                found = conn.execute(self.sql_reservation + self.lock, (call_id,)).fetchone()
                if found is None:
                    return False
                records = self.json_out(found[1])
                keys = sorted(r["counter_key"] for r in records)
                counters = self._counters(self.query_counters(conn, keys)) if keys else {}
                plan = _plan_finish(found[0], records, counters, target, charges)
                if plan is None:
                    return False
                writes, actual, changed = plan
                stamp = self.time(now)
                self._write_counters(conn, writes, stamp)
                charged = None if actual is None else json.dumps(actual)
                conn.execute(self.sql_finish, (target, charged, stamp, call_id))
                return changed

        return self._run("settlement" if target == "settled" else "release", attempt)

    def expire(self, now: datetime) -> list[str]:
        stamp = self.time(now)

        def attempt() -> list[str]:
            with self.transaction() as conn:
                expired = [
                    (call_id, self.json_out(claims))
                    for call_id, claims in conn.execute(self.sql_expired, (stamp,)).fetchall()
                ]
                if not expired:
                    return []
                give_back: dict[str, Decimal] = {}
                for _call_id, records in expired:
                    for record in records:
                        key = record["counter_key"]
                        give_back[key] = _add(give_back.get(key, _ZERO), Decimal(record["amount"]))
                counters = self._counters(self.query_counters(conn, sorted(give_back)))
                for key, counter in counters.items():
                    counter.reserved = _sub(counter.reserved, give_back[key])
                self._write_counters(conn, counters, stamp)
                for call_id, _ in expired:
                    conn.execute(self.sql_finish, ("expired", None, stamp, call_id))
                return [call_id for call_id, _ in expired]

        # A cheap unlocked look first: there is usually nothing to expire.
        if not self.read(self.sql_any_expired, (stamp,)):
            return []
        return self._run("expiry", attempt)

    def purge(self, finished_before: datetime) -> int:
        def attempt() -> int:
            with self.transaction() as conn:
                deleted: int = conn.execute(self.sql_purge, (self.time(finished_before),)).rowcount
                return deleted

        return self._run("purge", attempt)


class _Kept:
    """What a backend keeps between calls; closed by a finalizer, so it never refers back."""

    def __init__(self, release: Callable[[Any], None]) -> None:
        self.idle: list[Any] = []
        self.release = release

    def give_back(self, fairy: Any) -> None:
        """Return a connection to the engine's pool."""
        try:
            self.release(fairy)
        except Exception:  # a broken connection: the pool discards it
            fairy.invalidate()
        fairy.close()

    def close(self) -> None:
        while self.idle:
            self.give_back(self.idle.pop())


_SQLITE_LOCKS: dict[str, threading.Lock] = {}
"""One lock per SQLite database and process: the process's threads take turns writing."""


def _fresh_locks_in_child() -> None:
    # A lock held by another thread at fork time would never be released in the child.
    for key in _SQLITE_LOCKS:
        _SQLITE_LOCKS[key] = threading.Lock()


os.register_at_fork(after_in_child=_fresh_locks_in_child)


_AUTOCHECKPOINT = "agent_finops_wal_autocheckpoint"
"""Key in a pooled connection's `info`: its `wal_autocheckpoint` before the store changed it."""


class _Checkpointer:
    """Checkpoints a SQLite WAL on a daemon thread, so callers do not wait for the fsyncs.

    SQLite's automatic checkpoint runs inside the COMMIT that takes the WAL past 1,000 pages:
    that caller fsyncs the WAL, copies its pages into the database file and fsyncs that file,
    a stall of about 10 ms on a cloud VM's disk once every 100 or so reserve+settle cycles,
    which made the P99 of a policy decision, and the store's P99.9, 20-30 times the median.
    Instead, every `CHECKPOINT_EVERY` commits of the store, this thread runs
    `PRAGMA wal_checkpoint(PASSIVE)` on its own connection, with the GIL released. A passive
    checkpoint takes no lock that writers or readers wait for, and never waits itself.

    SQLite restarts the WAL from its beginning only when a writer finds every frame copied
    back, which does not happen while commits keep arriving during the checkpoints. So once
    the WAL holds `WAL_RESTART_PAGES` pages, the thread copies the last few frames back while
    holding the store's in-process lock (a short stall of this process's store writers, most
    pages having been copied already), and the next commit restarts the WAL. The store's own
    connection keeps an inline automatic checkpoint at `WAL_BACKSTOP_PAGES` as the bound,
    should this thread fall behind. Durability is unchanged (WAL, synchronous=NORMAL): the
    WAL is only fsynced sooner.
    """

    def __init__(self, engine: Engine, lock_key: str) -> None:
        self.pid = os.getpid()
        self._engine = engine
        self._lock_key = lock_key
        self._cond = threading.Condition()
        self._due = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def poke(self) -> None:
        """Ask for a checkpoint soon (starts the thread on first use); never blocks."""
        with self._cond:
            if self._closed:
                return
            self._due = True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="agent-finops-checkpoint", daemon=True
                )
                self._thread.start()
            else:
                self._cond.notify()

    def close(self, wait: bool = True) -> None:
        """Stop the thread; `wait`: until the checkpoint in progress returned its connection."""
        if self.pid != os.getpid():
            return  # inherited by a forked child: the thread and connection are the parent's
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30.0)

    def _run(self) -> None:
        fairy: Any = None
        try:
            while True:
                with self._cond:
                    while not (self._due or self._closed):
                        self._cond.wait()
                    if self._closed:
                        return
                    self._due = False
                try:
                    if fairy is None:
                        fairy = self._engine.raw_connection()
                    self._checkpoint(fairy.driver_connection)
                except Exception as exc:  # the next one tries again, on a fresh connection
                    log.warning("agent-finops: background WAL checkpoint failed: %s", exc)
                    if fairy is not None:
                        fairy.invalidate()
                        fairy.close()
                        fairy = None
        finally:
            if fairy is not None:
                fairy.close()

    def _checkpoint(self, conn: Any) -> None:
        _busy, pages, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if pages >= WAL_RESTART_PAGES:
            with _SQLITE_LOCKS[self._lock_key]:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


class _SQLite(_Backend):
    """One kept connection per process; threads queue on an in-process lock."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine, max_idle=1)
        self._lock_key = str(engine.url)
        _SQLITE_LOCKS.setdefault(self._lock_key, threading.Lock())  # atomic under the GIL
        self._wal = False
        self._commits = 0
        self._checkpointer = _Checkpointer(engine, self._lock_key)
        # Not waiting: a finalizer may run on a thread that holds the lock a checkpoint needs.
        self._stop_checkpointer = weakref.finalize(self, self._checkpointer.close, False)

    def _acquire(self, fairy: Any) -> None:
        """In WAL mode, move the inline checkpoint to the backstop (see `_Checkpointer`)."""
        conn = fairy.driver_connection
        self._wal = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal"
        if not self._wal:
            return
        pages = int(conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
        if 0 < pages < WAL_BACKSTOP_PAGES:  # 0: the application checkpoints; leave it alone
            fairy.info[_AUTOCHECKPOINT] = pages
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}")

    @staticmethod
    def release_connection(fairy: Any) -> None:
        pages = fairy.info.pop(_AUTOCHECKPOINT, None)
        if pages is not None:
            fairy.driver_connection.execute(f"PRAGMA wal_autocheckpoint={int(pages)}")

    def close(self) -> None:
        self._stop_checkpointer.detach()
        self._checkpointer.close()
        super().close()

    def _checkpoint_soon(self) -> None:
        checkpointer = self._checkpointer
        if checkpointer.pid != os.getpid():  # forked: the parent's thread does not exist here
            self._stop_checkpointer.detach()
            checkpointer = self._checkpointer = _Checkpointer(self.engine, self._lock_key)
            self._stop_checkpointer = weakref.finalize(self, checkpointer.close, False)
        checkpointer.poke()

    def _connection(self) -> Any:
        """The kept connection (call with the lock held); SQLite connections do not go stale."""
        idle = self._kept.idle
        if idle and self._pid == os.getpid():
            return idle[0].driver_connection
        with self.connection() as conn:  # checks out (or, after a fork, replaces) and keeps it
            return conn

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with _SQLITE_LOCKS[self._lock_key]:
            conn = self._connection()
            if conn.in_transaction:
                conn.rollback()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
            if self._wal:
                self._commits += 1
                if self._commits % CHECKPOINT_EVERY == 0:
                    self._checkpoint_soon()

    def read(self, sql: str, params: Sequence[Any]) -> list[Any]:
        def attempt() -> list[Any]:
            with _SQLITE_LOCKS[self._lock_key]:
                rows: list[Any] = self._connection().execute(sql, params).fetchall()
                return rows

        return self._run("read", attempt)

    def query_counters(self, conn: Any, keys: list[str]) -> Any:
        marks = ", ".join("?" * len(keys))
        return conn.execute(f"SELECT {_COLUMNS} FROM {_C} WHERE counter_key IN ({marks})", keys)

    def read_for_reserve(
        self, conn: Any, keys: list[str], call_id: str
    ) -> tuple[dict[str, _Counter], Any]:
        marks = ", ".join("?" * len(keys))
        rows = conn.execute(
            f"SELECT 0, {_COLUMNS} FROM {_C} WHERE counter_key IN ({marks})"
            f" UNION ALL SELECT 1, state, claims, NULL, NULL, NULL, NULL FROM {_R}"
            " WHERE call_id = ?",
            (*keys, call_id),
        ).fetchall()
        counters: dict[str, _Counter] = {}
        existing = None
        for is_reservation, key, unit, limit, spent, reserved, end in rows:
            if is_reservation:
                existing = (key, unit)
            else:
                limit, spent, reserved = Decimal(limit), Decimal(spent), Decimal(reserved)
                counters[key] = _Counter(unit, limit, spent, reserved, end)
        return counters, existing

    def money(self, value: Decimal) -> Any:
        return format(value, "f")

    def time(self, moment: datetime | str | None) -> Any:
        # SQLAlchemy's storage format for DateTime on SQLite; it sorts as text.
        if moment is None or isinstance(moment, str):
            return moment
        return _naive_utc(moment).isoformat(" ", "microseconds")


# One statement per reserve: lock the counters in key order, decide, insert the reservation,
# update the counters. The decision is only true if every counter exists (else the caller
# creates them and retries), units match, every enforced claim fits, and the call id is new;
# the counters are only updated if the reservation row was inserted (ON CONFLICT guards a
# concurrent reservation of the same call id). `locked` runs first: `ins` needs `go`, which
# needs `decision`, which needs `locked`; `upd` is gated on `ins` by a one-time filter.
_PG_RESERVE = f"""
WITH input AS MATERIALIZED (
    SELECT * FROM json_to_recordset(%(claims)s::json) AS i(
        counter_key text, rule_id text, unit text, "limit" numeric, amount numeric,
        enforce bool, window_end timestamp, ord int)
),
locked AS MATERIALIZED (
    SELECT counter_key, unit, spent, reserved FROM {_C}
    WHERE counter_key IN (SELECT counter_key FROM input) ORDER BY counter_key FOR UPDATE
),
existing AS MATERIALIZED (
    SELECT state, claims FROM {_R} WHERE call_id = %(call_id)s
),
decision AS MATERIALIZED (
    SELECT count(l.counter_key) = count(i.counter_key)
           AND coalesce(bool_and(l.unit = i.unit), true)
           AND coalesce(bool_and(NOT i.enforce OR l.spent + l.reserved + i.amount <= i."limit"),
                        true)
           AND NOT EXISTS (SELECT 1 FROM existing) AS ok,
           coalesce(json_agg(json_build_object(
               'counter_key', i.counter_key, 'rule_id', i.rule_id, 'unit', i.unit,
               'limit', i."limit"::text, 'amount', i.amount::text, 'enforce', i.enforce,
               'used', (l.spent + l.reserved + i.amount)::text) ORDER BY i.ord)
               FILTER (WHERE i.counter_key IS NOT NULL), '[]'::json) AS claims
    FROM input i LEFT JOIN locked l ON l.counter_key = i.counter_key
),
ins AS (
    INSERT INTO {_R} (call_id, trace_id, state, claims, created_at, expires_at)
    SELECT %(call_id)s, %(trace_id)s, 'reserved', d.claims, %(now)s, %(expires_at)s
    FROM decision d WHERE d.ok
    ON CONFLICT (call_id) DO NOTHING
    RETURNING claims
),
upd AS (
    UPDATE {_C} c SET reserved = c.reserved + i.amount, "limit" = i."limit",
        window_end = i.window_end, updated_at = %(now)s
    FROM input i
    WHERE c.counter_key = i.counter_key AND EXISTS (SELECT 1 FROM ins)
    RETURNING 1
)
SELECT (SELECT claims FROM ins), (SELECT count(*) FROM upd), e.state, e.claims,
       l.counter_key, l.unit, l.spent, l.reserved
FROM (SELECT 1) AS one
LEFT JOIN existing e ON true
LEFT JOIN locked l ON true
"""

# One statement per settle or release: lock the reservation row, then its counters in key
# order; charge and/or give back; mark the reservation. Returns the state found.
_PG_FINISH = f"""
WITH res AS MATERIALIZED (
    SELECT state, claims FROM {_R} WHERE call_id = %(call_id)s FOR UPDATE
),
items AS MATERIALIZED (
    SELECT e ->> 'counter_key' AS k,
           CASE WHEN %(settling)s THEN coalesce(
               CASE e ->> 'unit' WHEN 'usd' THEN %(usd)s::numeric
                   WHEN 'tokens' THEN %(tokens)s::numeric WHEN 'calls' THEN %(calls)s::numeric
               END, (e ->> 'amount')::numeric) ELSE 0 END AS charge,
           CASE WHEN res.state = 'reserved' THEN (e ->> 'amount')::numeric ELSE 0 END AS give_back
    FROM res, json_array_elements(res.claims) AS e
    WHERE res.state IN ('reserved', 'expired')
),
locked AS MATERIALIZED (
    SELECT counter_key FROM {_C} WHERE counter_key IN (SELECT k FROM items)
    ORDER BY counter_key FOR UPDATE
),
upd AS (
    UPDATE {_C} c SET spent = c.spent + i.charge, reserved = c.reserved - i.give_back,
        updated_at = %(now)s
    FROM items i
    WHERE c.counter_key = i.k AND (SELECT count(*) FROM locked) >= 0
    RETURNING 1
),
fin AS (
    UPDATE {_R} r SET state = %(target)s, finished_at = %(now)s,
        actual = CASE WHEN %(settling)s
            THEN (SELECT json_object_agg(k, charge::text) FROM items) END
    WHERE r.call_id = %(call_id)s AND r.state IN ('reserved', 'expired')
    RETURNING 1
)
SELECT (SELECT state FROM res), (SELECT count(*) FROM fin), (SELECT count(*) FROM upd)
"""


class _Postgres(_Backend):
    """Reserve, settle and release are one statement and one round trip each (autocommit)."""

    param = "%s"
    json_param = "%s::json"
    lock = " FOR UPDATE"

    def __init__(self, engine: Engine, durable: bool, max_idle: int) -> None:
        super().__init__(engine, max_idle=max_idle)
        self._durable = durable
        self.sql_expired = self.sql_expired.replace(" FOR UPDATE", " FOR UPDATE SKIP LOCKED")
        self.sql_lock_counters = (
            f"SELECT {_COLUMNS} FROM {_C} WHERE counter_key = ANY(%s)"
            " ORDER BY counter_key FOR UPDATE"
        )

    def _acquire(self, fairy: Any) -> None:
        conn = fairy.driver_connection
        conn.rollback()
        conn.autocommit = True
        if not self._durable:
            conn.execute("SET synchronous_commit TO off")

    @staticmethod
    def release_connection(fairy: Any) -> None:
        conn = fairy.driver_connection
        conn.execute("RESET synchronous_commit")
        conn.autocommit = False

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self.connection() as conn, conn.transaction():
            yield conn

    def read(self, sql: str, params: Sequence[Any]) -> list[Any]:
        def attempt() -> list[Any]:
            with self.connection() as conn:
                rows: list[Any] = conn.execute(sql, params).fetchall()
                return rows

        return self._run("read", attempt)

    def query_counters(self, conn: Any, keys: list[str]) -> Any:
        return conn.execute(self.sql_lock_counters, (keys,))

    def _counters(self, cursor: Any) -> dict[str, _Counter]:
        return {
            key: _Counter(unit, _tidy(limit), _tidy(spent), _tidy(reserved), end)
            for key, unit, limit, spent, reserved, end in cursor.fetchall()
        }

    def reserve(
        self,
        call_id: str,
        claims: Sequence[Claim],
        trace_id: str | None,
        now: datetime,
        expires_at: datetime,
    ) -> ReserveResult:
        rows = []
        for ordinal, claim in enumerate(claims):
            row = _record(claim, _ZERO)
            row["ord"] = ordinal
            end = claim.window_end
            row["window_end"] = None if end is None else _naive_utc(end).isoformat()
            rows.append(row)
        params = {
            "claims": json.dumps(rows),
            "call_id": call_id,
            "trace_id": trace_id,
            "now": _naive_utc(now),
            "expires_at": _naive_utc(expires_at),
        }

        def attempt() -> ReserveResult:
            for _ in range(3):
                with self.connection() as conn:
                    rows = conn.execute(_PG_RESERVE, params).fetchall()
                inserted, _updated, state, stored = rows[0][:4]
                counters = {
                    key: _Counter(unit, _ZERO, _tidy(spent), _tidy(reserved), None)
                    for *_, key, unit, spent, reserved in rows
                    if key is not None
                }
                if inserted is not None:  # granted, and written
                    return replace(_replayed(call_id, "reserved", inserted), replayed=False)
                if state is not None:
                    return _replayed(call_id, state, stored)
                if len(counters) < len(claims):
                    self._create_counters(claims, now)
                    continue
                result, _writes, _records = _plan_reserve(call_id, claims, counters)
                if not result.granted:
                    return result
                # It fits but nothing was inserted: the same call id was reserved meanwhile.
                found = self.read(self.sql_reservation, (call_id,))
                if found:
                    return _replayed(call_id, found[0][0], self.json_out(found[0][1]))
            raise LedgerError(f"budget counters of {call_id!r} keep disappearing")

        return self._run("reservation", attempt)

    def _create_counters(self, claims: Sequence[Claim], now: datetime) -> None:
        """Create missing counter rows in their own short transaction, in key order."""
        zero, stamp = _ZERO, _naive_utc(now)
        params = [
            (c.counter_key, c.unit, c.limit, zero, zero, self.time(c.window_end), stamp)
            for c in sorted(claims, key=lambda c: c.counter_key)
        ]
        with self.transaction() as conn:
            conn.cursor().executemany(self.sql_create, params)

    def finish(
        self,
        call_id: str,
        now: datetime,
        target: ReservationState,
        charges: Mapping[str, Decimal | None],
    ) -> bool:
        params = {
            "call_id": call_id,
            "settling": target == "settled",
            "target": target,
            "now": _naive_utc(now),
            "usd": charges.get("usd"),
            "tokens": charges.get("tokens"),
            "calls": charges.get("calls"),
        }

        def attempt() -> bool:
            with self.connection() as conn:
                state, finished, _updated = conn.execute(_PG_FINISH, params).fetchone()
            if target == "settled":
                return bool(finished)
            return bool(finished) and state == "reserved"

        return self._run("settlement" if target == "settled" else "release", attempt)
