"""Budget-lease charges, applied inside the ledger's write transaction (with their events).

`SQLLedger.write(events=..., charges=...)` inserts the events and, in the same transaction,
moves each `LeaseCharge` into its counter: `spent` grows by the charge, and what it consumed
of the worker's lease leaves the lease row and the counter's `reserved` (never more than the
lease still holds). Rows are locked in key order, counters first, as every budget
transaction does (no deadlocks); on SQLite the write is a `BEGIN IMMEDIATE` transaction.

On the ledger writer's hot path (every batch of guarded calls), so the statements are SQL
text with fixed shapes, sent through `exec_driver_sql` with values already in the form the
tables' column types store (`Money` as canonical text on SQLite, `UTCDateTime` as
SQLAlchemy's text format there; `Decimal` and aware datetimes on PostgreSQL). Building
SQLAlchemy expressions per batch (an `or_` of `and_` pairs that never hit the statement
cache) cost several times the database work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Connection

from agent_finops.ledger._budget import LeaseCharge
from agent_finops.ledger._lease_planning import plan_charges
from agent_finops.ledger._money import stored_money
from agent_finops.ledger._planning import CounterRow

__all__ = ["apply_charges"]


@dataclass(frozen=True, slots=True)
class _ChargeSQL:
    """One dialect's statements (its DBAPI parameter style) and value adapters."""

    lock_counters: Callable[[int], str]
    lock_leases: Callable[[int, int], str]
    keys: Callable[[list[str]], tuple[Any, ...]]
    update_counter: str
    insert_counter: str
    update_lease: str
    money: Callable[[Decimal], Any]
    stamp: Callable[[datetime], Any]


_COUNTER_COLUMNS = 'counter_key, unit, "limit", spent, reserved, window_end'


def _text_money(value: Decimal) -> str:
    return format(stored_money(value), "f")


def _text_time(moment: datetime) -> str:
    # SQLAlchemy's storage format for DateTime on SQLite (UTC, no offset): sorts as text.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _marks(n: int) -> str:
    return ", ".join("?" * n)


_SQLITE = _ChargeSQL(
    lock_counters=lambda n: (
        f"SELECT {_COUNTER_COLUMNS} FROM finops_budget_counters"
        f" WHERE counter_key IN ({_marks(n)}) ORDER BY counter_key"
    ),
    lock_leases=lambda workers, keys: (
        "SELECT worker_id, counter_key, amount FROM finops_budget_leases"
        f" WHERE worker_id IN ({_marks(workers)}) AND counter_key IN ({_marks(keys)})"
        " ORDER BY counter_key, worker_id"
    ),
    keys=tuple,
    update_counter=(
        "UPDATE finops_budget_counters SET spent = ?, reserved = ?, updated_at = ?"
        " WHERE counter_key = ?"
    ),
    insert_counter=(
        f"INSERT INTO finops_budget_counters ({_COUNTER_COLUMNS}, updated_at)"
        " VALUES (?, ?, ?, ?, ?, NULL, ?) ON CONFLICT (counter_key) DO NOTHING"
    ),
    update_lease=(
        "UPDATE finops_budget_leases SET amount = ?, updated_at = ?"
        " WHERE worker_id = ? AND counter_key = ?"
    ),
    money=_text_money,
    stamp=_text_time,
)

_POSTGRES = _ChargeSQL(
    lock_counters=lambda n: (
        f"SELECT {_COUNTER_COLUMNS} FROM finops_budget_counters"
        " WHERE counter_key = ANY(%s) ORDER BY counter_key FOR UPDATE"
    ),
    lock_leases=lambda workers, keys: (
        "SELECT worker_id, counter_key, amount FROM finops_budget_leases"
        " WHERE worker_id = ANY(%s) AND counter_key = ANY(%s)"
        " ORDER BY counter_key, worker_id FOR UPDATE"
    ),
    keys=lambda keys: (keys,),
    update_counter=(
        "UPDATE finops_budget_counters SET spent = %s, reserved = %s, updated_at = %s"
        " WHERE counter_key = %s"
    ),
    insert_counter=(
        f"INSERT INTO finops_budget_counters ({_COUNTER_COLUMNS}, updated_at)"
        " VALUES (%s, %s, %s, %s, %s, NULL, %s) ON CONFLICT (counter_key) DO NOTHING"
    ),
    update_lease=(
        "UPDATE finops_budget_leases SET amount = %s, updated_at = %s"
        " WHERE worker_id = %s AND counter_key = %s"
    ),
    money=stored_money,
    stamp=lambda moment: moment,
)


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(value)


def apply_charges(conn: Connection, charges: Sequence[LeaseCharge], now: datetime) -> None:
    """Apply `charges` on `conn`, inside its transaction."""
    if not charges:
        return
    sql = _SQLITE if conn.dialect.name == "sqlite" else _POSTGRES
    keys = sorted({c.counter_key for c in charges})
    rows = conn.exec_driver_sql(sql.lock_counters(len(keys)), sql.keys(keys)).fetchall()
    counters = {
        key: CounterRow(unit, _decimal(limit), _decimal(spent), _decimal(reserved), end)
        for key, unit, limit, spent, reserved, end in rows
    }
    pairs = {(c.worker_id, c.counter_key) for c in charges}
    workers = sorted({w for w, _ in pairs})
    # One statement of a fixed shape (workers x keys; nearly always one worker), the pairs
    # picked out here: at most the few other rows of those keys are locked with them.
    found = conn.exec_driver_sql(
        sql.lock_leases(len(workers), len(keys)), sql.keys(workers) + sql.keys(keys)
    ).fetchall()
    held = {(w, k): _decimal(amount) for w, k, amount in found if (w, k) in pairs}
    after_counters, after_leases = plan_charges(charges, counters, held)
    stamp = sql.stamp(now)
    money = sql.money
    updates: list[tuple[Any, ...]] = []
    inserts: list[tuple[Any, ...]] = []
    for key, row in sorted(after_counters.items()):
        if key in counters:
            updates.append((money(row.spent), money(row.reserved), stamp, key))
        else:  # a counter deleted by hand: the spend is still real
            inserts.append(
                (key, row.unit, money(row.limit), money(row.spent), money(row.reserved), stamp)
            )
    if updates:
        conn.exec_driver_sql(sql.update_counter, updates)
    if inserts:
        conn.exec_driver_sql(sql.insert_counter, inserts)
    if after_leases:
        leases = [
            (money(amount), stamp, w, k)
            for (w, k), amount in sorted(after_leases.items(), key=lambda i: (i[0][1], i[0][0]))
        ]
        conn.exec_driver_sql(sql.update_lease, leases)
