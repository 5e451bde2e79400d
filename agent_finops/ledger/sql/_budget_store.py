"""`SQLBudgetStore`: the `BudgetStore` protocol on the ledger's SQLite or PostgreSQL database."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.engine import Engine

from agent_finops.ledger._base import BudgetStoreBase
from agent_finops.ledger._budget import (
    DEFAULT_RESERVATION_TTL,
    Claim,
    CounterState,
    ReservationState,
    ReserveResult,
    Settlement,
)
from agent_finops.ledger._protocol import Clock
from agent_finops.ledger.sql._dialect import BudgetBackend, dialect_named
from agent_finops.ledger.sql._faults import faults
from agent_finops.ledger.sql._tables import BUDGET_TABLES, metadata

__all__ = ["DEFAULT_MAX_IDLE_CONNECTIONS", "SQLBudgetStore"]

DEFAULT_MAX_IDLE_CONNECTIONS = 4
"""PostgreSQL connections a store keeps checked out between calls."""


class SQLBudgetStore(BudgetStoreBase):
    """Atomic budget reservations on a SQLite or PostgreSQL database; see `BudgetStore`.

    Thread-safe and multi-process-safe. Database failures raise `LedgerError`; there is no
    local fallback counter. The store keeps a few pooled connections checked out for speed:
    `close()` it (or use it as a context manager) before disposing of the engine. Usually
    made by `SQLLedger.budget_store()`.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        auto_setup: bool = True,
        clock: Clock | None = None,
        default_ttl: timedelta = DEFAULT_RESERVATION_TTL,
        durable_commits: bool = True,
        max_idle_connections: int = DEFAULT_MAX_IDLE_CONNECTIONS,
    ) -> None:
        """Budgets on `engine`'s database.

        Args:
            engine: the ledger's engine (`SQLLedger.engine`).
            auto_setup: create the two budget tables if missing.
            clock: source of "now" (aware) when an operation is not given one.
            default_ttl: how long a reservation holds budget before `expire` may free it.
            durable_commits: PostgreSQL only. False runs budget transactions with
                `synchronous_commit = off`: no WAL flush wait at commit; a server crash may
                lose the last fraction of a second of budget updates but never corrupts or
                half-applies one (the guarantee SQLite gives with `synchronous=NORMAL`).
            max_idle_connections: PostgreSQL connections kept checked out between calls
                (skips the pool's pre-ping round trip); SQLite always keeps one.
        """
        super().__init__(clock=clock, default_ttl=default_ttl)
        self.engine = engine
        self._db: BudgetBackend = dialect_named(engine.dialect.name).budget_backend(
            engine, durable_commits=durable_commits, max_idle_connections=max_idle_connections
        )
        if auto_setup:
            self.setup()

    def setup(self) -> None:
        """Create the budget tables if missing; safe to call any number of times."""
        url = self.engine.url.render_as_string(hide_password=True)
        with faults(f"cannot create budget tables at {url}"):
            metadata.create_all(self.engine, tables=list(BUDGET_TABLES), checkfirst=True)

    def close(self) -> None:
        """Return the connections the store keeps to the engine's pool."""
        self._db.close()

    def _reserve(
        self,
        call_id: str,
        claims: Sequence[Claim],
        trace_id: str | None,
        now: datetime,
        expires_at: datetime,
    ) -> ReserveResult:
        return self._db.reserve(call_id, claims, trace_id, now, expires_at)

    def _settle(
        self, call_id: str, now: datetime, charges: Mapping[str, Decimal | None]
    ) -> Settlement:
        return self._db.finish(call_id, now, "settled", charges)

    def _release(self, call_id: str, now: datetime) -> bool:
        return self._db.finish(call_id, now, "released", {}).settled

    def _expire(self, now: datetime) -> list[str]:
        return self._db.expire(now)

    def purge(self, finished_before: datetime) -> int:
        """See `BudgetStore.purge`."""
        return self._db.purge(finished_before)

    def counter(self, counter_key: str) -> CounterState | None:
        """See `BudgetStore.counter`."""
        return self._db.counter(counter_key)

    def reservation_state(self, call_id: str) -> ReservationState | None:
        """See `BudgetStore.reservation_state`."""
        return self._db.reservation_state(call_id)
