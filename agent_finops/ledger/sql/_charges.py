"""Budget-lease charges, applied inside the ledger's write transaction (with their events).

`SQLLedger.write(events=..., charges=...)` inserts the events and, in the same transaction,
moves each `LeaseCharge` into its counter: `spent` grows by the charge, and what it consumed
of the worker's lease leaves the lease row and the counter's `reserved` (never more than the
lease still holds). Rows are locked in key order, counters first, as every budget
transaction does (no deadlocks); on SQLite the write is a `BEGIN IMMEDIATE` transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.engine import Connection

from agent_finops.ledger._budget import LeaseCharge
from agent_finops.ledger._lease_planning import plan_charges
from agent_finops.ledger._planning import CounterRow
from agent_finops.ledger.sql._dialect import SQLDialect
from agent_finops.ledger.sql._tables import budget_counters, budget_leases

__all__ = ["apply_charges"]

_counters = budget_counters
_leases = budget_leases


def apply_charges(
    conn: Connection, dialect: SQLDialect, charges: Sequence[LeaseCharge], now: datetime
) -> None:
    """Apply `charges` on `conn`, inside its transaction."""
    if not charges:
        return
    keys = sorted({c.counter_key for c in charges})
    rows = conn.execute(
        select(_counters)
        .where(_counters.c.counter_key.in_(keys))
        .order_by(_counters.c.counter_key)
        .with_for_update()
    ).all()
    counters = {
        r.counter_key: CounterRow(r.unit, r.limit, r.spent, r.reserved, r.window_end) for r in rows
    }
    pairs = sorted({(c.worker_id, c.counter_key) for c in charges}, key=lambda p: (p[1], p[0]))
    held: dict[tuple[str, str], Decimal] = {}
    if pairs:
        found = conn.execute(
            select(_leases.c.worker_id, _leases.c.counter_key, _leases.c.amount)
            .where(
                or_(*(and_(_leases.c.worker_id == w, _leases.c.counter_key == k) for w, k in pairs))
            )
            .order_by(_leases.c.counter_key, _leases.c.worker_id)
            .with_for_update()
        ).all()
        held = {(w, k): amount for w, k, amount in found}
    after_counters, after_leases = plan_charges(charges, counters, held)
    updates: list[dict[str, Any]] = []
    inserts: list[dict[str, Any]] = []
    for key, row in sorted(after_counters.items()):
        values = {
            "k": key,
            "unit": row.unit,
            "limit": row.limit,
            "spent": row.spent,
            "reserved": row.reserved,
            "window_end": row.window_end,
            "updated_at": now,
        }
        (updates if key in counters else inserts).append(values)
    if updates:
        conn.execute(
            _counters.update()
            .where(_counters.c.counter_key == bindparam("k"))
            .values(
                spent=bindparam("spent"),
                reserved=bindparam("reserved"),
                updated_at=bindparam("updated_at"),
            ),
            [{k: v[k] for k in ("k", "spent", "reserved", "updated_at")} for v in updates],
        )
    if inserts:  # a counter deleted by hand: the spend is still real
        conn.execute(
            dialect.insert(_counters).on_conflict_do_nothing(),
            [
                {
                    "counter_key": v["k"],
                    "unit": v["unit"],
                    "limit": v["limit"],
                    "spent": v["spent"],
                    "reserved": v["reserved"],
                    "window_end": None,
                    "updated_at": now,
                }
                for v in inserts
            ],
        )
    if after_leases:
        conn.execute(
            _leases.update()
            .where(
                and_(
                    _leases.c.worker_id == bindparam("w"),
                    _leases.c.counter_key == bindparam("k"),
                )
            )
            .values(amount=bindparam("amount"), updated_at=bindparam("updated_at")),
            [
                {"w": w, "k": k, "amount": amount, "updated_at": now}
                for (w, k), amount in sorted(after_leases.items(), key=lambda i: (i[0][1], i[0][0]))
            ],
        )
