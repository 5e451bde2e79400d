"""`SQLLedger`: the `Ledger` protocol on SQLite (default, a WAL file) or PostgreSQL."""

from __future__ import annotations

import dataclasses
import functools
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, Self, TypeVar, overload

from sqlalchemy import Engine, Table, select
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError

from agent_finops._foreground import step_aside
from agent_finops.attribution import STANDARD_TAGS
from agent_finops.clock import utcnow
from agent_finops.exceptions import (
    AlertNotFound,
    AlreadyDecided,
    ApprovalNotFound,
    ConfigurationError,
    FinOpsError,
    LedgerError,
    LedgerNotFound,
    MissingDependencyError,
    RunNotFound,
)
from agent_finops.ledger._aggregates import Aggregate, Window, check_query
from agent_finops.ledger._base import (
    MAX_CANDIDATES,
    LedgerBase,
    check_aware,
    check_limit,
    check_status,
    one_match,
)
from agent_finops.ledger._budget import (
    DEFAULT_LEASE_FRACTION,
    DEFAULT_LEASE_IDLE,
    DEFAULT_RESERVATION_RETENTION,
    DEFAULT_RESERVATION_TTL,
    DEFAULT_WORKER_LEASE,
    LeaseCharge,
)
from agent_finops.ledger._lease_planning import due_charges
from agent_finops.ledger._leased import LeasedBudgetStore
from agent_finops.ledger._money import EXACT, split_money, stored_money
from agent_finops.ledger._protocol import BudgetStore, ChargeSink, Clock, Ledger
from agent_finops.ledger._records import (
    AlertRecord,
    ApprovalRecord,
    ApprovalStatus,
    CostEvent,
    DecidedStatus,
    DecisionRecord,
    RunRecord,
    RunSummary,
    SpanRecord,
    TraceData,
    bucket_of,
    with_event_spans,
)
from agent_finops.ledger.sql import _aggregates as _sql_aggregates
from agent_finops.ledger.sql._budget_store import DEFAULT_MAX_IDLE_CONNECTIONS, SQLBudgetStore
from agent_finops.ledger.sql._bulk import ASIDE_EVERY, BulkInsert
from agent_finops.ledger.sql._charges import apply_charges
from agent_finops.ledger.sql._copy_insert import CopyInsert
from agent_finops.ledger.sql._dialect import SQLDialect, dialect_named
from agent_finops.ledger.sql._faults import faults, shown_url
from agent_finops.ledger.sql._migrations import set_up, stored_version
from agent_finops.ledger.sql._rows import (
    EVENT_COLUMNS,
    SPAN_COLUMNS,
    event_from,
    extra_tags,
    relative,
    span_from,
)
from agent_finops.ledger.sql._tables import alert_deliveries as _deliveries
from agent_finops.ledger.sql._tables import alerts as _alerts
from agent_finops.ledger.sql._tables import approvals as _approvals
from agent_finops.ledger.sql._tables import cost_events as _events
from agent_finops.ledger.sql._tables import decisions as _decisions
from agent_finops.ledger.sql._tables import runs as _runs
from agent_finops.ledger.sql._tables import spans as _spans

__all__ = ["DEFAULT_URL", "LedgerSource", "SQLLedger"]

DEFAULT_URL = "sqlite:///agent-finops.sqlite"
"""Used when neither an argument nor `AGENT_FINOPS_DB_URL` gives a URL."""
_DECIDED = ("approved", "denied", "expired")
_R = TypeVar("_R")
_MAY_CREATE_TEMPORARY = "SELECT has_database_privilege(current_database(), 'TEMPORARY')"


def _columns(table: Table, record: Any) -> list[Any]:
    """The table's columns that are fields of `record`, in field order."""
    return [table.c[f.name] for f in dataclasses.fields(record) if f.name in table.c]


_RUN_COLUMNS = _columns(_runs, RunRecord)
_DECISION_COLUMNS = _columns(_decisions, DecisionRecord)
_APPROVAL_COLUMNS = _columns(_approvals, ApprovalRecord)


_GIVE_WAY = 3
"""Times a write rolls back for a budget transaction waiting on its lock, then goes on."""
_GIVE_WAY_WAIT = 0.05
"""Seconds a write that gave way waits at most for the budget transactions to take the lock."""


class _GiveWay(Exception):
    """Raised inside a write transaction to roll it back and let a budget transaction in."""


class SQLLedger(LedgerBase):
    """A `Ledger` on SQLite or PostgreSQL, through SQLAlchemy Core; thread-safe.

    `SQLLedger.from_url(url)` opens one; `budget_store()` gives a `BudgetStore` on the same
    database. `engine` is the SQLAlchemy engine (for your own queries and for tests).
    """

    def __init__(self, engine: Engine, *, auto_setup: bool = True) -> None:
        """Wrap an engine (SQLite or PostgreSQL). Prefer `SQLLedger.from_url`."""
        self.engine = engine
        self.dialect: str = engine.dialect.name
        """The database's SQLAlchemy dialect name: `sqlite` or `postgresql`."""
        self._sql: SQLDialect = dialect_named(self.dialect)
        self._writes = self._sql.ledger_writes(engine)
        self._setup_lock = threading.Lock()
        self._stores: weakref.WeakSet[SQLBudgetStore] = weakref.WeakSet()
        self._leased: weakref.WeakSet[LeasedBudgetStore] = weakref.WeakSet()
        self._ready = False
        self._statements: dict[tuple[str, str], Any] = {}
        self._bulks: dict[tuple[str, str], BulkInsert | CopyInsert] = {}
        self._copy: bool | None = None
        self._source: LedgerSource | None = None
        if auto_setup:
            self.setup()

    @classmethod
    def from_url(
        cls,
        url: str | None = None,
        *,
        create: bool = True,
        auto_setup: bool = True,
        **engine_kwargs: Any,
    ) -> Self:
        """Open a ledger; also usable as `with SQLLedger.from_url(url) as ledger:`.

        SQLite files get WAL journaling, `synchronous=NORMAL` and a busy timeout so several
        processes can share one file; `sqlite://` (no path) is a private in-memory ledger.
        `postgresql+psycopg://...` opens PostgreSQL (`pip install 'agent-finops[postgres]'`).

        With `create=False` (read-only commands) nothing is created: a SQLite path that does
        not exist, or a database without ledger tables, raises `LedgerNotFound`. A malformed
        or unsupported URL raises `ConfigurationError` naming it; a database that cannot be
        reached raises `LedgerError`.
        """
        text = url or DEFAULT_URL
        parsed = _parse(text)
        dialect = dialect_named(parsed.get_backend_name(), url=shown_url(text))
        given = dict(engine_kwargs)  # before the dialect adds its defaults to them
        try:
            engine = dialect.create_engine(parsed, create=create, engine_kwargs=engine_kwargs)
        except FinOpsError:
            raise
        except ImportError as exc:
            raise MissingDependencyError(
                f"cannot open {shown_url(text)}: {exc} (for PostgreSQL: "
                "pip install 'agent-finops[postgres]')"
            ) from exc
        except (ArgumentError, TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"cannot open ledger URL {shown_url(text)}: {exc}", field="url"
            ) from exc
        ledger = cls(engine, auto_setup=False)
        if not dialect.private_database(engine.url):
            ledger._source = LedgerSource(text, given, create, auto_setup)
        try:
            if not create:
                ledger._require_ledger()
            if auto_setup:
                ledger.setup()
        except BaseException:
            engine.dispose()
            raise
        return ledger

    @property
    def source(self) -> LedgerSource | None:
        """How this ledger was opened: what another process needs to open the same one.

        For `CostTracker(writer="process")`. None for an in-memory SQLite ledger (another
        process would open a database of its own) or a ledger wrapped around an engine.
        """
        return self._source

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        """Release connections, those the budget stores it gave out keep included."""
        for leased in list(self._leased):
            leased.close()  # first: it gives its budget leases back through its backing store
        for store in list(self._stores):
            store.close()  # idempotent: a store already closed by its owner stays closed
        self._writes.close()
        self.engine.dispose()

    # -- schema -------------------------------------------------------------------------

    def setup(self) -> None:
        """Create tables or migrate them to `SCHEMA_VERSION`; safe to call any number of times."""
        if self._ready:
            return
        with self._setup_lock:
            if self._ready:
                return
            with faults(f"cannot set up the ledger at {self.url}"):
                set_up(self.engine, self._sql)
            self._ready = True

    def schema_version(self) -> int:
        """The schema version stored in the database (0 before `setup()`)."""
        with faults("cannot read the ledger's schema version"), self.engine.connect() as conn:
            return stored_version(conn) or 0

    def _require_ledger(self) -> None:
        with faults(f"cannot open the ledger at {self.url}"), self.engine.connect() as conn:
            if stored_version(conn) is None:
                raise LedgerNotFound(f"no agent-finops ledger at {self.url}", key=self.url)

    @contextmanager
    def _reading(self, what: str) -> Iterator[Connection]:
        with faults(f"cannot read {what} from the ledger"), self.engine.connect() as conn:
            yield conn

    # -- writes -------------------------------------------------------------------------

    def write(
        self,
        *,
        runs: Sequence[RunRecord] = (),
        spans: Sequence[SpanRecord] = (),
        events: Sequence[CostEvent] = (),
        decisions: Sequence[DecisionRecord] = (),
        charges: Sequence[LeaseCharge] = (),
    ) -> None:
        """Write records in one transaction: all of them or none (see `Ledger.write`)."""
        if not (runs or spans or events or decisions or charges):
            return
        # Runs and spans (upserted, and the rows concurrent writers share) go in key order,
        # so writers of overlapping batches lock them in one order; one given twice in a batch
        # is written in its last state (one statement cannot upsert a row twice). Events and
        # decisions keep their order: it breaks ties of their timestamps when read back.
        # Every value is bound before the transaction: the write lock (which budget grows
        # wait on) is held for the statements alone.
        with faults("ledger write failed, nothing written"):
            # Until the transaction begins, the work steps aside for this process's budget
            # calls in flight (`agent_finops._foreground`): their answers need the GIL.
            steps: list[Callable[[Connection], object]] = []
            if runs:
                latest = {r.trace_id: r for r in runs}
                run_rows = _built([latest[k] for k in sorted(latest)], _row)
                steps.append(self._prepared(_runs, run_rows, "trace_id"))
            # A span stored on its call's event (`SpanRecord.on_event`) has no row of its own.
            last = {s.span_id: s for s in spans if not s.on_event}
            if last:
                span_rows = _built([last[k] for k in sorted(last)], _span_row)
                steps.append(self._prepared(_spans, span_rows, "span_id"))
            inserted: set[str] = set()
            if events:
                shared: _SharedTags = {}
                rows = _built(events, lambda e: _event_row(e, shared))
                if charges:  # which events are new decides which charges apply
                    steps.append(lambda conn: inserted.update(self._insert_new_events(conn, rows)))
                else:
                    steps.append(self._prepared(_events, rows))
            if decisions:
                steps.append(self._prepared(_decisions, _built(decisions, _row)))
            # In the transaction, before the charges: on PostgreSQL the rows locked so far
            # are none a budget call takes; on SQLite the file's write lock is (it gives way).
            aside = self.dialect != "sqlite"
            for attempt in range(_GIVE_WAY + 1):
                inserted.clear()
                try:
                    with self._writes.writing(), self.engine.begin() as conn:
                        if charges:
                            self._sql.lock_for_budget_write(conn)
                        for step in steps:
                            if attempt < _GIVE_WAY and self._writes.contended():
                                raise _GiveWay
                            if aside:  # no lock a budget call needs is held yet
                                step_aside()
                            step(conn)
                        if charges:
                            written = {e.event_id for e in events}
                            due = due_charges(charges, written, inserted)
                            apply_charges(conn, due, utcnow())
                    return
                except _GiveWay:  # rolled back: a budget transaction goes first
                    self._writes.wait_uncontended(_GIVE_WAY_WAIT)

    def _prepared(
        self, table: Table, rows: list[dict[str, Any]], key: str = ""
    ) -> Callable[[Connection], None]:
        """The bulk insert of `rows` into `table`, its values bound now (see `write`)."""
        bulk = self._bulk(table, key)
        return functools.partial(bulk.send, params=bulk.prepare(rows, aside=True))

    def _insert_new_events(self, conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
        """Insert `rows` (insert-or-ignore); the ids of those this write inserted.

        SQLite: the write holds the file's write lock (`lock_for_budget_write`), so the ids
        already stored are read first and the rows go through the precompiled bulk insert
        (an insert with RETURNING runs SQLAlchemy's per-row execution path). PostgreSQL:
        concurrent writers may insert the same event between a read and the insert, so the
        insert's RETURNING says what this write inserted (one `executemany`).
        """
        if self.dialect != "sqlite":
            return self._bulk(_events, conn=conn).insert_returning(conn, rows, "event_id")
        ids = list(dict.fromkeys(r["event_id"] for r in rows))
        stored: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            found = conn.exec_driver_sql(
                f"SELECT event_id FROM {_events.name} WHERE event_id IN ({marks})", tuple(chunk)
            )
            stored.update(found.scalars())
        self._bulk(_events, conn=conn).execute(conn, rows)
        return {i for i in ids if i not in stored}

    def _bulk(
        self, table: Table, key: str = "", conn: Connection | None = None
    ) -> BulkInsert | CopyInsert:
        """The writer's upsert on `key` (insert-or-ignore without one), compiled once.

        A `CopyInsert` (COPY into a temporary table, then one INSERT ... SELECT) where the
        ledger can use one (`_copies`): psycopg's `executemany` cost the writer 2-3x the CPU.
        """
        bulk = self._bulks.get((table.name, key))
        if bulk is None:
            dialect = self.engine.dialect
            if self._copies(conn):
                bulk = CopyInsert(table, functools.partial(_on_conflict, table, key), dialect)
            else:
                bulk = BulkInsert(self._conflicting(table, key), table, dialect)
            self._bulks[table.name, key] = bulk
        return bulk

    def _copies(self, conn: Connection | None) -> bool:
        """Whether the writer's inserts go through COPY (asked once, on `conn` if given).

        PostgreSQL through psycopg, for a role that may create temporary tables (a database
        may refuse them: `REVOKE TEMPORARY ... FROM PUBLIC`).
        """
        if self._copy is None:
            dialect = self.engine.dialect
            if dialect.name != "postgresql" or dialect.driver != "psycopg":
                self._copy = False
            elif conn is not None:
                self._copy = bool(conn.exec_driver_sql(_MAY_CREATE_TEMPORARY).scalar())
            else:
                with self.engine.connect() as own:
                    self._copy = bool(own.exec_driver_sql(_MAY_CREATE_TEMPORARY).scalar())
        return self._copy

    def _conflicting(self, table: Table, key: str = "") -> Any:
        """The insert into `table`: an upsert on `key`, insert-or-ignore without one.

        Built once per table: building `on_conflict_do_update` (its `excluded` column
        proxies) on every batch cost more than executing it.
        """
        stmt = self._statements.get((table.name, key))
        if stmt is None:
            stmt = self._statements[table.name, key] = _on_conflict(
                table, key, self._sql.insert(table)
            )
        return stmt

    # -- runs ---------------------------------------------------------------------------

    def list_runs(self, *, limit: int = 20, thread_id: str | None = None) -> list[RunSummary]:
        """See `Ledger.list_runs`."""
        check_limit(limit)
        query = select(*_RUN_COLUMNS).order_by(_runs.c.started_at.desc()).limit(limit)
        if thread_id is not None:
            query = query.where(_runs.c.thread_id == thread_id)
        with self._reading("runs") as conn:
            found = [RunRecord(**row._mapping) for row in conn.execute(query)]
            ids = [r.trace_id for r in found]
            rows = (
                conn.execute(
                    select(_events.c.trace_id, _events.c.kind, _events.c.cost).where(
                        _events.c.trace_id.in_(ids)
                    )
                ).all()
                if ids
                else []
            )
        cost: dict[str, Decimal] = {i: Decimal(0) for i in ids}
        counts: dict[str, list[int]] = {i: [0, 0, 0] for i in ids}  # unpriced, model, tool
        for trace_id, kind, amount in rows:
            if amount is None:
                counts[trace_id][0] += 1
            else:
                cost[trace_id] = EXACT.add(cost[trace_id], amount)
            counts[trace_id][1 if kind == "model" else 2] += 1
        return [RunSummary(r, cost[r.trace_id], *counts[r.trace_id]) for r in found]

    def thread_runs(self, thread_id: str) -> list[RunRecord]:
        """See `Ledger.thread_runs`."""
        query = (
            select(*_RUN_COLUMNS)
            .where(_runs.c.thread_id == thread_id)
            .order_by(_runs.c.started_at, _runs.c.trace_id)
        )
        with self._reading("runs") as conn:
            return [RunRecord(**row._mapping) for row in conn.execute(query)]

    def resolve_run_id(self, id_or_prefix: str) -> str:
        """See `Ledger.resolve_run_id`."""
        key = _runs.c.trace_id
        with self._reading("runs") as conn:
            if conn.execute(select(key).where(key == id_or_prefix)).first() is not None:
                return id_or_prefix
            matches = _prefixed(conn, key, id_or_prefix)
        return one_match(id_or_prefix, matches, RunNotFound, "run")

    def resolve_thread_id(self, id_or_prefix: str) -> str | None:
        """See `Ledger.resolve_thread_id`."""
        key = _runs.c.thread_id
        with self._reading("threads") as conn:
            if conn.execute(select(key).where(key == id_or_prefix).limit(1)).first() is not None:
                return id_or_prefix
            matches = _prefixed(conn, key, id_or_prefix)
        if not matches:
            return None
        return one_match(id_or_prefix, matches, RunNotFound, "thread")

    def load_trace(self, trace_id: str) -> TraceData:
        """See `Ledger.load_trace`."""
        with self._reading("a trace") as conn:
            run = conn.execute(select(*_RUN_COLUMNS).where(_runs.c.trace_id == trace_id)).first()
            if run is None:
                raise RunNotFound(f"no run {trace_id!r} in the ledger", key=trace_id)
            found_spans = conn.execute(
                select(*SPAN_COLUMNS)
                .where(_spans.c.trace_id == trace_id)
                .order_by(_spans.c.started_at)
            )
            spans = [span_from(row._mapping) for row in found_spans]
            found_events = conn.execute(
                select(*EVENT_COLUMNS)
                .where(_events.c.trace_id == trace_id)
                .order_by(_events.c.created_at)
            )
            events = [event_from(row._mapping) for row in found_events]
        return TraceData(
            run=RunRecord(**run._mapping), spans=with_event_spans(spans, events), events=events
        )

    def decisions_for(self, trace_id: str) -> list[DecisionRecord]:
        """See `Ledger.decisions_for`."""
        query = (
            select(*_DECISION_COLUMNS)
            .where(_decisions.c.trace_id == trace_id)
            .order_by(_decisions.c.created_at)
        )
        with self._reading("decisions") as conn:
            return [DecisionRecord(**row._mapping) for row in conn.execute(query)]

    # -- finance ------------------------------------------------------------------------

    def aggregate(
        self,
        *,
        by: Sequence[str] = (),
        windows: Sequence[Window],
        where: Mapping[str, Sequence[str]] | None = None,
        runtime: bool = False,
        distinct: bool = True,
    ) -> list[Aggregate]:
        """See `Ledger.aggregate`: one grouped SQL statement per window."""
        dims, spans, filters = check_query(by, windows, where)
        return _sql_aggregates.aggregate(
            self.engine, self._sql, dims, spans, filters, runtime=runtime, distinct=distinct
        )

    def iter_events(
        self,
        start: datetime,
        end: datetime,
        *,
        where: Mapping[str, Sequence[str]] | None = None,
        batch_size: int = 1000,
    ) -> Iterator[CostEvent]:
        """See `Ledger.iter_events`: keyset pages, a connection only while a page is read."""
        check_limit(batch_size)
        _, _, filters = check_query((), [(start, end)], where)
        return _sql_aggregates.iter_events(self.engine, start, end, filters, batch_size)

    def add_alert(self, alert: AlertRecord) -> bool:
        """See `Ledger.add_alert`."""
        row = {c.name: getattr(alert, c.name) for c in _alerts.columns}
        deliveries = [{"alert_id": alert.alert_id, "channel": c} for c in alert.delivered]
        with faults("cannot record an alert"), self.engine.begin() as conn:
            inserted = self._conflicting(_alerts).returning(_alerts.c.alert_id)
            added = conn.execute(inserted, row).first() is not None
            if added and deliveries:
                conn.execute(self._conflicting(_deliveries), deliveries)
        return added

    def mark_alert_delivered(self, alert_id: str, channel: str) -> None:
        """See `Ledger.mark_alert_delivered`."""
        with faults("cannot record an alert's delivery"), self.engine.begin() as conn:
            known = conn.execute(
                select(_alerts.c.alert_id).where(_alerts.c.alert_id == alert_id)
            ).first()
            if known is None:
                raise AlertNotFound(f"no alert {alert_id!r}", key=alert_id)
            conn.execute(
                self._conflicting(_deliveries), [{"alert_id": alert_id, "channel": channel}]
            )

    def list_alerts(self, *, since: datetime | None = None, limit: int = 50) -> list[AlertRecord]:
        """See `Ledger.list_alerts`."""
        check_limit(limit)
        query = (
            select(*_alerts.columns)
            .order_by(_alerts.c.created_at.desc(), _alerts.c.alert_id.desc())
            .limit(limit)
        )
        if since is not None:
            query = query.where(_alerts.c.created_at >= check_aware(since, "since"))
        with self._reading("alerts") as conn:
            found = [AlertRecord(**row._mapping) for row in conn.execute(query)]
            ids = [a.alert_id for a in found]
            channels: dict[str, list[str]] = {}
            if ids:
                rows = conn.execute(
                    select(_deliveries.c.alert_id, _deliveries.c.channel)
                    .where(_deliveries.c.alert_id.in_(ids))
                    .order_by(_deliveries.c.channel)
                )
                for alert_id, channel in rows:
                    channels.setdefault(alert_id, []).append(channel)
        for alert in found:
            alert.delivered = channels.get(alert.alert_id, [])
        return found

    # -- approvals ----------------------------------------------------------------------

    def add_approval(self, approval: ApprovalRecord) -> ApprovalRecord:
        """See `Ledger.add_approval`."""
        with faults("cannot record approval request"), self.engine.begin() as conn:
            conn.execute(self._conflicting(_approvals), [_row(approval)])
        stored = self.find_approval(approval.approval_id)
        if stored is None:  # pragma: no cover - deleted by hand between the two statements
            raise LedgerError(f"approval request {approval.approval_id} vanished after insert")
        return stored

    def get_approval(self, id_or_prefix: str) -> ApprovalRecord:
        """See `Ledger.get_approval`."""
        key = _approvals.c.approval_id
        with self._reading("approval requests") as conn:
            row = conn.execute(select(*_APPROVAL_COLUMNS).where(key == id_or_prefix)).first()
            if row is None:
                matches = _prefixed(conn, key, id_or_prefix)
                found = one_match(id_or_prefix, matches, ApprovalNotFound, "approval request")
                row = conn.execute(select(*_APPROVAL_COLUMNS).where(key == found)).first()
        if row is None:  # pragma: no cover - deleted by hand between the two statements
            raise ApprovalNotFound(f"no approval request {id_or_prefix!r}", key=id_or_prefix)
        return ApprovalRecord(**row._mapping)

    def find_approval(self, approval_id: str) -> ApprovalRecord | None:
        """See `Ledger.find_approval`."""
        query = select(*_APPROVAL_COLUMNS).where(_approvals.c.approval_id == approval_id)
        with self._reading("approval requests") as conn:
            row = conn.execute(query).first()
        return None if row is None else ApprovalRecord(**row._mapping)

    def list_approvals(
        self,
        *,
        status: ApprovalStatus | None = None,
        trace_id: str | None = None,
        thread_id: str | None = None,
        limit: int = 50,
    ) -> list[ApprovalRecord]:
        """See `Ledger.list_approvals`."""
        check_limit(limit)
        query = select(*_APPROVAL_COLUMNS).order_by(_approvals.c.created_at.desc()).limit(limit)
        if status is not None:
            query = query.where(_approvals.c.status == status)
        if trace_id is not None:
            query = query.where(_approvals.c.trace_id == trace_id)
        if thread_id is not None:
            query = query.where(_approvals.c.thread_id == thread_id)
        with self._reading("approval requests") as conn:
            return [ApprovalRecord(**row._mapping) for row in conn.execute(query)]

    def due_approvals(self, now: datetime, *, limit: int = 100) -> list[ApprovalRecord]:
        """See `Ledger.due_approvals`."""
        check_limit(limit)
        query = (
            select(*_APPROVAL_COLUMNS)
            .where(
                _approvals.c.status == "pending",
                _approvals.c.expires_at.is_not(None),
                _approvals.c.expires_at <= check_aware(now, "now"),
            )
            .order_by(_approvals.c.expires_at, _approvals.c.approval_id)
            .limit(limit)
        )
        with self._reading("approval requests") as conn:
            return [ApprovalRecord(**row._mapping) for row in conn.execute(query)]

    def decide_approval(
        self,
        approval_id: str,
        *,
        status: DecidedStatus,
        by: str,
        at: datetime,
        reason: str | None = None,
        extra: Decimal | None = None,
    ) -> ApprovalRecord:
        """See `Ledger.decide_approval`."""
        check_status(status)
        at = check_aware(at, "at")
        found = self.get_approval(approval_id)
        table = _approvals
        with faults("cannot record the approval decision"), self.engine.begin() as conn:
            result = conn.execute(
                table.update()
                .where(table.c.approval_id == found.approval_id, table.c.status == "pending")
                .values(status=status, decided_by=by, decided_at=at, reason=reason, extra=extra)
            )
        current = self.find_approval(found.approval_id) or found
        if result.rowcount != 1:
            raise AlreadyDecided(
                found.approval_id,
                status=current.status,
                decided_by=current.decided_by,
                decided_at=current.decided_at,
            )
        return current

    def take_decision(
        self, *, thread_id: str | None, trace_id: str | None, at: datetime
    ) -> ApprovalRecord | None:
        """See `Ledger.take_decision`."""
        at = check_aware(at, "at")
        table = _approvals
        query = (
            select(*_APPROVAL_COLUMNS)
            .where(table.c.status.in_(_DECIDED), table.c.applied_at.is_(None))
            .order_by(table.c.created_at)
        )
        query = query.where(_of_run(thread_id, trace_id))
        with self._reading("approval requests") as conn:
            candidates = [ApprovalRecord(**row._mapping) for row in conn.execute(query)]
        for request in candidates:
            with faults("cannot take up an approval decision"), self.engine.begin() as conn:
                won = conn.execute(
                    table.update()
                    .where(table.c.approval_id == request.approval_id, table.c.applied_at.is_(None))
                    .values(applied_at=at)
                ).rowcount
            if won == 1:
                request.applied_at = at.astimezone(UTC)
                return request
        return None

    def has_open_requests(self, *, thread_id: str | None, trace_id: str | None) -> bool:
        """See `Ledger.has_open_requests`."""
        table = _approvals
        query = (
            select(table.c.approval_id)
            .where(
                (table.c.status == "pending")
                | (table.c.status.in_(_DECIDED) & table.c.applied_at.is_(None))
            )
            .where(_of_run(thread_id, trace_id))
            .limit(1)
        )
        with self._reading("approval requests") as conn:
            return conn.execute(query).first() is not None

    def mark_applied(self, approval_id: str, *, at: datetime) -> None:
        """See `Ledger.mark_applied`."""
        at = check_aware(at, "at")
        table = _approvals
        with faults("cannot mark an approval applied"), self.engine.begin() as conn:
            conn.execute(
                table.update()
                .where(table.c.approval_id == approval_id, table.c.applied_at.is_(None))
                .values(applied_at=at)
            )

    # -- budgets ------------------------------------------------------------------------

    @overload
    def budget_store(
        self,
        *,
        clock: Clock | None = None,
        default_ttl: timedelta = DEFAULT_RESERVATION_TTL,
        worker_lease: timedelta | None = DEFAULT_WORKER_LEASE,
        retention: timedelta | None = DEFAULT_RESERVATION_RETENTION,
        durable_commits: bool = True,
        max_idle_connections: int = DEFAULT_MAX_IDLE_CONNECTIONS,
        leases: Literal[False] = False,
    ) -> SQLBudgetStore: ...

    @overload
    def budget_store(
        self,
        *,
        clock: Clock | None = None,
        default_ttl: timedelta = DEFAULT_RESERVATION_TTL,
        worker_lease: timedelta | None = DEFAULT_WORKER_LEASE,
        retention: timedelta | None = DEFAULT_RESERVATION_RETENTION,
        durable_commits: bool = True,
        max_idle_connections: int = DEFAULT_MAX_IDLE_CONNECTIONS,
        leases: Literal[True],
        charges_to: ChargeSink | None = None,
        lease_fraction: Decimal = DEFAULT_LEASE_FRACTION,
        lease_idle: timedelta | None = DEFAULT_LEASE_IDLE,
    ) -> LeasedBudgetStore: ...

    @overload
    def budget_store(
        self,
        *,
        clock: Clock | None = None,
        default_ttl: timedelta = DEFAULT_RESERVATION_TTL,
        worker_lease: timedelta | None = DEFAULT_WORKER_LEASE,
        retention: timedelta | None = DEFAULT_RESERVATION_RETENTION,
        durable_commits: bool = True,
        max_idle_connections: int = DEFAULT_MAX_IDLE_CONNECTIONS,
        leases: bool = False,
        charges_to: ChargeSink | None = None,
        lease_fraction: Decimal = DEFAULT_LEASE_FRACTION,
        lease_idle: timedelta | None = DEFAULT_LEASE_IDLE,
    ) -> SQLBudgetStore | LeasedBudgetStore: ...

    def budget_store(
        self,
        *,
        clock: Clock | None = None,
        default_ttl: timedelta = DEFAULT_RESERVATION_TTL,
        worker_lease: timedelta | None = DEFAULT_WORKER_LEASE,
        retention: timedelta | None = DEFAULT_RESERVATION_RETENTION,
        durable_commits: bool = True,
        max_idle_connections: int = DEFAULT_MAX_IDLE_CONNECTIONS,
        leases: bool = False,
        charges_to: ChargeSink | None = None,
        lease_fraction: Decimal = DEFAULT_LEASE_FRACTION,
        lease_idle: timedelta | None = DEFAULT_LEASE_IDLE,
    ) -> SQLBudgetStore | LeasedBudgetStore:
        """A budget store on this ledger's database (see `SQLBudgetStore` for the options).

        `leases=True`: a `LeasedBudgetStore` on it, deciding in process from budget leases
        (docs/scaling.md, "Budget leases"); its charges go to `charges_to` (the tracker, so
        each is written with its event), else to a background `LedgerWriter` of its own.
        """
        self.setup()
        store = SQLBudgetStore(
            self.engine,
            auto_setup=False,
            clock=clock,
            default_ttl=default_ttl,
            worker_lease=worker_lease,
            retention=retention,
            durable_commits=durable_commits,
            max_idle_connections=max_idle_connections,
        )
        self._stores.add(store)
        if not leases:
            return store
        if worker_lease is None:
            store.close()
            raise ValueError("budget leases need a worker lease: worker_lease=None was given")
        own_sink = charges_to is None
        if charges_to is None:
            from agent_finops.sinks import ChargeWriter  # the sinks import the ledger

            charges_to = ChargeWriter(self)
        leased = LeasedBudgetStore(
            store,
            charges_to,
            clock=clock,
            default_ttl=default_ttl,
            fraction=lease_fraction,
            idle=lease_idle,
            close_sink=own_sink,
        )
        self._leased.add(leased)
        return leased


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except (ArgumentError, ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"malformed ledger URL {shown_url(str(url))}",
            field="url",
            expected="a SQLAlchemy URL such as sqlite:///agent-finops.sqlite or "
            "postgresql+psycopg://user@host/db",
        ) from exc


def _of_run(thread_id: str | None, trace_id: str | None) -> Any:
    if thread_id is not None:
        return _approvals.c.thread_id == thread_id
    return _approvals.c.trace_id == trace_id


def _prefixed(conn: Connection, key: Any, prefix: str) -> list[str]:
    """Distinct values of `key` starting with `prefix` (LIKE wildcards escaped), sorted."""
    query = (
        select(key)
        .where(key.startswith(prefix, autoescape=True))
        .distinct()
        .order_by(key)
        .limit(MAX_CANDIDATES + 1)
    )
    return [value for (value,) in conn.execute(query)]


@dataclass(frozen=True, slots=True)
class LedgerSource:
    """What `SQLLedger.from_url` was given (the URL with its password)."""

    url: str
    engine_kwargs: dict[str, Any]
    create: bool
    auto_setup: bool


def _on_conflict(table: Table, key: str, insert: Any) -> Any:
    """`insert` as an upsert on `key` (every other column updated), insert-or-ignore without."""
    if not key:
        return insert.on_conflict_do_nothing()
    updates = {c.name: insert.excluded[c.name] for c in table.columns if c.name != key}
    return insert.on_conflict_do_update(index_elements=[key], set_=updates)


def _built(records: Sequence[_R], make: Callable[[_R], dict[str, Any]]) -> list[dict[str, Any]]:
    """`make(record)` for each record, stepping aside for budget calls every `ASIDE_EVERY`."""
    rows = []
    for n, record in enumerate(records):
        if not n % ASIDE_EVERY:
            step_aside()
        rows.append(make(record))
    return rows


def _row(record: Any) -> dict[str, Any]:
    # Not `dataclasses.asdict`: it deep-copies every tag dict, datetime and Decimal, which
    # was most of the writer's time. The values are only read while the statement runs.
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


_SPAN_FIELDS = tuple(c.name for c in SPAN_COLUMNS)


def _span_row(span: SpanRecord) -> dict[str, Any]:
    row = {name: getattr(span, name) for name in _SPAN_FIELDS}  # not `on_event`
    try:
        row["parent_span_id"] = relative(span.parent_span_id, span.trace_id)
    except (TypeError, IndexError) as exc:
        raise LedgerError(
            f"ledger write failed, nothing written: span {span.span_id}: {exc}", retryable=False
        ) from exc
    return row


_SharedTags = dict[int, tuple[Mapping[str, str], dict[str, str]]]


def _event_row(e: CostEvent, shared: _SharedTags) -> dict[str, Any]:
    """`e`'s row; `shared`: the batch's tag dicts by identity (events share their run's)."""
    row = _row(e)
    try:
        tags = e.tags
        for tag in STANDARD_TAGS:
            row[tag] = tags.get(tag)
        seen = shared.get(id(tags))
        if seen is None:  # the dict is kept in `seen`: its id is not reused within the batch
            seen = shared[id(tags)] = (tags, extra_tags(tags))
        row["tags"] = seen[1]  # one dict object for all: its JSON is made once (`BulkInsert`)
        row["span_id"] = relative(e.span_id, e.event_id)
        row["bucket"] = bucket_of(e)
        row["cost_nano"], row["cost_rest"] = split_money(
            None if e.cost is None else stored_money(e.cost)
        )
    except (TypeError, ValueError, ArithmeticError, AttributeError, IndexError) as exc:
        raise LedgerError(
            f"ledger write failed, nothing written: event {e.event_id}: {exc}", retryable=False
        ) from exc
    return row


def _conforms(ledger: SQLLedger, store: SQLBudgetStore) -> tuple[Ledger, BudgetStore]:
    return ledger, store  # the type checker proves here that the backend fits the protocols
