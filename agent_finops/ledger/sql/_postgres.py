"""PostgreSQL: engine options, schema locks, and the budget store's hot path in single statements.

Reserve, settle, release and expire are each one statement (one round trip, its own
transaction, autocommit). A `MATERIALIZED` CTE runs `SELECT ... ORDER BY counter_key FOR
UPDATE`, so counter rows are always locked in one global order (no deadlocks), before the
decision and the updates, which are gated on it. Missing counter rows are first created in
their own short transaction with `INSERT ... ON CONFLICT DO NOTHING`. Money is
`NUMERIC(38, 18)`; times are `timestamptz`, bound as aware UTC datetimes.

Reservation expiry and worker leases are on the server's clock, `statement_timestamp()` (the
start of the statement; each budget statement is its own transaction, so it is also
`CURRENT_TIMESTAMP`), shared by every worker whatever `clock` its store was given.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, case, create_engine, func, literal
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.sql.elements import ColumnElement

from agent_finops.exceptions import LedgerError
from agent_finops.ledger._base import as_utc
from agent_finops.ledger._budget import (
    Claim,
    CounterState,
    LeaseGrant,
    LeaseRequest,
    Overrun,
    Refusal,
    ReservationState,
    ReserveResult,
    Settlement,
    Unit,
)
from agent_finops.ledger._lease_planning import plan_grow, plan_shrink
from agent_finops.ledger._money import tidy
from agent_finops.ledger._planning import CounterRow, claim_record, plan_reserve, replayed
from agent_finops.ledger.sql._connections import KeptConnections
from agent_finops.ledger.sql._dialect import BudgetBackend, SQLDialect

__all__ = ["POSTGRES", "PostgresBudgets", "PostgresDialect"]

SCHEMA_LOCK = 0x61_67_65_6E_74_66_69_6E  # "agentfin": the advisory lock of `setup()`

_SQL_COUNTER = 'SELECT spent, reserved, "limit" FROM finops_budget_counters WHERE counter_key = %s'
_SQL_RESERVATION = "SELECT state, claims FROM finops_reservations WHERE call_id = %s"
_SQL_CREATE_COUNTER = (
    'INSERT INTO finops_budget_counters (counter_key, unit, "limit", spent, reserved,'
    " window_end, updated_at) VALUES (%s, %s, %s, 0, 0, %s, %s)"
    " ON CONFLICT (counter_key) DO NOTHING"
)
_SQL_PURGE = "DELETE FROM finops_reservations WHERE state <> 'reserved' AND finished_at < %s"
_SQL_PURGE_OLDER = (
    "DELETE FROM finops_reservations WHERE call_id IN (SELECT call_id FROM finops_reservations"
    " WHERE state <> 'reserved' AND finished_at < statement_timestamp() - %s::interval"
    " LIMIT %s FOR UPDATE SKIP LOCKED)"
)
_SQL_RENEW_WORKER = (
    "WITH before AS MATERIALIZED (SELECT expires_at > statement_timestamp() AS live"
    " FROM finops_budget_workers WHERE worker_id = %(w)s)"
    " INSERT INTO finops_budget_workers (worker_id, host, pid, started_at, expires_at)"
    " VALUES (%(w)s, %(host)s, %(pid)s, statement_timestamp(),"
    " statement_timestamp() + %(lease)s::interval)"
    " ON CONFLICT (worker_id) DO UPDATE SET expires_at = excluded.expires_at"
    " RETURNING coalesce((SELECT live FROM before), false)"
)
_SQL_DROP_WORKER = "DELETE FROM finops_budget_workers WHERE worker_id = %s"
_SQL_LOCK_COUNTERS = (
    'SELECT counter_key, unit, "limit", spent, reserved, window_end FROM finops_budget_counters'
    " WHERE counter_key = ANY(%s) ORDER BY counter_key FOR UPDATE"
)
_SQL_LOCK_LEASES = (
    "SELECT counter_key, amount FROM finops_budget_leases WHERE worker_id = %s"
    " AND counter_key = ANY(%s) ORDER BY counter_key FOR UPDATE"
)
_SQL_WRITE_COUNTER = (
    'UPDATE finops_budget_counters SET "limit" = %s, spent = %s, reserved = %s,'
    " window_end = %s, updated_at = %s WHERE counter_key = %s"
)
_SQL_UPSERT_LEASE = (
    "INSERT INTO finops_budget_leases (worker_id, counter_key, amount, updated_at)"
    " VALUES (%s, %s, %s, %s) ON CONFLICT (worker_id, counter_key)"
    " DO UPDATE SET amount = excluded.amount, updated_at = excluded.updated_at"
)
_SQL_DROP_LEASE = "DELETE FROM finops_budget_leases WHERE worker_id = %s AND counter_key = %s"
# The leases of workers whose worker lease ran out (or whose row is gone), given back in one
# statement. Locks in the order every budget transaction takes them: the counters first, in
# key order (their keys from a plain read of the dead leases), then the lease rows (skipping
# any a live transaction holds: the next reaper takes them).
_REAP_LEASES = """
WITH keys AS MATERIALIZED (
    SELECT DISTINCT l.counter_key FROM finops_budget_leases l
    WHERE NOT EXISTS (SELECT 1 FROM finops_budget_workers w
        WHERE w.worker_id = l.worker_id AND w.expires_at > statement_timestamp())
),
locked AS MATERIALIZED (
    SELECT counter_key FROM finops_budget_counters
    WHERE counter_key IN (SELECT counter_key FROM keys) ORDER BY counter_key FOR UPDATE
),
dead AS MATERIALIZED (
    SELECT l.worker_id, l.counter_key, l.amount FROM finops_budget_leases l
    WHERE l.counter_key IN (SELECT counter_key FROM locked)
      AND NOT EXISTS (SELECT 1 FROM finops_budget_workers w
        WHERE w.worker_id = l.worker_id AND w.expires_at > statement_timestamp())
    ORDER BY l.counter_key, l.worker_id FOR UPDATE OF l SKIP LOCKED
),
back AS MATERIALIZED (
    SELECT counter_key AS k, sum(amount) AS amount FROM dead GROUP BY 1
),
upd AS (
    UPDATE finops_budget_counters c SET reserved = GREATEST(0, c.reserved - b.amount)
    FROM back b WHERE c.counter_key = b.k
    RETURNING 1
),
del AS (
    DELETE FROM finops_budget_leases l USING dead d
    WHERE l.worker_id = d.worker_id AND l.counter_key = d.counter_key
    RETURNING 1
)
SELECT (SELECT count(*) FROM del), (SELECT count(*) FROM upd)
"""

# One statement per reserve: lock the counters in key order, decide, insert the reservation,
# update the counters. The decision is only true if every counter exists (else the caller
# creates them and retries), units match, every enforced claim fits, and the call id is new;
# the counters are only updated if the reservation row was inserted (ON CONFLICT guards a
# concurrent reservation of the same call id). `locked` runs first: `ins` needs `go`, which
# needs `decision`, which needs `locked`; `upd` is gated on `ins` by a one-time filter.
_RESERVE = """
WITH input AS MATERIALIZED (
    SELECT * FROM json_to_recordset(%(claims)s::json) AS i(
        counter_key text, rule_id text, unit text, "limit" numeric, amount numeric,
        enforce bool, window_end timestamptz, ord int)
),
locked AS MATERIALIZED (
    SELECT counter_key, unit, spent, reserved FROM finops_budget_counters
    WHERE counter_key IN (SELECT counter_key FROM input) ORDER BY counter_key FOR UPDATE
),
existing AS MATERIALIZED (
    SELECT state, claims FROM finops_reservations WHERE call_id = %(call_id)s
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
    INSERT INTO finops_reservations
        (call_id, trace_id, state, claims, created_at, expires_at, worker_id)
    SELECT %(call_id)s, %(trace_id)s, 'reserved', d.claims, %(now)s,
        statement_timestamp() + %(ttl)s::interval, %(worker_id)s
    FROM decision d WHERE d.ok
    ON CONFLICT (call_id) DO NOTHING
    RETURNING claims
),
upd AS (
    UPDATE finops_budget_counters c SET reserved = c.reserved + i.amount, "limit" = i."limit",
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
# order; charge and/or give back; mark the reservation. Returns the state found, whether the
# reservation was finished now, and (settling) the claims charged more than their estimate.
_FINISH = """
WITH res AS MATERIALIZED (
    SELECT state, claims FROM finops_reservations WHERE call_id = %(call_id)s FOR UPDATE
),
items AS MATERIALIZED (
    SELECT e ->> 'counter_key' AS k, e ->> 'rule_id' AS rule_id, e ->> 'unit' AS unit,
           (e ->> 'amount')::numeric AS amount,
           CASE WHEN %(settling)s THEN coalesce(
               CASE e ->> 'unit' WHEN 'usd' THEN %(usd)s::numeric
                   WHEN 'tokens' THEN %(tokens)s::numeric WHEN 'calls' THEN %(calls)s::numeric
               END, (e ->> 'amount')::numeric) ELSE 0 END AS charge,
           CASE WHEN res.state = 'reserved' THEN (e ->> 'amount')::numeric ELSE 0 END AS give_back,
           ord
    FROM res, json_array_elements(res.claims) WITH ORDINALITY AS claim(e, ord)
    WHERE res.state IN ('reserved', 'expired')
),
locked AS MATERIALIZED (
    SELECT counter_key FROM finops_budget_counters WHERE counter_key IN (SELECT k FROM items)
    ORDER BY counter_key FOR UPDATE
),
upd AS (
    UPDATE finops_budget_counters c SET spent = c.spent + i.charge,
        reserved = c.reserved - i.give_back, updated_at = %(now)s
    FROM items i
    WHERE c.counter_key = i.k AND (SELECT count(*) FROM locked) >= 0
    RETURNING 1
),
fin AS (
    UPDATE finops_reservations r SET state = %(target)s, finished_at = %(now)s,
        actual = CASE WHEN %(settling)s
            THEN (SELECT json_object_agg(k, charge::text) FROM items) END
    WHERE r.call_id = %(call_id)s AND r.state IN ('reserved', 'expired')
    RETURNING 1
)
SELECT (SELECT state FROM res), (SELECT count(*) FROM fin), (SELECT count(*) FROM upd),
       (SELECT json_agg(json_build_array(k, rule_id, unit, amount::text, charge::text)
                        ORDER BY ord)
        FROM items WHERE %(settling)s AND charge > amount)
"""

# One statement per expiry, TTLs judged at `at` (the server's clock unless given), leases
# always at the server's clock: lock the due reservations (past their expiry, or of a worker
# whose lease ran out or is gone; skipping
# those another transaction is finishing), then their counters in key order; give the
# estimates back; mark them expired; delete the expired leases.
_EXPIRE = """
WITH clock AS MATERIALIZED (
    SELECT coalesce(%(at)s::timestamptz, statement_timestamp()) AS at
),
due AS MATERIALIZED (
    SELECT r.call_id, r.claims FROM finops_reservations r
    WHERE r.state = 'reserved' AND (r.expires_at <= (SELECT at FROM clock)
        OR (r.worker_id IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM finops_budget_workers w
            WHERE w.worker_id = r.worker_id AND w.expires_at > statement_timestamp())))
    ORDER BY r.call_id FOR UPDATE OF r SKIP LOCKED
),
dead AS (
    DELETE FROM finops_budget_workers WHERE expires_at <= statement_timestamp()
    RETURNING 1
),
back AS MATERIALIZED (
    SELECT e ->> 'counter_key' AS k, sum((e ->> 'amount')::numeric) AS amount
    FROM due, json_array_elements(due.claims) AS e
    GROUP BY 1
),
locked AS MATERIALIZED (
    SELECT counter_key FROM finops_budget_counters WHERE counter_key IN (SELECT k FROM back)
    ORDER BY counter_key FOR UPDATE
),
upd AS (
    UPDATE finops_budget_counters c SET reserved = c.reserved - b.amount,
        updated_at = (SELECT at FROM clock)
    FROM back b
    WHERE c.counter_key = b.k AND (SELECT count(*) FROM locked) >= 0
    RETURNING 1
),
fin AS (
    UPDATE finops_reservations r SET state = 'expired', finished_at = (SELECT at FROM clock)
    FROM due d
    WHERE r.call_id = d.call_id
    RETURNING r.call_id
)
SELECT call_id FROM fin WHERE (SELECT count(*) FROM dead) >= 0 ORDER BY call_id
"""


class PostgresDialect(SQLDialect):
    """PostgreSQL through psycopg 3 (`postgresql+psycopg://`), pooled with pre-ping."""

    name = "postgresql"
    money_as_text = False
    times_as_integers = False

    def create_engine(self, url: URL, *, create: bool, engine_kwargs: dict[str, Any]) -> Engine:
        """A pooled engine that checks a connection before handing it out."""
        engine_kwargs.setdefault("pool_pre_ping", True)
        return create_engine(url, **engine_kwargs)

    def insert(self, table: Table) -> Any:
        """PostgreSQL's INSERT (ON CONFLICT ... DO UPDATE / DO NOTHING)."""
        return postgresql.insert(table)

    def lock_for_budget_write(self, conn: Connection) -> None:
        """Nothing: the charges lock the rows they change (`FOR UPDATE`, key order)."""

    def begin_schema_change(self, conn: Connection) -> None:
        """A transaction-scoped advisory lock: concurrent `setup()`s run one after another."""
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")

    def backfill_thread_ids(self, conn: Connection) -> None:
        """Copy `tags ->> 'thread_id'` into the new column."""
        conn.exec_driver_sql(
            "UPDATE finops_runs SET thread_id = tags ->> 'thread_id'"
            " WHERE thread_id IS NULL AND json_typeof(tags -> 'thread_id') = 'string'"
        )

    def drop_column(self, conn: Connection, table: str, column: str) -> None:
        """`ALTER TABLE ... DROP COLUMN IF EXISTS`."""
        conn.exec_driver_sql(f'ALTER TABLE {table} DROP COLUMN IF EXISTS "{column}"')

    def budget_backend(
        self, engine: Engine, *, durable_commits: bool, max_idle_connections: int
    ) -> BudgetBackend:
        """The single-statement budget backend."""
        return PostgresBudgets(engine, durable=durable_commits, max_idle=max_idle_connections)

    def money_sums(self, table: Table, when: ColumnElement[bool] | None) -> list[Any]:
        """`SUM(cost)`: NUMERIC sums are exact."""
        cost = table.c.cost
        return [func.sum(cost if when is None else case((when, cost)))]

    def money_total(self, values: Sequence[Any]) -> Decimal:
        """The NUMERIC sum, trailing zeros dropped."""
        return Decimal(0) if values[0] is None else tidy(Decimal(values[0]))

    def unsummed(self, table: Table) -> Any:
        """Nothing is left out: NUMERIC holds every stored amount."""
        return literal(0)

    def priced(self, table: Table) -> Any:
        """`COUNT(cost)`."""
        return func.count(table.c.cost)

    def seconds_between(self, start: Any, end: Any) -> Any:
        """`EXTRACT(EPOCH FROM end - start)`."""
        return func.extract("epoch", end - start)


POSTGRES = PostgresDialect()


class PostgresBudgets(BudgetBackend):
    """Reserve, settle, release and expire are one statement and one round trip each."""

    param_mark = "%s"

    def __init__(self, engine: Engine, *, durable: bool, max_idle: int) -> None:
        """Budget operations on a PostgreSQL engine.

        `durable=False` runs them with `synchronous_commit = off`: no WAL flush wait at
        commit; a server crash may lose the last fraction of a second of budget updates but
        never corrupts or half-applies one.
        """
        prepare = _prepare if durable else _prepare_lazy
        super().__init__(
            KeptConnections(engine, max_idle=max_idle, prepare=prepare, release=_release)
        )

    def _read(self, sql: str, params: Sequence[Any]) -> list[Any]:
        def attempt() -> list[Any]:
            with self.connections.connection() as conn:
                rows: list[Any] = conn.execute(sql, params).fetchall()
                return rows

        return self.connections.run("read", attempt)

    def reserve(
        self,
        call_id: str,
        claims: Sequence[Claim],
        trace_id: str | None,
        now: datetime,
        ttl: timedelta,
        worker_id: str | None,
    ) -> ReserveResult:
        """Check and reserve in one statement (creating missing counters first)."""
        rows = []
        for ordinal, claim in enumerate(claims):
            row = claim_record(claim, Decimal(0))
            row["ord"] = ordinal
            end = claim.window_end
            row["window_end"] = None if end is None else as_utc(end).isoformat()
            rows.append(row)
        params = {
            "claims": json.dumps(rows),
            "call_id": call_id,
            "trace_id": trace_id,
            "now": as_utc(now),
            "ttl": ttl,
            "worker_id": worker_id,
        }

        def attempt() -> ReserveResult:
            for _ in range(3):
                with self.connections.connection() as conn:
                    found = conn.execute(_RESERVE, params).fetchall()
                inserted, _updated, state, stored = found[0][:4]
                counters = {
                    key: CounterRow(unit, Decimal(0), tidy(spent), tidy(reserved), None)
                    for *_, key, unit, spent, reserved in found
                    if key is not None
                }
                if inserted is not None:  # granted, and written
                    return replace(replayed(call_id, "reserved", inserted), replayed=False)
                if state is not None:
                    return replayed(call_id, state, stored)
                if len(counters) < len(claims):
                    self._create_counters(claims, now)
                    continue
                result, _writes, _records = plan_reserve(call_id, claims, counters)
                if not result.granted:
                    return result
                # It fits but nothing was inserted: the same call id was reserved meanwhile.
                again = self._read(_SQL_RESERVATION, (call_id,))
                if again:
                    return replayed(call_id, again[0][0], again[0][1])
            raise LedgerError(f"budget counters of {call_id!r} keep disappearing")

        return self.connections.run("reservation", attempt)

    def _create_counters(self, claims: Sequence[Claim], now: datetime) -> None:
        """Create missing counter rows in their own short transaction, in key order."""
        stamp = as_utc(now)
        params = [
            (c.counter_key, c.unit, c.limit, c.window_end and as_utc(c.window_end), stamp)
            for c in sorted(claims, key=lambda c: c.counter_key)
        ]
        with self.connections.connection() as conn, conn.transaction():
            conn.cursor().executemany(_SQL_CREATE_COUNTER, params)

    def finish(
        self,
        call_id: str,
        now: datetime,
        target: ReservationState,
        charges: Mapping[str, Decimal | None],
    ) -> Settlement:
        """Settle or release in one statement."""
        settling = target == "settled"
        params = {
            "call_id": call_id,
            "settling": settling,
            "target": target,
            "now": as_utc(now),
            "usd": charges.get("usd"),
            "tokens": charges.get("tokens"),
            "calls": charges.get("calls"),
        }

        def attempt() -> Settlement:
            with self.connections.connection() as conn:
                state, finished, _updated, over = conn.execute(_FINISH, params).fetchone()
            if settling:
                if not finished:
                    return Settlement(call_id, False)
                overruns = tuple(
                    Overrun(key, rule, cast(Unit, unit), tidy(Decimal(r)), tidy(Decimal(a)))
                    for key, rule, unit, r, a in over or ()
                )
                return Settlement(call_id, True, overruns)
            return Settlement(call_id, bool(finished) and state == "reserved")

        return self.connections.run("settlement" if settling else "release", attempt)

    def expire(self, at: datetime | None) -> list[str]:
        """Give back every due reservation in one statement."""
        params = {"at": None if at is None else as_utc(at)}

        def attempt() -> list[str]:
            with self.connections.connection() as conn:
                rows = conn.execute(_EXPIRE, params).fetchall()
                conn.execute(_REAP_LEASES)
            return [row[0] for row in rows]

        return self.connections.run("expiry", attempt)

    def purge_older(self, retention: timedelta, batch: int) -> int:
        """Delete one batch of old finished reservations (skipping rows being finished)."""

        def attempt() -> int:
            with self.connections.connection() as conn:
                deleted: int = conn.execute(_SQL_PURGE_OLDER, (retention, batch)).rowcount
                return deleted

        return self.connections.run("purge", attempt)

    def renew_worker(self, worker_id: str, host: str, pid: int, lease: timedelta) -> bool:
        """Upsert the worker's lease; whether it was still live before."""
        params = {"w": worker_id, "host": host, "pid": pid, "lease": lease}

        def attempt() -> bool:
            with self.connections.connection() as conn:
                row = conn.execute(_SQL_RENEW_WORKER, params).fetchone()
            return bool(row and row[0])

        return self.connections.run("lease renewal", attempt)

    def drop_worker(self, worker_id: str) -> None:
        """Delete the worker's lease."""

        def attempt() -> None:
            with self.connections.connection() as conn:
                conn.execute(_SQL_DROP_WORKER, (worker_id,))

        self.connections.run("lease end", attempt)

    def purge(self, finished_before: datetime) -> int:
        """Delete finished reservations."""

        def attempt() -> int:
            with self.connections.connection() as conn:
                deleted: int = conn.execute(_SQL_PURGE, (as_utc(finished_before),)).rowcount
                return deleted

        return self.connections.run("purge", attempt)

    def _locked(self, conn: Any, worker_id: str, keys: list[str]) -> tuple[Any, Any]:
        # Both sent before either is read: in pipeline mode, one round trip.
        counter_rows = conn.execute(_SQL_LOCK_COUNTERS, (keys,))
        lease_rows = conn.execute(_SQL_LOCK_LEASES, (worker_id, keys))
        counters = {
            key: CounterRow(unit, tidy(limit), tidy(spent), tidy(reserved), end)
            for key, unit, limit, spent, reserved, end in counter_rows.fetchall()
        }
        leases = {key: tidy(amount) for key, amount in lease_rows.fetchall()}
        return counters, leases

    def grow_leases(
        self, worker_id: str, requests: Sequence[LeaseRequest], now: datetime
    ) -> tuple[list[LeaseGrant], list[Refusal]]:
        """Grow in one transaction: counters created if missing, then locked in key order."""
        stamp = as_utc(now)
        claims = sorted((r.claim for r in requests), key=lambda c: c.counter_key)
        keys = [c.counter_key for c in claims]
        created = [
            (c.counter_key, c.unit, c.limit, c.window_end and as_utc(c.window_end), stamp)
            for c in claims
        ]

        def attempt() -> tuple[list[LeaseGrant], list[Refusal]]:
            # Pipelined: BEGIN, the counters' creation and both locks go in one round trip,
            # the writes and COMMIT in a second (a grow is on a caller's decision path).
            with self.connections.connection() as conn, conn.pipeline(), conn.transaction():
                cursor = conn.cursor()
                cursor.executemany(_SQL_CREATE_COUNTER, created)
                counters, leases = self._locked(conn, worker_id, keys)
                plan = plan_grow(requests, counters, leases)
                if plan.refusals:
                    return [], plan.refusals
                cursor.executemany(
                    _SQL_WRITE_COUNTER,
                    [
                        (c.limit, c.spent, c.reserved, _end(c.window_end), stamp, key)
                        for key, c in sorted(plan.counters.items())
                    ],
                )
                cursor.executemany(
                    _SQL_UPSERT_LEASE,
                    [(worker_id, k, v, stamp) for k, v in sorted(plan.leases.items())],
                )
                return plan.grants, []

        return self.connections.run("lease", attempt)

    def shrink_leases(self, worker_id: str, amounts: Mapping[str, Decimal], now: datetime) -> None:
        """Give back in one transaction (counters, then the worker's leases, locked)."""
        keys = sorted(amounts)
        if not keys:
            return
        stamp = as_utc(now)

        def attempt() -> None:
            with self.connections.connection() as conn, conn.pipeline(), conn.transaction():
                counters, leases = self._locked(conn, worker_id, keys)
                rows, after = plan_shrink(amounts, counters, leases)
                cursor = conn.cursor()
                if rows:
                    cursor.executemany(
                        _SQL_WRITE_COUNTER,
                        [
                            (c.limit, c.spent, c.reserved, _end(c.window_end), stamp, key)
                            for key, c in sorted(rows.items())
                        ],
                    )
                for key, left in sorted(after.items()):
                    if left > 0:
                        conn.execute(_SQL_UPSERT_LEASE, (worker_id, key, left, stamp))
                    else:
                        conn.execute(_SQL_DROP_LEASE, (worker_id, key))

        self.connections.run("lease return", attempt)

    def counter(self, counter_key: str) -> CounterState | None:
        """A counter's values, without NUMERIC's padding zeros."""
        rows = self._read(_SQL_COUNTER, (counter_key,))
        if not rows:
            return None
        spent, reserved, limit = rows[0]
        return CounterState(tidy(spent), tidy(reserved), tidy(limit))

    def reservation_state(self, call_id: str) -> ReservationState | None:
        """A reservation's state."""
        rows = self._read(_SQL_RESERVATION, (call_id,))
        return cast(ReservationState, rows[0][0]) if rows else None


# Module functions, not methods: what the kept connections hold must not refer back to the
# backend, so that a store dropped without `close()` is freed (and its connections returned
# to the pool) at once by reference counting, not later by the cycle collector.


def _end(value: Any) -> Any:
    """A counter's `window_end` to bind: as read back (aware), or a claim's datetime."""
    return None if value is None else as_utc(value)


def _prepare(fairy: Any) -> None:
    """Autocommit: each budget statement is its own transaction."""
    conn = fairy.driver_connection
    conn.rollback()
    conn.autocommit = True


def _prepare_lazy(fairy: Any) -> None:
    """Autocommit, and commits that do not wait for the WAL flush."""
    _prepare(fairy)
    fairy.driver_connection.execute("SET synchronous_commit TO off")


def _release(fairy: Any) -> None:
    """Undo `_prepare` before a connection goes back to the engine's pool."""
    conn = fairy.driver_connection
    conn.execute("RESET synchronous_commit")
    conn.autocommit = False
