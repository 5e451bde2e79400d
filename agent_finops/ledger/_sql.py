"""The SQL ledger: SQLModel tables on SQLite (default, WAL) or any SQLAlchemy URL."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from sqlalchemy import Engine, create_engine, event, insert
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
    SQLAlchemyError,
    StatementError,
)
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel, col, select

from agent_finops.attribution import STANDARD_TAGS
from agent_finops.exceptions import AlreadyDecided, ApprovalNotFound, LedgerError
from agent_finops.ledger._records import (
    ApprovalRecord,
    ApprovalStatus,
    CostEvent,
    DecisionRecord,
    RunRecord,
    SpanRecord,
)
from agent_finops.ledger._schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    ApprovalRow,
    CostEventRow,
    DecisionRow,
    RunRow,
    SchemaRow,
    SpanRow,
)

DEFAULT_URL = "sqlite:///agent-finops.sqlite"
"""Used when neither an argument nor `AGENT_FINOPS_DB_URL` gives a URL."""


@dataclass(frozen=True, slots=True)
class RunSummary:
    """A run and its totals, as `agent-finops runs` lists it."""

    run: RunRecord
    cost: Decimal
    """Sum of known costs."""
    unpriced: int
    """Number of cost events whose price is unknown."""
    model_calls: int
    tool_calls: int


@dataclass(frozen=True, slots=True)
class TraceData:
    """Everything the ledger holds for one run."""

    run: RunRecord
    spans: list[SpanRecord]
    events: list[CostEvent]


class SQLLedger:
    """Ledger on any SQLAlchemy database; thread-safe; writes are idempotent."""

    def __init__(self, engine: Engine, *, auto_setup: bool = True) -> None:
        """Wrap an engine. Prefer `SQLLedger.from_url`."""
        self.engine = engine
        self.dialect = engine.dialect.name
        self._setup_lock = threading.Lock()
        self._ready = False
        self._statements: dict[tuple[str, str], Any] = {}
        if auto_setup:
            self.setup()

    @classmethod
    def from_url(
        cls, url: str | None = None, *, auto_setup: bool = True, **engine_kwargs: Any
    ) -> Self:
        """Open a ledger; also usable as `with SQLLedger.from_url(url) as ledger:`.

        SQLite files get WAL journaling, `synchronous=NORMAL` and a busy timeout so several
        processes can share one file. `sqlite://` (no path) is a private in-memory ledger.
        """
        url = url or DEFAULT_URL
        if url.startswith("sqlite"):
            in_memory = url in ("sqlite://", "sqlite:///:memory:")
            if in_memory:
                engine_kwargs.setdefault("poolclass", StaticPool)
            else:
                path = url.split("///", 1)[1] if "///" in url else ""
                if path:
                    Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine_kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
            engine = create_engine(url, **engine_kwargs)
            _configure_sqlite(engine, wal=not in_memory)
        else:
            engine_kwargs.setdefault("pool_pre_ping", True)
            engine = create_engine(url, **engine_kwargs)
        return cls(engine, auto_setup=auto_setup)

    def __enter__(self) -> Self:
        """Return self; the ledger closes on exit."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the engine."""
        self.close()

    def close(self) -> None:
        """Release connections."""
        self.engine.dispose()

    # -- schema -------------------------------------------------------------------------

    def setup(self) -> None:
        """Create tables and apply migrations; safe to call any number of times."""
        if self._ready:
            return
        with self._setup_lock:
            if self._ready:
                return
            try:
                SQLModel.metadata.create_all(self.engine)
                with Session(self.engine) as session:
                    row = session.get(SchemaRow, 1)
                    if row is None:
                        session.add(SchemaRow(id=1, version=SCHEMA_VERSION))
                    elif row.version > SCHEMA_VERSION:
                        raise LedgerError(
                            f"ledger schema version {row.version} is newer than this "
                            f"agent-finops (supports {SCHEMA_VERSION}); upgrade agent-finops"
                        )
                    elif row.version < SCHEMA_VERSION:
                        for version in range(row.version + 1, SCHEMA_VERSION + 1):
                            for statement in MIGRATIONS.get(version, []):
                                session.connection().exec_driver_sql(statement)
                        row.version = SCHEMA_VERSION
                        session.add(row)
                    session.commit()
            except SQLAlchemyError as exc:
                if _is_duplicate(exc):  # another process created it at the same moment
                    self._ready = True
                    return
                raise LedgerError(f"cannot set up ledger at {self.engine.url!r}: {exc}") from exc
            self._ready = True

    def schema_version(self) -> int:
        """The schema version stored in the database."""
        with Session(self.engine) as session:
            row = session.get(SchemaRow, 1)
            return 0 if row is None else row.version

    # -- writes -------------------------------------------------------------------------

    def write(
        self,
        *,
        runs: Sequence[RunRecord] = (),
        spans: Sequence[SpanRecord] = (),
        events: Sequence[CostEvent] = (),
        decisions: Sequence[DecisionRecord] = (),
    ) -> None:
        """Write records in one transaction: all of them or none.

        Runs and spans are upserted (a later state replaces an earlier one); events and
        decisions are inserted once (a repeated id is ignored).
        """
        if not (runs or spans or events or decisions):
            return
        try:
            with self.engine.begin() as conn:
                if runs:
                    conn.execute(self._upsert(RunRow, "trace_id"), [_row(r) for r in runs])
                if spans:
                    conn.execute(self._upsert(SpanRow, "span_id"), [_row(s) for s in spans])
                if events:
                    conn.execute(self._insert_ignore(CostEventRow), [_event_row(e) for e in events])
                if decisions:
                    conn.execute(self._insert_ignore(DecisionRow), [_row(d) for d in decisions])
        except SQLAlchemyError as exc:
            raise LedgerError(
                f"ledger write failed, nothing written: {exc}", retryable=_retryable(exc)
            ) from exc

    def _upsert(self, model: type[SQLModel], key: str) -> Any:
        # Built once per table: building `on_conflict_do_update` (its `excluded` column
        # proxies) on every batch cost more than executing it.
        cache_key = (model.__name__, key)
        stmt = self._statements.get(cache_key)
        if stmt is None:
            stmt = self._statements[cache_key] = self._build_upsert(model, key)
        return stmt

    def _build_upsert(self, model: type[SQLModel], key: str) -> Any:
        table: Any = model.__table__  # type: ignore[attr-defined]
        stmt: Any
        if self.dialect == "sqlite":
            stmt = sqlite.insert(table)
        elif self.dialect == "postgresql":
            stmt = postgresql.insert(table)
        else:  # pragma: no cover - other databases: plain insert, duplicates raise
            return insert(table)
        updates = {c.name: stmt.excluded[c.name] for c in table.columns if c.name != key}
        return stmt.on_conflict_do_update(index_elements=[key], set_=updates)

    def _insert_ignore(self, model: type[SQLModel]) -> Any:
        cache_key = (model.__name__, "")
        stmt = self._statements.get(cache_key)
        if stmt is None:
            stmt = self._statements[cache_key] = self._build_insert_ignore(model)
        return stmt

    def _build_insert_ignore(self, model: type[SQLModel]) -> Any:
        table: Any = model.__table__  # type: ignore[attr-defined]
        if self.dialect == "sqlite":
            return sqlite.insert(table).on_conflict_do_nothing()
        if self.dialect == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing()
        return insert(table)  # pragma: no cover

    # -- reads --------------------------------------------------------------------------

    def list_runs(self, *, limit: int = 20, thread_id: str | None = None) -> list[RunSummary]:
        """The most recent runs with their totals, newest first (of one thread, if given)."""
        query = select(RunRow).order_by(col(RunRow.started_at).desc()).limit(limit)
        if thread_id is not None:
            query = query.where(RunRow.thread_id == thread_id)
        with Session(self.engine) as session:
            runs = session.exec(query).all()
            ids = [r.trace_id for r in runs]
            event_table: Any = CostEventRow.__table__  # type: ignore[attr-defined]
            rows = (
                session.connection()
                .execute(
                    sa_select(event_table.c.trace_id, event_table.c.kind, event_table.c.cost).where(
                        event_table.c.trace_id.in_(ids)
                    )
                )
                .all()
                if ids
                else []
            )
        cost: dict[str, Decimal] = {i: Decimal(0) for i in ids}
        counts: dict[str, list[int]] = {i: [0, 0, 0] for i in ids}  # unpriced, model, tool
        for trace_id, kind, amount in rows:
            if amount is None:
                counts[trace_id][0] += 1
            else:
                cost[trace_id] += amount
            counts[trace_id][1 if kind == "model" else 2] += 1
        return [RunSummary(_run_record(r), cost[r.trace_id], *counts[r.trace_id]) for r in runs]

    def thread_runs(self, thread_id: str) -> list[RunRecord]:
        """Every run (invocation) of a thread, oldest first."""
        with Session(self.engine) as session:
            rows = session.exec(
                select(RunRow)
                .where(RunRow.thread_id == thread_id)
                .order_by(col(RunRow.started_at))
            ).all()
            return [_run_record(r) for r in rows]

    def resolve_thread_id(self, thread_id_or_prefix: str) -> str | None:
        """A thread id from an id or a unique prefix (None if absent or ambiguous)."""
        with Session(self.engine) as session:
            matches = session.exec(
                select(RunRow.thread_id)
                .where(col(RunRow.thread_id).startswith(thread_id_or_prefix, autoescape=True))
                .distinct()
                .limit(2)
            ).all()
        exact = [m for m in matches if m == thread_id_or_prefix]
        if exact:
            return exact[0]
        return matches[0] if len(matches) == 1 else None

    def resolve_run_id(self, trace_id_or_prefix: str) -> str | None:
        """A full trace id from an id or a unique prefix (None if absent or ambiguous)."""
        with Session(self.engine) as session:
            if session.get(RunRow, trace_id_or_prefix) is not None:
                return trace_id_or_prefix
            matches = session.exec(
                select(RunRow.trace_id)
                .where(col(RunRow.trace_id).startswith(trace_id_or_prefix, autoescape=True))
                .limit(2)
            ).all()
        return matches[0] if len(matches) == 1 else None

    def load_trace(self, trace_id: str) -> TraceData | None:
        """The run, its spans and its cost events, or None if there is no such run."""
        with Session(self.engine) as session:
            run = session.get(RunRow, trace_id)
            if run is None:
                return None
            spans = session.exec(
                select(SpanRow)
                .where(SpanRow.trace_id == trace_id)
                .order_by(col(SpanRow.started_at))
            ).all()
            events = session.exec(
                select(CostEventRow)
                .where(CostEventRow.trace_id == trace_id)
                .order_by(col(CostEventRow.created_at))
            ).all()
            return TraceData(
                run=_run_record(run),
                spans=[_span_record(s) for s in spans],
                events=[_event_record(e) for e in events],
            )

    # -- decisions and approvals ----------------------------------------------------------

    def decisions_for(self, trace_id: str) -> list[DecisionRecord]:
        """Every policy decision recorded for a run, oldest first."""
        with Session(self.engine) as session:
            rows = session.exec(
                select(DecisionRow)
                .where(DecisionRow.trace_id == trace_id)
                .order_by(col(DecisionRow.created_at))
            ).all()
            return [DecisionRecord(**_fields(r, DecisionRecord)) for r in rows]

    def add_approval(self, approval: ApprovalRecord) -> ApprovalRecord:
        """Persist a new approval request (idempotent by `approval_id`)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(self._insert_ignore(ApprovalRow), [asdict(approval)])
        except SQLAlchemyError as exc:
            raise LedgerError(f"cannot record approval request: {exc}") from exc
        stored = self.get_approval(approval.approval_id)
        assert stored is not None
        return stored

    def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        """An approval request by id or unique id prefix."""
        with Session(self.engine) as session:
            row = session.get(ApprovalRow, approval_id)
            if row is None:
                rows = session.exec(
                    select(ApprovalRow)
                    .where(col(ApprovalRow.approval_id).startswith(approval_id, autoescape=True))
                    .limit(2)
                ).all()
                row = rows[0] if len(rows) == 1 else None
            return None if row is None else ApprovalRecord(**_fields(row, ApprovalRecord))

    def list_approvals(
        self,
        *,
        status: ApprovalStatus | None = None,
        trace_id: str | None = None,
        thread_id: str | None = None,
        limit: int = 50,
    ) -> list[ApprovalRecord]:
        """Approval requests, newest first, optionally filtered."""
        query = select(ApprovalRow).order_by(col(ApprovalRow.created_at).desc()).limit(limit)
        if status is not None:
            query = query.where(ApprovalRow.status == status)
        if trace_id is not None:
            query = query.where(ApprovalRow.trace_id == trace_id)
        if thread_id is not None:
            query = query.where(ApprovalRow.thread_id == thread_id)
        with Session(self.engine) as session:
            return [ApprovalRecord(**_fields(r, ApprovalRecord)) for r in session.exec(query).all()]

    def decide_approval(
        self,
        approval_id: str,
        *,
        status: ApprovalStatus,
        by: str,
        at: Any,
        reason: str | None = None,
        extra: Decimal | None = None,
    ) -> ApprovalRecord:
        """Decide a *pending* request, atomically: a request is decided once, by one person.

        Raises `ApprovalNotFound` for an unknown id and `AlreadyDecided` if it was decided.
        """
        found = self.get_approval(approval_id)
        if found is None:
            raise ApprovalNotFound(f"no approval request {approval_id!r}", key=approval_id)
        table: Any = ApprovalRow.__table__  # type: ignore[attr-defined]
        with self.engine.begin() as conn:
            result = conn.execute(
                table.update()
                .where(table.c.approval_id == found.approval_id, table.c.status == "pending")
                .values(status=status, decided_by=by, decided_at=at, reason=reason, extra=extra)
            )
        if result.rowcount != 1:
            current = self.get_approval(found.approval_id) or found
            raise AlreadyDecided(
                found.approval_id,
                status=current.status,
                decided_by=current.decided_by,
                decided_at=current.decided_at,
            )
        decided = self.get_approval(found.approval_id)
        assert decided is not None
        return decided

    def take_decision(
        self, *, thread_id: str | None, trace_id: str | None, at: Any
    ) -> ApprovalRecord | None:
        """The oldest decided, not yet applied request of a run, marked applied atomically.

        Several workers may resume the same thread: exactly one takes each decision.
        """
        table: Any = ApprovalRow.__table__  # type: ignore[attr-defined]
        query = (
            select(ApprovalRow)
            .where(col(ApprovalRow.status).in_(["approved", "denied"]))
            .where(col(ApprovalRow.applied_at).is_(None))
            .order_by(col(ApprovalRow.created_at))
        )
        if thread_id is not None:
            query = query.where(ApprovalRow.thread_id == thread_id)
        else:
            query = query.where(ApprovalRow.trace_id == trace_id)
        with Session(self.engine) as session:
            candidates = [ApprovalRecord(**_fields(r, ApprovalRecord)) for r in session.exec(query)]
        for request in candidates:
            with self.engine.begin() as conn:
                won = conn.execute(
                    table.update()
                    .where(table.c.approval_id == request.approval_id, table.c.applied_at.is_(None))
                    .values(applied_at=at)
                ).rowcount
            if won == 1:
                request.applied_at = at
                return request
        return None

    def has_open_requests(self, *, thread_id: str | None, trace_id: str | None) -> bool:
        """Whether a run has a pending request or a decision it has not taken up yet."""
        query = (
            select(ApprovalRow.approval_id)
            .where(
                (col(ApprovalRow.status) == "pending")
                | (
                    col(ApprovalRow.status).in_(["approved", "denied"])
                    & col(ApprovalRow.applied_at).is_(None)
                )
            )
            .limit(1)
        )
        if thread_id is not None:
            query = query.where(ApprovalRow.thread_id == thread_id)
        else:
            query = query.where(ApprovalRow.trace_id == trace_id)
        with Session(self.engine) as session:
            return session.exec(query).first() is not None

    def mark_applied(self, approval_id: str, *, at: Any) -> None:
        """Record that the run took up this request's decision."""
        table: Any = ApprovalRow.__table__  # type: ignore[attr-defined]
        with self.engine.begin() as conn:
            conn.execute(
                table.update()
                .where(table.c.approval_id == approval_id, table.c.applied_at.is_(None))
                .values(applied_at=at)
            )


def _fields(row: SQLModel, record: type) -> dict[str, Any]:
    names = record.__dataclass_fields__  # type: ignore[attr-defined]
    return {name: getattr(row, name) for name in names}


def _configure_sqlite(engine: Engine, *, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        if wal:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()


def _retryable(exc: SQLAlchemyError) -> bool:
    """False when the database refused the data itself; writing it again cannot work."""
    if isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        return True
    return not isinstance(exc, DataError | IntegrityError | ProgrammingError | StatementError)


def _is_duplicate(exc: SQLAlchemyError) -> bool:
    text = str(exc).lower()
    return "already exists" in text or "unique constraint" in text or "duplicate key" in text


def _row(record: Any) -> dict[str, Any]:
    # Not `dataclasses.asdict`: it deep-copies every tag dict, datetime and Decimal, which
    # was most of the writer's time. The values are only read while the statement runs.
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


def _event_row(e: CostEvent) -> dict[str, Any]:
    row = _row(e)
    for tag in STANDARD_TAGS:
        row[tag] = e.tags.get(tag)
    return row


def _run_record(r: RunRow) -> RunRecord:
    return RunRecord(
        trace_id=r.trace_id,
        name=r.name,
        started_at=r.started_at,
        ended_at=r.ended_at,
        status=r.status,  # type: ignore[arg-type]
        error=r.error,
        tags=dict(r.tags),
        thread_id=r.thread_id,
    )


def _span_record(s: SpanRow) -> SpanRecord:
    return SpanRecord(
        span_id=s.span_id,
        trace_id=s.trace_id,
        parent_span_id=s.parent_span_id,
        name=s.name,
        kind=s.kind,  # type: ignore[arg-type]
        node_path=s.node_path,
        started_at=s.started_at,
        ended_at=s.ended_at,
        status=s.status,  # type: ignore[arg-type]
        error=s.error,
        tags=dict(s.tags),
    )


def _event_record(e: CostEventRow) -> CostEvent:
    return CostEvent(
        event_id=e.event_id,
        trace_id=e.trace_id,
        span_id=e.span_id,
        kind=e.kind,  # type: ignore[arg-type]
        name=e.name,
        provider=e.provider,
        created_at=e.created_at,
        node_path=e.node_path,
        tags=dict(e.tags),
        cost=e.cost,
        price_source=e.price_source,
        price_version=e.price_version,
        model_ref=e.model_ref,
        uncached_input_tokens=e.uncached_input_tokens,
        cache_read_tokens=e.cache_read_tokens,
        cache_write_tokens=e.cache_write_tokens,
        cache_write_1h_tokens=e.cache_write_1h_tokens,
        output_tokens=e.output_tokens,
        reasoning_tokens=e.reasoning_tokens,
        units=e.units,
        usage_reported=e.usage_reported,
    )
