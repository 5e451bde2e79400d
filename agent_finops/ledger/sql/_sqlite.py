"""SQLite: engine options (WAL, busy timeout), schema locks, and the budget store's hot path.

Budget operations run in `BEGIN IMMEDIATE` transactions: SQLite's write lock is taken before
the counters are read, so the check and the update are one transaction across threads and
processes (WAL, busy timeout). Money is text here, so the arithmetic is done in Python with
`Decimal` inside the transaction, by the shared planning functions.

Reservation expiry and worker leases are on SQLite's clock, `strftime('%Y-%m-%d %H:%M:%f',
'now')`: the clock of the host the file is on, read by SQLite itself, so every process on
that file shares it whatever `clock` its store was given (a SQLite file is only shared by
processes of one host: not across a network file system). Threads of one process
also queue on an in-process lock, which hands the write lock over faster than SQLite's
sleeping busy handler. WAL checkpoints (their fsyncs) run on a background thread, not inside
a caller's commit (see `_checkpointer.py`).
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, case, create_engine, event, func
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.elements import ColumnElement

from agent_finops.exceptions import LedgerNotFound
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
from agent_finops.ledger._lease_planning import plan_grow, plan_shrink
from agent_finops.ledger._money import EXACT, join_money, tidy
from agent_finops.ledger._planning import (
    CounterRow,
    given_back,
    plan_finish,
    plan_reserve,
    replayed,
)
from agent_finops.ledger.sql._checkpointer import (
    CHECKPOINT_EVERY,
    WAL_BACKSTOP_PAGES,
    Checkpointer,
)
from agent_finops.ledger.sql._connections import KeptConnections
from agent_finops.ledger.sql._dialect import BudgetBackend, LedgerWrites, SQLDialect

__all__ = ["SQLITE", "SQLiteBudgets", "SQLiteDialect"]

BUSY_TIMEOUT_MS = 30_000
_COUNTERS = "finops_budget_counters"
_RESERVATIONS = "finops_reservations"
_WORKERS = "finops_budget_workers"
_COLUMNS = 'counter_key, unit, "limit", spent, reserved, window_end'
_DB_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'"
"""SQLite's clock in SQLAlchemy's DateTime text format (microseconds; SQLite has millis)."""
_DB_NOW_PLUS = "strftime('%Y-%m-%d %H:%M:%f', 'now', ?) || '000'"
"""SQLite's clock moved by a modifier bound as text (`_seconds`)."""

_SQL_COUNTER = f'SELECT spent, reserved, "limit" FROM {_COUNTERS} WHERE counter_key = ?'
_SQL_RESERVATION = f"SELECT state, claims FROM {_RESERVATIONS} WHERE call_id = ?"
_SQL_INSERT_RESERVATION = (
    f"INSERT INTO {_RESERVATIONS}"
    " (call_id, trace_id, state, claims, created_at, expires_at, worker_id)"
    f" VALUES (?, ?, 'reserved', ?, ?, {_DB_NOW_PLUS}, ?)"
)
_SQL_FINISH = f"UPDATE {_RESERVATIONS} SET state = ?, actual = ?, finished_at = ? WHERE call_id = ?"
_SQL_CLOCK = f"SELECT coalesce(?, {_DB_NOW}), {_DB_NOW}"
# Due: past its own expiry at `:at`, or its worker's lease ran out (always judged at SQLite's
# clock now, `:live`) or is gone. Scans the open reservations (few: the calls in flight).
_DUE = (
    f"FROM {_RESERVATIONS} AS r INDEXED BY ix_finops_reservations_open"
    " WHERE r.state = 'reserved' AND (r.expires_at <= :at OR (r.worker_id IS NOT NULL"
    f" AND NOT EXISTS (SELECT 1 FROM {_WORKERS} AS w"
    " WHERE w.worker_id = r.worker_id AND w.expires_at > :live)))"
)
_SQL_ANY_EXPIRED = (
    f"SELECT 1 {_DUE} UNION ALL SELECT 1 FROM {_WORKERS} WHERE expires_at <= :live LIMIT 1"
)
_SQL_EXPIRED = f"SELECT r.call_id, r.claims {_DUE} ORDER BY r.call_id"
_SQL_DROP_DEAD_WORKERS = f"DELETE FROM {_WORKERS} WHERE expires_at <= ?"
_SQL_PURGE = f"DELETE FROM {_RESERVATIONS} WHERE state <> 'reserved' AND finished_at < ?"
_SQL_PURGE_OLDER = (
    f"DELETE FROM {_RESERVATIONS} WHERE call_id IN (SELECT call_id FROM {_RESERVATIONS}"
    f" WHERE state <> 'reserved' AND finished_at < {_DB_NOW_PLUS} LIMIT ?)"
)
_SQL_RENEW_WORKER = (
    f"INSERT INTO {_WORKERS} (worker_id, host, pid, started_at, expires_at)"
    f" VALUES (?, ?, ?, {_DB_NOW}, {_DB_NOW_PLUS})"
    " ON CONFLICT (worker_id) DO UPDATE SET expires_at = excluded.expires_at"
)
_SQL_DROP_WORKER = f"DELETE FROM {_WORKERS} WHERE worker_id = ?"
_SQL_WORKER_LIVE = f"SELECT expires_at > {_DB_NOW} FROM {_WORKERS} WHERE worker_id = ?"
_LEASES = "finops_budget_leases"
_SQL_UPSERT_LEASE = (
    f"INSERT INTO {_LEASES} (worker_id, counter_key, amount, updated_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (worker_id, counter_key) DO UPDATE SET amount = excluded.amount,"
    " updated_at = excluded.updated_at"
)
_SQL_DROP_LEASE = f"DELETE FROM {_LEASES} WHERE worker_id = ? AND counter_key = ?"
# Leases of workers whose worker lease ran out at `:live` or whose row is gone.
_SQL_DEAD_LEASES = (
    f"SELECT l.worker_id, l.counter_key, l.amount FROM {_LEASES} AS l WHERE NOT EXISTS"
    f" (SELECT 1 FROM {_WORKERS} AS w WHERE w.worker_id = l.worker_id AND w.expires_at > :live)"
    " ORDER BY l.counter_key"
)

_AUTOCHECKPOINT = "agent_finops_wal_autocheckpoint"
"""Key in a pooled connection's `info`: its `wal_autocheckpoint` before the store changed it."""

_WRITER_LOCKS: dict[str, threading.Lock] = {}
"""One lock per SQLite database and process: the process's threads take turns writing."""


_WAITING: dict[str, int] = {}
"""Budget transactions of this process waiting for a database's writer lock, by database.

The ledger writer gives way to them: its transaction checks between statements and, when
one waits, rolls back and is retried once the budget transaction has the lock (a grow must
not wait for a batch of the writer's, the P99 of a guarded decision)."""
_WAITING_LOCK = threading.Lock()


@contextmanager
def _budget_turn(key: str) -> Iterator[None]:
    """Hold the database's writer lock for a budget transaction, counted as waiting meanwhile."""
    lock = _WRITER_LOCKS[key]
    if not lock.acquire(blocking=False):
        with _WAITING_LOCK:
            _WAITING[key] = _WAITING.get(key, 0) + 1
        try:
            lock.acquire()
        finally:
            with _WAITING_LOCK:
                _WAITING[key] -= 1
    try:
        yield
    finally:
        lock.release()


def _fresh_locks_in_child() -> None:
    # A lock held by another thread at fork time would never be released in the child.
    global _WAITING_LOCK
    for key in _WRITER_LOCKS:
        _WRITER_LOCKS[key] = threading.Lock()
    _WAITING.clear()
    _WAITING_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_fresh_locks_in_child)


def _text_time(moment: datetime | None) -> str | None:
    """SQLAlchemy's storage format for DateTime on SQLite (UTC); it sorts as text."""
    if moment is None:
        return None
    if moment.tzinfo is not None:
        if moment.tzinfo is not UTC:
            moment = moment.astimezone(UTC)
        moment = moment.replace(tzinfo=None)
    return moment.isoformat(" ", "microseconds")


def _micros_of_text(value: str) -> int:
    moment = datetime.fromisoformat(value)
    if moment.utcoffset() is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _seconds(delta: timedelta) -> str:
    """A SQLite date modifier moving a time by `delta` (millisecond precision)."""
    return f"{delta.total_seconds():+.3f} seconds"


class SQLiteDialect(SQLDialect):
    """SQLite files (WAL, `synchronous=NORMAL`, 30 s busy timeout) and in-memory databases."""

    name = "sqlite"
    money_as_text = True
    times_as_integers = True

    def create_engine(self, url: URL, *, create: bool, engine_kwargs: dict[str, Any]) -> Engine:
        """A WAL engine on a file (its directory made if `create`), or a private in-memory one."""
        database = url.database or ""
        in_memory = database in ("", ":memory:")
        if in_memory:
            if not create:
                raise LedgerNotFound(
                    "an in-memory SQLite ledger never exists before it is opened", key=str(url)
                )
            engine_kwargs.setdefault("poolclass", StaticPool)
        else:
            path = Path(database).expanduser()
            if not create and not path.is_file():
                raise LedgerNotFound(f"no ledger file at {path}", key=str(path))
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs.setdefault(
            "connect_args", {"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000}
        )
        engine = create_engine(url, **engine_kwargs)
        wal = not in_memory

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            if wal:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                # Checkpoints run on a background thread (`SQLiteLedgerWrites`); inline only
                # as the backstop, so a commit never waits for a checkpoint's fsyncs.
                cur.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}")
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cur.close()

        return engine

    def insert(self, table: Table) -> Any:
        """SQLite's INSERT (ON CONFLICT ... DO UPDATE / DO NOTHING)."""
        return sqlite.insert(table)

    def begin_schema_change(self, conn: Connection) -> None:
        """`BEGIN IMMEDIATE`: the database write lock, so DDL is one transaction, one at a time.

        (pysqlite starts no transaction before DDL by itself.)
        """
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    def lock_for_budget_write(self, conn: Connection) -> None:
        """`BEGIN IMMEDIATE`, as for a schema change."""
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    def backfill_thread_ids(self, conn: Connection) -> None:
        """Copy `tags.thread_id` into the new column."""
        conn.exec_driver_sql(
            "UPDATE finops_runs SET thread_id = json_extract(tags, '$.thread_id')"
            " WHERE thread_id IS NULL AND json_type(tags, '$.thread_id') = 'text'"
        )

    def drop_column(self, conn: Connection, table: str, column: str) -> None:
        """`ALTER TABLE ... DROP COLUMN` (SQLite 3.35+; older ones keep the nullable column)."""
        if sqlite3.sqlite_version_info >= (3, 35, 0):
            conn.exec_driver_sql(f'ALTER TABLE {table} DROP COLUMN "{column}"')

    def refuse_text_times(self, conn: Connection, table: str, columns: Sequence[str]) -> None:
        """Triggers refusing text in integer time columns (a writer still at schema v6).

        Such a process, started before the migration, does not look at the version again;
        its rows would sort apart from every other (SQLite orders integers before text) and
        drop out of time ranges. Refused, its write is kept in its dead-letter file instead.
        """
        text = " OR ".join(f"typeof(NEW.\"{c}\") = 'text'" for c in columns)
        message = (
            "agent-finops: this ledger is at schema v7 (integer times); upgrade agent-finops"
            " in every process writing to it"
        )
        for when in ("INSERT", "UPDATE"):
            conn.exec_driver_sql(
                f"CREATE TRIGGER IF NOT EXISTS {table}_v7_times_{when.lower()}"
                f" BEFORE {when} ON {table} WHEN {text}"
                f" BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )

    def times_to_integers(self, conn: Connection, table: str, column: str) -> None:
        """Older DATETIME text to integer microseconds since the epoch.

        In SQL for SQLAlchemy's form (`YYYY-MM-DD HH:MM:SS[.ffffff]`, UTC), in Python for any
        other text (`datetime.fromisoformat`, an offset applied).
        """
        whole = "CAST(strftime('%s', substr({c}, 1, 19)) AS INTEGER) * 1000000"
        fraction = "CAST(substr(substr({c}, 21) || '000000', 1, 6) AS INTEGER)"
        canonical = (
            "typeof({c}) = 'text' AND {c} GLOB"
            " '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]*'"
            " AND (length({c}) = 19 OR (substr({c}, 20, 1) = '.' AND length({c}) BETWEEN 21"
            " AND 26 AND substr({c}, 21) NOT GLOB '*[^0-9]*'))"
        )
        c = f'"{column}"'
        conn.exec_driver_sql(
            f"UPDATE {table} SET {c} = {whole.format(c=c)} + {fraction.format(c=c)}"
            f" WHERE {canonical.format(c=c)}"
        )
        rest = conn.exec_driver_sql(
            f"SELECT rowid, {c} FROM {table} WHERE typeof({c}) = 'text'"
        ).all()
        if rest:
            conn.exec_driver_sql(
                f"UPDATE {table} SET {c} = ? WHERE rowid = ?",
                [(_micros_of_text(value), rowid) for rowid, value in rest],
            )

    def budget_backend(
        self, engine: Engine, *, durable_commits: bool, max_idle_connections: int
    ) -> BudgetBackend:
        """The SQLite budget backend (one kept connection; `durable_commits` is PostgreSQL's)."""
        return SQLiteBudgets(engine)

    def private_database(self, url: URL) -> bool:
        """In memory, shared-cache URIs (`file:name?mode=memory`) included."""
        database = url.database or ""
        return (
            database in ("", ":memory:")
            or "mode=memory" in database
            or url.query.get("mode") == "memory"
            or database.startswith("file::memory:")
        )

    def ledger_writes(self, engine: Engine) -> LedgerWrites:
        """One writer per file in this process; WAL checkpoints off the writer's commit."""
        if self.private_database(engine.url):
            return LedgerWrites()
        return SQLiteLedgerWrites(engine)

    def money_sums(self, table: Table, when: ColumnElement[bool] | None) -> list[Any]:
        """Integer sums of `cost_nano` and `cost_rest` (text money cannot be summed in SQL)."""
        nano, rest = table.c.cost_nano, table.c.cost_rest
        if when is None:
            return [func.sum(nano), func.sum(rest)]
        return [func.sum(case((when, nano))), func.sum(case((when, rest)))]

    def money_total(self, values: Sequence[Any]) -> Decimal:
        """`join_money` of the two integer sums."""
        return join_money(values[0], values[1])

    def unsummed(self, table: Table) -> Any:
        """Rows with a cost too large for the integer columns (`cost_rest` = `HUGE_REST`)."""
        return func.sum(case((table.c.cost_rest < 0, 1), else_=0))

    def priced(self, table: Table) -> Any:
        """`COUNT(cost_rest)`: read from the rollup index, not the table."""
        return func.count(table.c.cost_rest)

    def seconds_between(self, start: Any, end: Any) -> Any:
        """`julianday` difference in seconds."""
        return (func.julianday(end) - func.julianday(start)) * 86400.0


SQLITE = SQLiteDialect()


class SQLiteLedgerWrites(LedgerWrites):
    """The ledger's writes on a SQLite file: one writer at a time, checkpoints aside.

    A write transaction holds the same in-process lock as the budget store's (one writer
    per file in a process: they no longer wait on each other inside SQLite's busy handler),
    and every `CHECKPOINT_EVERY` commits a background thread checkpoints the WAL, so no
    commit of the ledger writer pays a checkpoint's fsyncs (they made the tail of the
    SIGKILL loss window: 20-30 ms; see docs/scaling.md).
    """

    def __init__(self, engine: Engine) -> None:
        """Writes on `engine`'s file."""
        key = str(engine.url)
        _WRITER_LOCKS.setdefault(key, threading.Lock())  # atomic under the GIL
        self._key = key
        self._lock = functools.partial(_writer_lock, key)
        self._engine = engine
        self._commits = 0
        self._checkpointer = Checkpointer(engine, self._lock)
        self._stop = weakref.finalize(self, self._checkpointer.close, False)

    def contended(self) -> bool:
        """Whether a budget transaction of this process waits for the writer lock."""
        return _WAITING.get(self._key, 0) > 0

    def wait_uncontended(self, timeout: float) -> None:
        """Let the waiting budget transactions take the lock first (at most `timeout` s)."""
        deadline = time.monotonic() + timeout
        while self.contended() and time.monotonic() < deadline:
            time.sleep(0.00005)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the file's writer lock for the transaction; count the commit."""
        with self._lock():
            yield
        self._commits += 1
        if self._commits % CHECKPOINT_EVERY == 0:
            checkpointer = self._checkpointer
            if checkpointer.pid != os.getpid():  # forked: the parent's thread is not here
                self._stop.detach()
                checkpointer = self._checkpointer = Checkpointer(self._engine, self._lock)
                self._stop = weakref.finalize(self, checkpointer.close, False)
            checkpointer.poke()

    def close(self) -> None:
        """Stop the checkpoint thread."""
        self._stop.detach()
        self._checkpointer.close()


class SQLiteBudgets(BudgetBackend):
    """One kept connection per process; threads queue on an in-process writer lock."""

    def __init__(self, engine: Engine) -> None:
        """Budget operations on a SQLite engine."""
        super().__init__(KeptConnections(engine, max_idle=1, prepare=_prepare, release=_release))
        self.engine = engine
        self._lock_key = str(engine.url)
        _WRITER_LOCKS.setdefault(self._lock_key, threading.Lock())  # atomic under the GIL
        self._wal: bool | None = None  # known at the first connection
        self._commits = 0
        self._writer_lock = functools.partial(_writer_lock, self._lock_key)
        self._checkpointer = Checkpointer(engine, self._writer_lock)
        # Not waiting: a finalizer may run on a thread that holds the lock a checkpoint needs.
        self._stop_checkpointer = weakref.finalize(self, self._checkpointer.close, False)
        self._upserts: dict[int, str] = {}

    def close(self) -> None:
        """Stop the checkpointer and return the connection."""
        self._stop_checkpointer.detach()
        self._checkpointer.close()
        super().close()

    def _checkpoint_soon(self) -> None:
        checkpointer = self._checkpointer
        if checkpointer.pid != os.getpid():  # forked: the parent's thread does not exist here
            self._stop_checkpointer.detach()
            checkpointer = self._checkpointer = Checkpointer(self.engine, self._writer_lock)
            self._stop_checkpointer = weakref.finalize(self, checkpointer.close, False)
        checkpointer.poke()

    def _connection(self) -> Any:
        """The kept connection (call with the lock held); SQLite connections do not go stale."""
        connections = self.connections
        idle = connections.kept.idle
        if idle and connections.pid == os.getpid():
            return idle[0].driver_connection
        with connections.connection() as conn:  # checks out (or, after a fork, replaces) it
            if self._wal is None:
                self._wal = _in_wal_mode(conn)
            return conn

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with _budget_turn(self._lock_key):
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

    def _read(self, sql: str, params: Sequence[Any]) -> list[Any]:
        def attempt() -> list[Any]:
            with _WRITER_LOCKS[self._lock_key]:
                rows: list[Any] = self._connection().execute(sql, params).fetchall()
                return rows

        return self.connections.run("read", attempt)

    @staticmethod
    def _counters(cursor: Any) -> dict[str, CounterRow]:
        return {
            key: CounterRow(unit, Decimal(limit), Decimal(spent), Decimal(reserved), end)
            for key, unit, limit, spent, reserved, end in cursor.fetchall()
        }

    @staticmethod
    def _query_counters(conn: Any, keys: list[str]) -> Any:
        marks = ", ".join("?" * len(keys))
        return conn.execute(
            f"SELECT {_COLUMNS} FROM {_COUNTERS} WHERE counter_key IN ({marks})", keys
        )

    @staticmethod
    def _read_for_reserve(
        conn: Any, keys: list[str], call_id: str
    ) -> tuple[dict[str, CounterRow], Any]:
        """The counters, and the call's stored reservation (state, claims) if any: one query."""
        marks = ", ".join("?" * len(keys))
        rows = conn.execute(
            f"SELECT 0, {_COLUMNS} FROM {_COUNTERS} WHERE counter_key IN ({marks})"
            f" UNION ALL SELECT 1, state, claims, NULL, NULL, NULL, NULL FROM {_RESERVATIONS}"
            " WHERE call_id = ?",
            (*keys, call_id),
        ).fetchall()
        counters: dict[str, CounterRow] = {}
        existing = None
        for is_reservation, key, unit, limit, spent, reserved, end in rows:
            if is_reservation:
                existing = (key, unit)
            else:
                limit, spent, reserved = Decimal(limit), Decimal(spent), Decimal(reserved)
                counters[key] = CounterRow(unit, limit, spent, reserved, end)
        return counters, existing

    def _write_counters(self, conn: Any, counters: Mapping[str, CounterRow], now: str) -> None:
        """Upsert counters, in key order, with one statement."""
        if not counters:
            return
        params: list[Any] = []
        for key, c in sorted(counters.items()):
            end = c.window_end  # as read back (text), or a claim's datetime
            if end is not None and not isinstance(end, str):
                end = _text_time(end)
            limit, spent = format(c.limit, "f"), format(c.spent, "f")
            params += (key, c.unit, limit, spent, format(c.reserved, "f"), end, now)
        sql = self._upserts.get(len(counters))
        if sql is None:
            row = "(?, ?, ?, ?, ?, ?, ?)"
            sql = self._upserts[len(counters)] = (
                f"INSERT INTO {_COUNTERS} ({_COLUMNS}, updated_at) VALUES "
                + ", ".join([row] * len(counters))
                + ' ON CONFLICT (counter_key) DO UPDATE SET "limit" = excluded."limit",'
                " spent = excluded.spent, reserved = excluded.reserved,"
                " window_end = excluded.window_end, updated_at = excluded.updated_at"
            )
        conn.execute(sql, params)

    # -- operations ---------------------------------------------------------------------

    def reserve(
        self,
        call_id: str,
        claims: Sequence[Claim],
        trace_id: str | None,
        now: datetime,
        ttl: timedelta,
        worker_id: str | None,
    ) -> ReserveResult:
        """Check and reserve in one `BEGIN IMMEDIATE` transaction."""
        keys = sorted(c.counter_key for c in claims)

        def attempt() -> ReserveResult:
            with self._transaction() as conn:
                counters, existing = self._read_for_reserve(conn, keys, call_id)
                if existing is not None:
                    return replayed(call_id, existing[0], json.loads(existing[1]))
                result, writes, records = plan_reserve(call_id, claims, counters)
                if result.granted:
                    stamp = _text_time(now)
                    assert stamp is not None
                    self._write_counters(conn, writes, stamp)
                    conn.execute(
                        _SQL_INSERT_RESERVATION,
                        (call_id, trace_id, json.dumps(records), stamp, _seconds(ttl), worker_id),
                    )
                return result

        return self.connections.run("reservation", attempt)

    def finish(
        self,
        call_id: str,
        now: datetime,
        target: ReservationState,
        charges: Mapping[str, Decimal | None],
    ) -> Settlement:
        """Settle or release in one `BEGIN IMMEDIATE` transaction."""

        def attempt() -> Settlement:
            with self._transaction() as conn:
                found = conn.execute(_SQL_RESERVATION, (call_id,)).fetchone()
                if found is None:
                    return Settlement(call_id, False)
                records = json.loads(found[1])
                keys = sorted(r["counter_key"] for r in records)
                counters = self._counters(self._query_counters(conn, keys)) if keys else {}
                plan = plan_finish(found[0], records, counters, target, charges)
                if plan is None:
                    return Settlement(call_id, False)
                stamp = _text_time(now)
                assert stamp is not None
                self._write_counters(conn, plan.counters, stamp)
                charged = None if plan.actual is None else json.dumps(plan.actual)
                conn.execute(_SQL_FINISH, (target, charged, stamp, call_id))
                return Settlement(call_id, plan.changed, plan.overruns)

        return self.connections.run("settlement" if target == "settled" else "release", attempt)

    def expire(self, at: datetime | None) -> list[str]:
        """Give back due reservations in one transaction (after a cheap unlocked look)."""

        def attempt() -> list[str]:
            with self._transaction() as conn:
                stamp, live = conn.execute(_SQL_CLOCK, (_text_time(at),)).fetchone()
                due = conn.execute(_SQL_EXPIRED, {"at": stamp, "live": live}).fetchall()
                expired = [(call_id, json.loads(claims)) for call_id, claims in due]
                dead = conn.execute(_SQL_DEAD_LEASES, {"live": live}).fetchall()
                conn.execute(_SQL_DROP_DEAD_WORKERS, (live,))
                if dead:
                    self._reap_leases(conn, dead, stamp)
                if not expired:
                    return []
                back = given_back([records for _, records in expired])
                counters = self._counters(self._query_counters(conn, sorted(back)))
                for key, counter in counters.items():
                    counter.reserved = EXACT.subtract(counter.reserved, back[key])
                self._write_counters(conn, counters, stamp)
                for call_id, _ in expired:
                    conn.execute(_SQL_FINISH, ("expired", None, stamp, call_id))
                return [call_id for call_id, _ in expired]

        # A cheap look first: there is usually nothing to expire.
        def look() -> bool:
            with _WRITER_LOCKS[self._lock_key]:
                conn = self._connection()
                stamp, live = conn.execute(_SQL_CLOCK, (_text_time(at),)).fetchone()
                found = conn.execute(_SQL_ANY_EXPIRED, {"at": stamp, "live": live}).fetchall()
                if not found:
                    found = conn.execute(_SQL_DEAD_LEASES + " LIMIT 1", {"live": live}).fetchall()
                return bool(found)

        if not self.connections.run("read", look):
            return []
        return self.connections.run("expiry", attempt)

    def purge(self, finished_before: datetime) -> int:
        """Delete finished reservations in one transaction."""

        def attempt() -> int:
            with self._transaction() as conn:
                deleted: int = conn.execute(_SQL_PURGE, (_text_time(finished_before),)).rowcount
                return deleted

        return self.connections.run("purge", attempt)

    def purge_older(self, retention: timedelta, batch: int) -> int:
        """Delete one batch of old finished reservations in one transaction."""

        def attempt() -> int:
            with self._transaction() as conn:
                params = (_seconds(-retention), batch)
                deleted: int = conn.execute(_SQL_PURGE_OLDER, params).rowcount
                return deleted

        return self.connections.run("purge", attempt)

    def renew_worker(self, worker_id: str, host: str, pid: int, lease: timedelta) -> bool:
        """Upsert the worker's lease in one short transaction; whether it was still live."""

        def attempt() -> bool:
            with self._transaction() as conn:
                found = conn.execute(_SQL_WORKER_LIVE, (worker_id,)).fetchone()
                conn.execute(_SQL_RENEW_WORKER, (worker_id, host, pid, _seconds(lease)))
                return bool(found and found[0])

        return self.connections.run("lease renewal", attempt)

    def drop_worker(self, worker_id: str) -> None:
        """Delete the worker's lease."""

        def attempt() -> None:
            with self._transaction() as conn:
                conn.execute(_SQL_DROP_WORKER, (worker_id,))

        self.connections.run("lease end", attempt)

    def _reap_leases(self, conn: Any, dead: Sequence[Any], stamp: str) -> None:
        """Give back the leases of dead workers (inside the expiry's transaction)."""
        back: dict[str, Decimal] = {}
        for worker_id, key, amount in dead:
            back[key] = EXACT.add(back.get(key, Decimal(0)), Decimal(amount))
            conn.execute(_SQL_DROP_LEASE, (worker_id, key))
        counters = self._counters(self._query_counters(conn, sorted(back)))
        for key, counter in counters.items():
            counter.reserved = max(Decimal(0), EXACT.subtract(counter.reserved, back[key]))
        self._write_counters(conn, counters, stamp)

    def _leases_of(self, conn: Any, worker_id: str, keys: Sequence[str]) -> dict[str, Decimal]:
        marks = ", ".join("?" * len(keys))
        rows = conn.execute(
            f"SELECT counter_key, amount FROM {_LEASES} WHERE worker_id = ?"
            f" AND counter_key IN ({marks})",
            (worker_id, *keys),
        ).fetchall()
        return {key: Decimal(amount) for key, amount in rows}

    def grow_leases(
        self, worker_id: str, requests: Sequence[LeaseRequest], now: datetime
    ) -> tuple[list[LeaseGrant], list[Refusal]]:
        """Grow in one `BEGIN IMMEDIATE` transaction."""
        keys = sorted(r.claim.counter_key for r in requests)
        stamp = _text_time(now)
        assert stamp is not None

        def attempt() -> tuple[list[LeaseGrant], list[Refusal]]:
            with self._transaction() as conn:
                counters = self._counters(self._query_counters(conn, keys))
                plan = plan_grow(requests, counters, self._leases_of(conn, worker_id, keys))
                if plan.refusals:
                    return [], plan.refusals
                self._write_counters(conn, plan.counters, stamp)
                conn.executemany(
                    _SQL_UPSERT_LEASE,
                    [(worker_id, k, format(v, "f"), stamp) for k, v in sorted(plan.leases.items())],
                )
                return plan.grants, []

        return self.connections.run("lease", attempt)

    def shrink_leases(self, worker_id: str, amounts: Mapping[str, Decimal], now: datetime) -> None:
        """Give back in one `BEGIN IMMEDIATE` transaction."""
        keys = sorted(amounts)
        if not keys:
            return
        stamp = _text_time(now)
        assert stamp is not None

        def attempt() -> None:
            with self._transaction() as conn:
                leases = self._leases_of(conn, worker_id, keys)
                counters = self._counters(self._query_counters(conn, keys))
                rows, after = plan_shrink(amounts, counters, leases)
                self._write_counters(conn, rows, stamp)
                for key, left in after.items():
                    if left > 0:
                        conn.execute(_SQL_UPSERT_LEASE, (worker_id, key, format(left, "f"), stamp))
                    else:
                        conn.execute(_SQL_DROP_LEASE, (worker_id, key))

        self.connections.run("lease return", attempt)

    def counter(self, counter_key: str) -> CounterState | None:
        """A counter's values, tidied."""
        rows = self._read(_SQL_COUNTER, (counter_key,))
        if not rows:
            return None
        spent, reserved, limit = rows[0]
        return CounterState(tidy(Decimal(spent)), tidy(Decimal(reserved)), tidy(Decimal(limit)))

    def reservation_state(self, call_id: str) -> ReservationState | None:
        """A reservation's state."""
        rows = self._read(_SQL_RESERVATION, (call_id,))
        return cast(ReservationState, rows[0][0]) if rows else None


# Module functions, not methods: what the kept connections and the checkpointer hold must not
# refer back to the backend, so that a store dropped without `close()` is freed (and its
# connection returned to the pool) at once by reference counting, not by the cycle collector.


def _writer_lock(key: str) -> threading.Lock:
    return _WRITER_LOCKS[key]


def _in_wal_mode(conn: Any) -> bool:
    return str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal"


def _prepare(fairy: Any) -> None:
    """In WAL mode, move the inline checkpoint to the backstop (see `_checkpointer.py`)."""
    conn = fairy.driver_connection
    if not _in_wal_mode(conn):
        return
    pages = int(conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
    if 0 < pages < WAL_BACKSTOP_PAGES:  # 0: the application checkpoints; leave it alone
        fairy.info[_AUTOCHECKPOINT] = pages
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}")


def _release(fairy: Any) -> None:
    """Undo `_prepare` before a connection goes back to the engine's pool."""
    pages = fairy.info.pop(_AUTOCHECKPOINT, None)
    if pages is not None:
        fairy.driver_connection.execute(f"PRAGMA wal_autocheckpoint={int(pages)}")
