"""What the SQL backend asks of a database dialect; `dialect_named` picks SQLite or PostgreSQL.

The ledger and the budget store are written once against `SQLDialect` and `BudgetBackend`;
everything that differs between databases (engine options, upsert constructs, schema locks,
migration SQL, the budget hot path) is a method of a dialect, implemented in `_sqlite.py` and
`_postgres.py`. No other module tests a dialect's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import Table
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.sql.elements import ColumnElement

from agent_finops.exceptions import ConfigurationError
from agent_finops.ledger._budget import (
    Claim,
    CounterState,
    LeaseGrant,
    LeaseRequest,
    Refusal,
    ReservationState,
    ReserveResult,
    Settlement,
)
from agent_finops.ledger.sql._connections import KeptConnections

__all__ = ["SUPPORTED", "BudgetBackend", "LedgerWrites", "SQLDialect", "dialect_named"]

SUPPORTED = ("sqlite", "postgresql")


class BudgetBackend(ABC):
    """A budget store's operations on one database (arguments already validated)."""

    def __init__(self, connections: KeptConnections) -> None:
        """Run on `connections`."""
        self.connections = connections

    @abstractmethod
    def reserve(
        self,
        call_id: str,
        claims: Sequence[Claim],
        trace_id: str | None,
        now: datetime,
        ttl: timedelta,
        worker_id: str | None,
    ) -> ReserveResult:
        """Reserve once (no expire-and-retry), expiring `ttl` after the database's now.

        `now` (the caller's) stamps `created_at`; `worker_id` ties the reservation to that
        worker's lease (None: only its TTL ends it).
        """

    @abstractmethod
    def finish(
        self,
        call_id: str,
        now: datetime,
        target: ReservationState,
        charges: Mapping[str, Decimal | None],
    ) -> Settlement:
        """Settle or release; `settled` of the result: whether anything changed now."""

    @abstractmethod
    def expire(self, at: datetime | None) -> list[str]:
        """Expire what is due at `at` (None: the database's now); their call ids, sorted.

        Due: open reservations past their `expires_at`, or whose worker's lease ran out or
        is gone. Expired leases are deleted in the same transaction.
        """

    @abstractmethod
    def purge(self, finished_before: datetime) -> int:
        """Delete finished reservations; how many."""

    @abstractmethod
    def purge_older(self, retention: timedelta, batch: int) -> int:
        """Delete up to `batch` finished reservations older than the database's now - retention."""

    @abstractmethod
    def renew_worker(self, worker_id: str, host: str, pid: int, lease: timedelta) -> bool:
        """Create or extend a worker's lease to the database's now + `lease`.

        Returns whether the lease was live before (False: new, lapsed or its row gone).
        """

    @abstractmethod
    def drop_worker(self, worker_id: str) -> None:
        """Delete a worker's lease (its open reservations become due at once)."""

    @abstractmethod
    def grow_leases(
        self, worker_id: str, requests: Sequence[LeaseRequest], now: datetime
    ) -> tuple[list[LeaseGrant], list[Refusal]]:
        """Grow the worker's budget leases in one transaction, all or none (`plan_grow`)."""

    @abstractmethod
    def shrink_leases(self, worker_id: str, amounts: Mapping[str, Decimal], now: datetime) -> None:
        """Give back up to `amounts` of the worker's leases; delete the ones left at zero."""

    @abstractmethod
    def counter(self, counter_key: str) -> CounterState | None:
        """A counter's values."""

    @abstractmethod
    def reservation_state(self, call_id: str) -> ReservationState | None:
        """A reservation's state."""

    def events_present(self, event_ids: Sequence[str]) -> set[str]:
        """Those of `event_ids` in the ledger's cost events (a plain read, 500 ids a query)."""
        found: set[str] = set()
        ids = list(dict.fromkeys(event_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join([self.param_mark] * len(chunk))
            rows = self._read(
                f"SELECT event_id FROM finops_cost_events WHERE event_id IN ({marks})", chunk
            )
            found.update(row[0] for row in rows)
        return found

    param_mark: str = "?"
    """The DBAPI driver's positional parameter marker."""

    @abstractmethod
    def _read(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """Rows of a read query (retried like the backend's other reads)."""

    def close(self) -> None:
        """Return the kept connections."""
        self.connections.close()


class LedgerWrites:
    """What a database needs around the ledger's write transactions (by default nothing)."""

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Around one write transaction (its commit included)."""
        yield

    def contended(self) -> bool:
        """Whether the transaction in progress should give way (roll back, be retried)."""
        return False

    def wait_uncontended(self, timeout: float) -> None:
        """After giving way: wait (at most `timeout` s) for the others to go first."""

    def close(self) -> None:
        """Stop what it started."""


class SQLDialect(ABC):
    """The database-specific parts of the SQL ledger."""

    name: ClassVar[str]
    money_as_text: ClassVar[bool]
    """True: money is stored as canonical decimal text (no exact decimal type); False:
    NUMERIC(38, 18)."""
    times_as_integers: ClassVar[bool]
    """True: the ledger's hot tables (cost events, spans) store moments as integer
    microseconds since the Unix epoch, UTC (`CompactTime`); False: the database's
    `TIMESTAMP WITH TIME ZONE`."""

    @abstractmethod
    def create_engine(self, url: URL, *, create: bool, engine_kwargs: dict[str, Any]) -> Engine:
        """An engine for `url`; with `create=False`, `LedgerNotFound` rather than a new file."""

    def private_database(self, url: URL) -> bool:
        """Whether the database at `url` exists in this process only (in memory)."""
        return False

    @abstractmethod
    def insert(self, table: Table) -> Any:
        """The dialect's INSERT construct (with `on_conflict_do_update` / `_do_nothing`)."""

    @abstractmethod
    def lock_for_budget_write(self, conn: Connection) -> None:
        """Make a ledger write that changes budget counters a serialized one.

        PostgreSQL locks the rows it changes (`FOR UPDATE`: nothing to do here); SQLite
        needs the file's write lock from the start (`BEGIN IMMEDIATE`), or a read-then-write
        races other writers.
        """

    @abstractmethod
    def begin_schema_change(self, conn: Connection) -> None:
        """Start the transaction of `setup()`, holding a lock other processes' setups wait on."""

    @abstractmethod
    def backfill_thread_ids(self, conn: Connection) -> None:
        """Schema v3: copy the thread id v2 kept in a run's `thread_id` tag into its column."""

    @abstractmethod
    def drop_column(self, conn: Connection, table: str, column: str) -> None:
        """Drop a column if the database can (a column left in place must be nullable)."""

    def times_to_integers(self, conn: Connection, table: str, column: str) -> None:  # noqa: B027
        """Schema v7: rewrite a `CompactTime` column's older values (if `times_as_integers`)."""

    def refuse_text_times(  # noqa: B027
        self, conn: Connection, table: str, columns: Sequence[str]
    ) -> None:
        """Schema v7: refuse rows that a process still at v6 writes with text times."""

    @abstractmethod
    def budget_backend(
        self, engine: Engine, *, durable_commits: bool, max_idle_connections: int
    ) -> BudgetBackend:
        """The budget store's hot path on this database."""

    def ledger_writes(self, engine: Engine) -> LedgerWrites:
        """The ledger's write discipline on `engine` (SQLite: one writer, checkpoints aside)."""
        return LedgerWrites()

    @abstractmethod
    def money_sums(self, table: Table, when: ColumnElement[bool] | None) -> list[Any]:
        """Aggregate expressions summing `table`'s cost exactly (of the rows where `when`).

        `money_total` turns their results into the `Decimal`. Amounts the exact columns
        cannot hold are left out of them and counted by `unsummed` (added by the caller).
        """

    @abstractmethod
    def money_total(self, values: Sequence[Any]) -> Decimal:
        """The exact sum from the results of `money_sums`."""

    @abstractmethod
    def unsummed(self, table: Table) -> Any:
        """An aggregate counting the rows whose cost `money_sums` leaves out."""

    @abstractmethod
    def priced(self, table: Table) -> Any:
        """An aggregate counting the rows with a known cost."""

    @abstractmethod
    def seconds_between(self, start: Any, end: Any) -> Any:
        """An expression: seconds from one datetime column to another, as a number."""


_DIALECTS: dict[str, SQLDialect] = {}


def dialect_named(name: str, *, url: str | None = None) -> SQLDialect:
    """The dialect serving databases of this SQLAlchemy backend name (`url`: for the error)."""
    found = _DIALECTS.get(name)
    if found is not None:
        return found
    from agent_finops.ledger.sql import _postgres, _sqlite  # they build on this module

    _DIALECTS.update(sqlite=_sqlite.SQLITE, postgresql=_postgres.POSTGRES)
    found = _DIALECTS.get(name)
    if found is None:
        where = f"cannot open ledger URL {url}: " if url else ""
        raise ConfigurationError(
            where + "the SQL ledger supports SQLite and PostgreSQL",
            field="url",
            value=name,
            expected=" or ".join(SUPPORTED),
        )
    return found
