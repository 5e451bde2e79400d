"""Schema versions and `setup()`: create a new ledger, or bring an older one up to this version.

`finops_schema` holds one row: the version the database was written with. `set_up` first
reads it without a lock; if it is current there is nothing to do. Otherwise, in one
transaction holding the dialect's schema lock (SQLite `BEGIN IMMEDIATE`; a PostgreSQL advisory
lock), so that processes starting together take turns, it reads the version again, runs every
step above it, creates the tables still missing (new tables are additive), and stores
`SCHEMA_VERSION`. A database written by a *newer* agent-finops is refused, never written to.

Steps look at the database before changing it (a column is added only if missing), so a
ledger whose tables were partly created by a later version (a version-1 database gets the
version-3 approvals table from `create_all`) upgrades cleanly.

Versions:
1. runs, spans, cost events.
2. decisions, approvals, budget counters, reservations (new tables only).
3. `finops_runs.thread_id` (indexed; filled from v2's `thread_id` tag),
   `finops_approvals.expires_at` (with an index of pending requests by expiry),
   `finops_cost_events.cache_write_1h_tokens`; `finops_approvals.checkpoint_url` dropped.
4. `finops_cost_events.bucket` (filled from the kind), `.cost_nano` and `.cost_rest` (the
   cost as integers SQL sums exactly; filled from `cost`), `.policy_version`; the rollup
   index (covering the standard tags and the measures, by time) replaces the indexes by
   time, team and project; the `finops_alerts` and `finops_alert_deliveries` tables;
   `finops_reservations.worker_id` and an index of finished reservations by `finished_at`
   (the scheduled purge), and the `finops_budget_workers` table (worker leases).
5. the budget leases table (new table only).
6. `finops_cost_events.span_parent_id`, `.span_name`, `.span_started_at`: a model call's
   span that adds nothing to its event is stored on the event, not as a `finops_spans` row
   (`SpanRecord.on_event`; older rows keep their span rows and read the same).
7. values stored once (`_rows.py`): an event's `span_id` equal to its `event_id` and a span's
   `parent_span_id` equal to its `trace_id` are stored as `''` (older rows' empty or
   `ESCAPE`-prefixed such ids are escaped, so they read the same; their full ids read as
   before), an event's standard tags only in their columns (older rows' JSON still has them:
   reads merge the two); on SQLite, events' and spans' moments become integer
   microseconds (`CompactTime`; the older text rewritten in place).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Index, String, Table, bindparam, case, func, inspect, literal, or_, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import CreateColumn

from agent_finops.exceptions import LedgerError
from agent_finops.ledger._money import split_money
from agent_finops.ledger.sql._dialect import SQLDialect
from agent_finops.ledger.sql._rows import ESCAPE
from agent_finops.ledger.sql._tables import (
    approvals,
    cost_events,
    metadata,
    reservations,
    runs,
    schema,
    spans,
)

__all__ = ["SCHEMA_VERSION", "set_up", "stored_version"]

SCHEMA_VERSION = 7

Step = Callable[[Connection, SQLDialect], None]


def _columns(conn: Connection, table: Table) -> set[str] | None:
    """Column names of `table` in the database, or None if it does not exist."""
    inspector = inspect(conn)
    if not inspector.has_table(table.name):
        return None
    return {c["name"] for c in inspector.get_columns(table.name)}


def _add_column(conn: Connection, table: Table, name: str) -> bool:
    """Add `table.c[name]` as this code defines it, if the table lacks it; whether it did."""
    present = _columns(conn, table)
    if present is None or name in present:
        return False
    column = CreateColumn(table.c[name]).compile(dialect=conn.dialect)
    conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column}")
    return True


def _add_index(conn: Connection, index: Index) -> None:
    assert index.table is not None
    existing = {i["name"] for i in inspect(conn).get_indexes(index.table.name)}
    if index.name not in existing:
        index.create(conn)


def _index(table: Table, name: str) -> Index:
    return next(i for i in table.indexes if i.name == name)


def _to_v2(conn: Connection, dialect: SQLDialect) -> None:
    """Version 2 only added tables: `create_all` makes them."""


def _to_v3(conn: Connection, dialect: SQLDialect) -> None:
    if _add_column(conn, runs, "thread_id"):
        dialect.backfill_thread_ids(conn)
    if _columns(conn, runs) is not None:
        _add_index(conn, _index(runs, "ix_finops_runs_thread_id"))
    _add_column(conn, cost_events, "cache_write_1h_tokens")
    for column in ("expires_at", "on_expiry", "approvers", "step"):
        _add_column(conn, approvals, column)
    present = _columns(conn, approvals)
    if present is not None:
        _add_index(conn, _index(approvals, "ix_finops_approvals_due"))
        if "checkpoint_url" in present:
            dialect.drop_column(conn, approvals.name, "checkpoint_url")


_BACKFILL_BATCH = 5000


def _reservations_v4(conn: Connection) -> None:
    """Reservations: `worker_id` (the worker lease) and the index of finished ones."""
    if _add_column(conn, reservations, "worker_id") or _columns(conn, reservations):
        _add_index(conn, _index(reservations, "ix_finops_reservations_finished"))


def _to_v4(conn: Connection, dialect: SQLDialect) -> None:
    _reservations_v4(conn)  # the workers table is new: `create_all` makes it
    if _columns(conn, cost_events) is None:
        return
    _add_column(conn, cost_events, "bucket")
    _add_column(conn, cost_events, "cost_nano")
    _add_column(conn, cost_events, "cost_rest")
    _add_column(conn, cost_events, "policy_version")
    for old in (
        "ix_finops_events_team_created",
        "ix_finops_events_project_created",
        "ix_finops_cost_events_created_at",
    ):
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {old}")
    _add_index(conn, _index(cost_events, "ix_finops_events_rollup"))
    kind = cost_events.c.kind
    conn.execute(
        cost_events.update()
        .where(cost_events.c.bucket.is_(None))
        .values(
            bucket=case((kind == "model", "tokens"), (kind == "tool", "tools"), else_="compute")
        )
    )
    # The split is computed here, not in SQL, so it is the very one the writer stores.
    key, cost = cost_events.c.event_id, cost_events.c.cost
    update = (
        cost_events.update()
        .where(key == bindparam("key"))
        .values(cost_nano=bindparam("nano"), cost_rest=bindparam("rest"))
    )
    after = ""
    while True:
        rows = conn.execute(
            select(key, cost)
            .where(cost.is_not(None), cost_events.c.cost_rest.is_(None), key > after)
            .order_by(key)
            .limit(_BACKFILL_BATCH)
        ).all()
        if not rows:
            return
        params = []
        for event_id, amount in rows:
            nano, rest = split_money(amount)
            params.append({"key": event_id, "nano": nano, "rest": rest})
        conn.execute(update, params)
        after = rows[-1][0]


def _to_v5(conn: Connection, dialect: SQLDialect) -> None:
    """Budget leases: a new table only (`create_all` makes it)."""


def _to_v6(conn: Connection, dialect: SQLDialect) -> None:
    """The model-call span stored on its event: nullable columns, nothing to fill."""
    for column in ("span_parent_id", "span_name", "span_started_at"):
        _add_column(conn, cost_events, column)


def _escape(conn: Connection, table: Table, name: str) -> None:
    """Escape the values of `name` that v7 would read as 'the same as its base' (`_rows.py`)."""
    column = table.c[name]
    conn.execute(
        table.update()
        .where(or_(column == "", func.substr(column, 1, 1) == ESCAPE))
        .values({name: literal(ESCAPE, String()).concat(column)})
    )


def _to_v7(conn: Connection, dialect: SQLDialect) -> None:
    """Ids stored relative to their row's; SQLite: moments as integers.

    Old ids are escaped where needed; standard tags left in older rows' JSON read the same,
    nothing to rewrite.
    """
    if _columns(conn, cost_events) is not None:
        _escape(conn, cost_events, "span_id")
        for name in ("created_at", "span_started_at"):
            dialect.times_to_integers(conn, cost_events.name, name)
        dialect.refuse_text_times(conn, cost_events.name, ("created_at", "span_started_at"))
    if _columns(conn, spans) is not None:
        _escape(conn, spans, "parent_span_id")
        for name in ("started_at", "ended_at"):
            dialect.times_to_integers(conn, spans.name, name)
        dialect.refuse_text_times(conn, spans.name, ("started_at", "ended_at"))


STEPS: dict[int, Step] = {
    2: _to_v2,
    3: _to_v3,
    4: _to_v4,
    5: _to_v5,
    6: _to_v6,
    7: _to_v7,
}
"""version -> the step that brings a database from version - 1 up to it."""


def stored_version(conn: Connection) -> int | None:
    """The version in `finops_schema`, or None for a database that is not a ledger (yet).

    Ledger tables without a version row are taken to be version 1.
    """
    inspector = inspect(conn)
    if not inspector.has_table(schema.name):
        return 1 if inspector.has_table(runs.name) else None
    found = conn.execute(select(schema.c.version).where(schema.c.id == 1)).scalar()
    if found is None:
        return 1 if inspector.has_table(runs.name) else None
    return int(found)


def _refuse_newer(version: int) -> None:
    if version > SCHEMA_VERSION:
        raise LedgerError(
            f"ledger schema version {version} is newer than this agent-finops (supports "
            f"{SCHEMA_VERSION}); upgrade agent-finops",
            retryable=False,
        )


def set_up(engine: Engine, dialect: SQLDialect) -> None:
    """Create or migrate the ledger's tables (SQLAlchemy errors are the caller's to wrap)."""
    with engine.connect() as conn:
        version = stored_version(conn)
        conn.rollback()
    if version is not None:
        _refuse_newer(version)
        if version == SCHEMA_VERSION:
            return
    with engine.connect() as conn:
        dialect.begin_schema_change(conn)
        try:
            version = stored_version(conn)  # again, under the lock
            if version is not None:
                _refuse_newer(version)
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    STEPS[step](conn, dialect)
            metadata.create_all(conn, checkfirst=True)
            if version != SCHEMA_VERSION:
                conn.execute(schema.delete())
                conn.execute(schema.insert().values(id=1, version=SCHEMA_VERSION))
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
