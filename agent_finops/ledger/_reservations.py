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
  lock over faster than SQLite's sleeping busy handler.
- PostgreSQL: `SELECT ... ORDER BY counter_key FOR UPDATE` locks the counter rows in one global
  order (no deadlocks); missing counter rows are first created in their own short transaction
  with `INSERT ... ON CONFLICT DO NOTHING`. Money is `NUMERIC(38, 18)`.

The hot path talks to the DBAPI connection directly (no ORM, no statement compilation).

Reservation states::

    reserved ──settle──▶ settled
       │  └───release──▶ released ◀──release── expired
       └──────expire───▶ expired ──settle──▶ settled   (a late answer's spend is still real)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, localcontext
from typing import Any, Literal, NamedTuple, cast

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
MAX_COUNTER_KEY_LENGTH = 512
MAX_CALL_ID_LENGTH = 128

_ZERO = Decimal(0)
_EXACT = Context(prec=80)
"""Arithmetic context: NUMERIC(38, 18) sums never round (the default context keeps 28 digits)."""
_INFINITY = Decimal("Infinity")


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


class _MissingCounters(Exception):
    """Internal control flow: PostgreSQL counters to create before reserving."""

    def __init__(self, claims: Sequence[Claim]) -> None:
        super().__init__()
        self.claims = claims


# -- store ----------------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC)


class BudgetStore:
    """Atomic budget reservations on the ledger's database (SQLite or PostgreSQL).

    Thread-safe and multi-process-safe. Database failures raise `LedgerError`; there is no
    local fallback counter (that would silently split one budget into several).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        auto_setup: bool = True,
        clock: Callable[[], datetime] = _utcnow,
        default_ttl: timedelta = DEFAULT_RESERVATION_TTL,
    ) -> None:
        """Wrap the ledger's engine; `auto_setup` creates the two tables if missing."""
        dialect = engine.dialect.name
        if dialect == "sqlite":
            self._db: _Backend = _SQLite(engine)
        elif dialect == "postgresql":
            self._db = _Postgres(engine)
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
            text = str(exc).lower()
            if "already exists" in text or "duplicate key" in text:
                return  # another process created them at the same moment
            raise LedgerError(f"cannot create budget tables at {self.engine.url!r}: {exc}") from exc

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
        reserved then. Reserving a call id again returns the original result (`replayed`).
        A refusal first gives back expired reservations and tries once more.
        """
        _check_call_id(call_id)
        keys = [c.counter_key for c in claims]
        if len(set(keys)) != len(keys):
            raise ValueError(f"claims of call {call_id!r} name a counter twice: {sorted(keys)}")
        now = now or self._clock()
        expires_at = now + (self._default_ttl if ttl is None else ttl)
        result = self._db.reserve(call_id, claims, trace_id, now, expires_at)
        if not result.granted and self.expire(now):
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
        `actual` (or None: unknown cost) is charged its reserved estimate, never zero.
        Returns True if this call recorded the spend; False if it was already settled, was
        released, or was never reserved. A reservation that expired is still settled.
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
        return self._db.settle(call_id, charges, now or self._clock())

    def release(self, call_id: str, *, now: datetime | None = None) -> bool:
        """Give the reservation back (the call failed or never ran); idempotent.

        Returns True if reserved amounts were returned now.
        """
        return self._db.release(call_id, now or self._clock())

    def expire(self, now: datetime | None = None) -> list[str]:
        """Give back every reservation past its expiry (its worker died); their call ids."""
        return self._db.expire(now or self._clock())

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
        return self._db.counter(counter_key)

    def reservation_state(self, call_id: str) -> ReservationState | None:
        """State of a call's reservation, or None if there is none."""
        return self._db.reservation_state(call_id)


def _check_call_id(call_id: str) -> None:
    if not call_id or len(call_id) > MAX_CALL_ID_LENGTH:
        raise ValueError(f"call_id must be 1-{MAX_CALL_ID_LENGTH} characters, got {call_id!r}")


def _naive_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


# -- decision (pure) ------------------------------------------------------------------------


def _decide(
    call_id: str, claims: Sequence[Claim], counters: Mapping[str, _Counter]
) -> tuple[ReserveResult, dict[str, Decimal]]:
    """The outcome, and the new `reserved` of each counter when granted."""
    refusals: list[Refusal] = []
    observed: list[Decimal] = []
    for claim in claims:
        row = counters.get(claim.counter_key)
        if row is not None and row.unit != claim.unit:
            raise ConfigurationError(
                f"counter {claim.counter_key!r} counts {row.unit}, claim counts another unit",
                field="unit",
                value=claim.unit,
                expected=row.unit,
            )
        used = _ZERO if row is None else row.spent + row.reserved
        observed.append(used)
        if claim.enforce and used + claim.amount > claim.limit:
            refusals.append(
                Refusal(
                    claim.counter_key, claim.rule_id, claim.unit, claim.limit, used, claim.amount
                )
            )
    if refusals:
        usage = tuple(_usage(c, used) for c, used in zip(claims, observed, strict=True))
        return ReserveResult(call_id, usage, tuple(refusals), state=None), {}
    new_reserved: dict[str, Decimal] = {}
    usage_list: list[ClaimUsage] = []
    for claim, used in zip(claims, observed, strict=True):
        row = counters.get(claim.counter_key)
        new_reserved[claim.counter_key] = (_ZERO if row is None else row.reserved) + claim.amount
        usage_list.append(_usage(claim, used + claim.amount))
    return ReserveResult(call_id, tuple(usage_list)), new_reserved


def _usage(claim: Claim, used: Decimal) -> ClaimUsage:
    return ClaimUsage(
        claim.counter_key, claim.rule_id, claim.unit, claim.limit, used, claim.enforce
    )


def _claim_record(
    usage: ClaimUsage, amount: Decimal, window_end: datetime | None
) -> dict[str, Any]:
    return {
        "counter_key": usage.counter_key,
        "rule_id": usage.rule_id,
        "unit": usage.unit,
        "limit": str(usage.limit),
        "amount": str(amount),
        "enforce": usage.enforce,
        "used": str(usage.used),
        "window_end": None if window_end is None else _naive_utc(window_end).isoformat(),
    }


def _replayed(call_id: str, state: str, records: list[dict[str, Any]]) -> ReserveResult:
    usage = tuple(
        ClaimUsage(
            r["counter_key"],
            r["rule_id"],
            r["unit"],
            Decimal(r["limit"]),
            Decimal(r["used"]),
            bool(r["enforce"]),
        )
        for r in records
    )
    return ReserveResult(call_id, usage, replayed=True, state=cast(ReservationState, state))


# -- backends -------------------------------------------------------------------------------


class _Backend:
    """The transaction logic; subclasses supply SQL dialect details and the transaction."""

    param = "?"
    lock_suffix = ""
    json_param = "?"
    creates_in_transaction = True
    """SQLite creates missing counters inside the (fully serialized) write transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        self._integrity_error: type[Exception] = engine.dialect.loaded_dbapi.IntegrityError
        p, j = self.param, self.json_param
        cols = 'counter_key, unit, "limit", spent, reserved, window_end'
        self.sql_upsert = (
            f'INSERT INTO {_C} ({cols}, updated_at) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}) '
            'ON CONFLICT (counter_key) DO UPDATE SET "limit" = excluded."limit", '
            "spent = excluded.spent, reserved = excluded.reserved, "
            "window_end = excluded.window_end, updated_at = excluded.updated_at"
        )
        self.sql_create = (
            f"INSERT INTO {_C} ({cols}, updated_at) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}) "
            "ON CONFLICT (counter_key) DO NOTHING"
        )
        self.sql_counter = f'SELECT spent, reserved, "limit" FROM {_C} WHERE counter_key = {p}'
        self.sql_cols = f"SELECT {cols} FROM {_C}"
        self.sql_reservation = f"SELECT state, claims FROM {_R} WHERE call_id = {p}"
        self.sql_insert_reservation = (
            f"INSERT INTO {_R} (call_id, trace_id, state, claims, created_at, expires_at) "
            f"VALUES ({p}, {p}, 'reserved', {j}, {p}, {p})"
        )
        self.sql_finish = (
            f"UPDATE {_R} SET state = {p}, actual = {j}, finished_at = {p} WHERE call_id = {p}"
        )
        self.sql_any_expired = (
            f"SELECT 1 FROM {_R} WHERE state = 'reserved' AND expires_at <= {p} LIMIT 1"
        )
        self.sql_expired = (
            f"SELECT call_id, claims FROM {_R} WHERE state = 'reserved' AND expires_at <= {p}"
            f" ORDER BY call_id{self.lock_suffix}"
        )

    # dialect hooks ---------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A write transaction: yields a cursor; commits on success, rolls back on error."""
        raise NotImplementedError  # pragma: no cover
        yield

    @contextmanager
    def read(self) -> Iterator[Any]:
        """A cursor for a short read."""
        raise NotImplementedError  # pragma: no cover
        yield

    def select_counters_sql(self, count: int) -> str:
        raise NotImplementedError  # pragma: no cover

    def money_in(self, value: Decimal) -> Any:
        return value

    def time_in(self, moment: datetime | None) -> Any:
        return None if moment is None else _naive_utc(moment)

    def json_out(self, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    # shared logic ----------------------------------------------------------------------

    def _counters(self, cur: Any, keys: Sequence[str]) -> dict[str, _Counter]:
        cur.execute(self.select_counters_sql(len(keys)), keys)
        return {
            key: _Counter(unit, Decimal(limit), Decimal(spent), Decimal(reserved), window_end)
            for key, unit, limit, spent, reserved, window_end in cur.fetchall()
        }

    def _write_counters(self, cur: Any, rows: Mapping[str, _Counter], now: Any) -> None:
        money = self.money_in
        params = [
            (key, c.unit, money(c.limit), money(c.spent), money(c.reserved), c.window_end, now)
            for key, c in rows.items()
        ]
        if len(params) == 1:
            cur.execute(self.sql_upsert, params[0])
        else:
            cur.executemany(self.sql_upsert, params)

    def _wrap(self, exc: Exception, what: str) -> LedgerError:
        return LedgerError(f"budget {what} failed, nothing changed: {exc}")

    def reserve(
        self,
        call_id: str,
        claims: Sequence[Claim],
        trace_id: str | None,
        now: datetime,
        expires_at: datetime,
    ) -> ReserveResult:
        for _attempt in range(3):
            try:
                with localcontext(_EXACT):
                    return self._reserve_once(call_id, claims, trace_id, now, expires_at)
            except _MissingCounters as missing:
                self._create_counters(missing.claims, now)
            except (self._dbapi_error, SQLAlchemyError) as exc:
                if isinstance(exc, self._integrity_error):
                    # The same call id was reserved concurrently on other counters.
                    replay = self._stored(call_id)
                    if replay is not None:
                        return replay
                raise self._wrap(exc, "reservation") from exc
        raise LedgerError(f"budget reservation of {call_id!r}: counters keep disappearing")

    def _stored(self, call_id: str) -> ReserveResult | None:
        try:
            with self.read() as cur:
                cur.execute(self.sql_reservation, (call_id,))
                row = cur.fetchone()
        except (self._dbapi_error, SQLAlchemyError) as exc:
            raise LedgerError(f"cannot read reservation {call_id!r}: {exc}") from exc
        return None if row is None else _replayed(call_id, row[0], self.json_out(row[1]))

    def _reserve_once(
        self,
        call_id: str,
        claims: Sequence[Claim],
        trace_id: str | None,
        now: datetime,
        expires_at: datetime,
    ) -> ReserveResult:
        keys = sorted(c.counter_key for c in claims)
        with self.transaction() as cur:
            counters = self._counters(cur, keys) if keys else {}
            cur.execute(self.sql_reservation, (call_id,))
            existing = cur.fetchone()
            if existing is not None:
                return _replayed(call_id, existing[0], self.json_out(existing[1]))
            if not self.creates_in_transaction and len(counters) < len(keys):
                raise _MissingCounters([c for c in claims if c.counter_key not in counters])
            result, new_reserved = _decide(call_id, claims, counters)
            if not result.granted:
                return result
            stamp = self.time_in(now)
            rows: dict[str, _Counter] = {}
            for claim in sorted(claims, key=lambda c: c.counter_key):
                old = counters.get(claim.counter_key)
                rows[claim.counter_key] = _Counter(
                    claim.unit,
                    claim.limit,
                    _ZERO if old is None else old.spent,
                    new_reserved[claim.counter_key],
                    self.time_in(claim.window_end),
                )
            if rows:
                self._write_counters(cur, rows, stamp)
            records = [
                _claim_record(usage, claim.amount, claim.window_end)
                for usage, claim in zip(result.usage, claims, strict=True)
            ]
            cur.execute(
                self.sql_insert_reservation,
                (call_id, trace_id, json.dumps(records), stamp, self.time_in(expires_at)),
            )
            return result

    def _create_counters(self, claims: Sequence[Claim], now: datetime) -> None:
        stamp = self.time_in(now)
        params = [
            (
                c.counter_key,
                c.unit,
                self.money_in(c.limit),
                self.money_in(_ZERO),
                self.money_in(_ZERO),
                self.time_in(c.window_end),
                stamp,
            )
            for c in sorted(claims, key=lambda c: c.counter_key)
        ]
        try:
            with self.transaction() as cur:
                cur.executemany(self.sql_create, params)
        except (self._dbapi_error, SQLAlchemyError) as exc:
            raise self._wrap(exc, "counter creation") from exc

    def _finish(
        self,
        call_id: str,
        now: datetime,
        target: ReservationState,
        charges: Mapping[str, Decimal | None],
    ) -> bool:
        """Move a reservation to `settled` (charging) or `released`; see the state diagram."""
        try:
            with localcontext(_EXACT), self.transaction() as cur:
                cur.execute(self.sql_reservation + self.lock_suffix, (call_id,))
                found = cur.fetchone()
                if found is None:
                    return False
                state, records = found[0], self.json_out(found[1])
                if state not in ("reserved", "expired"):
                    return False
                give_back = state == "reserved"
                stamp = self.time_in(now)
                actual: dict[str, str] | None = None
                if target == "settled" or give_back:
                    counters = self._counters(cur, sorted(r["counter_key"] for r in records))
                    actual = {} if target == "settled" else None
                    for record in records:
                        key = record["counter_key"]
                        counter = counters.get(key)
                        if counter is None:  # deleted by hand: recreate, spend is still real
                            counter = counters[key] = _Counter(
                                record["unit"], Decimal(record["limit"]), _ZERO, _ZERO, None
                            )
                        estimate = Decimal(record["amount"])
                        if give_back:
                            counter.reserved -= estimate
                        if actual is not None:
                            charge = charges.get(record["unit"])
                            charge = estimate if charge is None else charge
                            counter.spent += charge
                            actual[key] = str(charge)
                    self._write_counters(cur, dict(sorted(counters.items())), stamp)
                cur.execute(
                    self.sql_finish,
                    (target, None if actual is None else json.dumps(actual), stamp, call_id),
                )
                return give_back or target == "settled"
        except (self._dbapi_error, SQLAlchemyError) as exc:
            raise self._wrap(exc, "settlement" if target == "settled" else "release") from exc

    def settle(self, call_id: str, charges: Mapping[str, Decimal | None], now: datetime) -> bool:
        return self._finish(call_id, now, "settled", charges)

    def release(self, call_id: str, now: datetime) -> bool:
        return self._finish(call_id, now, "released", {})

    def expire(self, now: datetime) -> list[str]:
        stamp = self.time_in(now)
        try:
            with self.read() as cur:  # cheap unlocked look first: usually nothing to do
                cur.execute(self.sql_any_expired, (stamp,))
                if cur.fetchone() is None:
                    return []
            with localcontext(_EXACT), self.transaction() as cur:
                cur.execute(self.sql_expired, (stamp,))
                expired = [(call_id, self.json_out(claims)) for call_id, claims in cur.fetchall()]
                if not expired:
                    return []
                give_back: dict[str, Decimal] = {}
                for _call_id, records in expired:
                    for record in records:
                        key = record["counter_key"]
                        give_back[key] = give_back.get(key, _ZERO) + Decimal(record["amount"])
                counters = self._counters(cur, sorted(give_back))
                for key, amount in give_back.items():
                    if key in counters:
                        counters[key].reserved -= amount
                self._write_counters(cur, dict(sorted(counters.items())), stamp)
                cur.executemany(
                    self.sql_finish, [("expired", None, stamp, call_id) for call_id, _ in expired]
                )
                return [call_id for call_id, _ in expired]
        except (self._dbapi_error, SQLAlchemyError) as exc:
            raise self._wrap(exc, "expiry") from exc

    def counter(self, counter_key: str) -> CounterState | None:
        try:
            with self.read() as cur:
                cur.execute(self.sql_counter, (counter_key,))
                row = cur.fetchone()
        except (self._dbapi_error, SQLAlchemyError) as exc:
            raise LedgerError(f"cannot read budget counter {counter_key!r}: {exc}") from exc
        if row is None:
            return None
        return CounterState(_tidy(Decimal(row[0])), _tidy(Decimal(row[1])), _tidy(Decimal(row[2])))

    def reservation_state(self, call_id: str) -> ReservationState | None:
        try:
            with self.read() as cur:
                cur.execute(self.sql_reservation, (call_id,))
                row = cur.fetchone()
        except (self._dbapi_error, SQLAlchemyError) as exc:
            raise LedgerError(f"cannot read reservation {call_id!r}: {exc}") from exc
        return None if row is None else cast(ReservationState, row[0])

    @contextmanager
    def _checked_out(self) -> Iterator[tuple[Any, Any]]:
        """A pooled connection: (pool proxy, driver connection); invalidated if it broke."""
        fairy = self.engine.raw_connection()
        try:
            yield fairy, fairy.driver_connection
        except self._dbapi_error as exc:
            if self.engine.dialect.is_disconnect(cast(Any, exc), fairy.dbapi_connection, None):
                fairy.invalidate(exc)
            raise
        finally:
            fairy.close()


_SQLITE_LOCKS: dict[str, threading.Lock] = {}
_SQLITE_LOCKS_GUARD = threading.Lock()


def _process_lock(key: str) -> threading.Lock:
    with _SQLITE_LOCKS_GUARD:
        return _SQLITE_LOCKS.setdefault(key, threading.Lock())


class _SQLite(_Backend):
    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self._lock = _process_lock(str(engine.url))

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._lock, self._checked_out() as (_fairy, conn):
            if conn.in_transaction:
                conn.rollback()
            cur = conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    @contextmanager
    def read(self) -> Iterator[Any]:
        with self._lock, self._checked_out() as (_fairy, conn):
            yield conn.cursor()

    def select_counters_sql(self, count: int) -> str:
        marks = ", ".join("?" * count)
        return f"{self.sql_cols} WHERE counter_key IN ({marks})"

    def money_in(self, value: Decimal) -> Any:
        return format(value, "f")

    def time_in(self, moment: datetime | None) -> Any:
        # SQLAlchemy's storage format for DateTime on SQLite; sorts as text.
        return None if moment is None else _naive_utc(moment).isoformat(" ", "microseconds")


class _Postgres(_Backend):
    param = "%s"
    lock_suffix = " FOR UPDATE"
    json_param = "%s::json"
    creates_in_transaction = False

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.sql_expired = self.sql_expired.replace(" FOR UPDATE", " FOR UPDATE SKIP LOCKED")
        self._select_counters = (
            f"{self.sql_cols} WHERE counter_key = ANY(%s) ORDER BY counter_key FOR UPDATE"
        )

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._checked_out() as (_fairy, conn):
            cur = conn.cursor()
            try:
                yield cur
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    @contextmanager
    def read(self) -> Iterator[Any]:
        with self.transaction() as cur:
            yield cur

    def select_counters_sql(self, count: int) -> str:
        return self._select_counters

    def _counters(self, cur: Any, keys: Sequence[str]) -> dict[str, _Counter]:
        cur.execute(self._select_counters, (list(keys),))
        return {
            key: _Counter(unit, _tidy(limit), _tidy(spent), _tidy(reserved), window_end)
            for key, unit, limit, spent, reserved, window_end in cur.fetchall()
        }


def _tidy(value: Decimal) -> Decimal:
    """NUMERIC(38, 18) pads 18 decimals; drop trailing zeros without changing the value."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1), context=_EXACT)
    return value.normalize(_EXACT)
