"""What is specific to the SQL backend: schema versions and migration, URLs, tables, faults.

Everything a backend must do is in the conformance suite (test_ledger_conformance.py); these
tests look at the database itself.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, create_engine, create_mock_engine, event, inspect, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Field, SQLModel

from agent_finops import (
    ConfigurationError,
    CostEvent,
    LedgerError,
    LedgerNotFound,
    NotFound,
    RunRecord,
    SpanRecord,
)
from agent_finops.attribution import STANDARD_TAGS
from agent_finops.conformance import postgres_schema
from agent_finops.ledger import SCHEMA_VERSION, Claim, SQLBudgetStore, SQLLedger
from agent_finops.ledger.sql import metadata

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
D = Decimal
DATA = Path(__file__).parent / "data"
POSTGRES_ENV = "AGENT_FINOPS_TEST_POSTGRES_URL"
FINOPS_TABLES = {
    "finops_schema",
    "finops_runs",
    "finops_spans",
    "finops_cost_events",
    "finops_decisions",
    "finops_approvals",
    "finops_budget_counters",
    "finops_reservations",
    "finops_budget_leases",
    "finops_budget_workers",
    "finops_alerts",
    "finops_alert_deliveries",
}


class AppInvoice(SQLModel, table=True):
    """An application's own table, on the process-global `SQLModel.metadata`."""

    __tablename__ = "app_invoices"
    id: int | None = Field(default=None, primary_key=True)
    amount: str


@pytest.fixture(params=["sqlite-file", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: a SQLite file to be, or a fresh PostgreSQL schema."""
    if request.param == "sqlite-file":
        yield f"sqlite:///{tmp_path}/ledger.sqlite"
        return
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV}")
    with postgres_schema(base) as url:
        yield url


def _event(event_id: str, **kw: Any) -> CostEvent:
    fields: dict[str, Any] = {
        "trace_id": "r-new",
        "span_id": "s",
        "kind": "model",
        "name": "m",
        "provider": None,
        "created_at": T0,
        "node_path": None,
        "tags": {},
        "cost": D("0.5"),
        "price_source": "x",
        "price_version": "y",
    }
    fields.update(kw)
    return CostEvent(event_id=event_id, **fields)


# -- schema versions ------------------------------------------------------------------------


def test_a_new_ledger_is_at_the_current_version(shared_ledger: SQLLedger) -> None:
    assert shared_ledger.schema_version() == SCHEMA_VERSION == 7
    assert set(inspect(shared_ledger.engine).get_table_names()) >= FINOPS_TABLES


def test_newer_schema_is_refused(shared_ledger: SQLLedger) -> None:
    with shared_ledger.engine.begin() as conn:
        conn.execute(text("update finops_schema set version = :v"), {"v": SCHEMA_VERSION + 1})
    fresh = SQLLedger(shared_ledger.engine, auto_setup=False)
    with pytest.raises(LedgerError, match="newer than this agent-finops") as info:
        fresh.setup()
    assert not info.value.retryable


def _v2_rows(dialect: str) -> list[tuple[str, dict[str, Any]]]:
    """A run with v2's magic thread tag, one without, an event and an approval of v2."""
    sqlite_ = dialect == "sqlite"
    when: Any = "2026-11-22 09:00:00.000000" if sqlite_ else T0
    money: Any = "0.5" if sqlite_ else D("0.5")
    truth: Any = 1 if sqlite_ else True
    return [
        (
            "INSERT INTO finops_runs (trace_id, name, started_at, status, tags)"
            " VALUES (:id, 'graph', :when, 'ok', :tags)",
            {"id": "r-old", "when": when, "tags": '{"team": "t", "thread_id": "th-old"}'},
        ),
        (
            "INSERT INTO finops_runs (trace_id, name, started_at, status, tags)"
            " VALUES (:id, 'graph', :when, 'ok', :tags)",
            {"id": "r-plain", "when": when, "tags": '{"team": "t"}'},
        ),
        (
            "INSERT INTO finops_cost_events (event_id, trace_id, span_id, kind, name, created_at,"
            " cost, price_source, price_version, uncached_input_tokens, cache_read_tokens,"
            " cache_write_tokens, output_tokens, reasoning_tokens, units, usage_reported, tags)"
            " VALUES ('e-old', 'r-old', 's', 'model', 'm', :when, :money, 'x', 'y',"
            " 1, 2, 3, 4, 5, 0, :truth, '{}')",
            {"when": when, "money": money, "truth": truth},
        ),
        (
            "INSERT INTO finops_approvals (approval_id, trace_id, thread_id, rule_id, scope, unit,"
            ' spent, "limit", estimate, policy_version, created_at, message, status,'
            " checkpoint_url, tags) VALUES ('ap-old', 'r-old', 'th-old', 'cap', '{}', 'usd',"
            " :money, :money, :money, 'v', :when, '', 'pending', 'sqlite:///ckpt', '{}')",
            {"when": when, "money": money},
        ),
    ]


def test_a_v2_ledger_is_migrated_to_the_current_version(empty_url: str) -> None:
    engine = create_engine(empty_url)
    dialect = engine.dialect.name
    ddl = (DATA / f"ledger_v2_{dialect}.sql").read_text()
    with engine.begin() as conn:
        for statement in ddl.split(";\n"):
            body = "\n".join(x for x in statement.splitlines() if not x.startswith("--")).strip()
            if body:
                conn.exec_driver_sql(body)
        for sql, params in _v2_rows(dialect):
            conn.execute(text(sql), params)
    engine.dispose()

    with SQLLedger.from_url(empty_url) as ledger:
        assert ledger.schema_version() == SCHEMA_VERSION
        old = ledger.load_trace("r-old")
        assert old.run.thread_id == "th-old"  # filled from v2's magic tag
        assert ledger.load_trace("r-plain").run.thread_id is None
        assert [r.trace_id for r in ledger.thread_runs("th-old")] == ["r-old"]
        (event,) = old.events
        assert (event.cost, event.cache_write_tokens, event.cache_write_1h_tokens) == (
            D("0.5"),
            3,
            0,
        )
        assert event.bucket == "tokens"  # v4: filled from the kind
        # v4: the old event's cost is summed in SQL (its integer parts were backfilled)
        (total,) = ledger.aggregate(windows=[(event.created_at, event.created_at + timedelta(1))])
        assert total.totals.cost == D("0.5")
        with ledger.engine.connect() as conn:
            parts = conn.execute(text("select cost_nano, cost_rest from finops_cost_events")).all()
        assert parts == [(500_000_000, 0)]
        request = ledger.get_approval("ap-old")
        assert (request.expires_at, request.thread_id, request.spent) == (None, "th-old", D("0.5"))
        inspector = inspect(ledger.engine)
        assert "checkpoint_url" not in {
            c["name"] for c in inspector.get_columns("finops_approvals")
        }
        assert "ix_finops_runs_thread_id" in {
            i["name"] for i in inspector.get_indexes("finops_runs")
        }
        assert "ix_finops_approvals_due" in {
            i["name"] for i in inspector.get_indexes("finops_approvals")
        }
        # v3 features work on the migrated tables.
        ledger.write(
            runs=[RunRecord(trace_id="r-new", name="g", started_at=T0, thread_id="th-new")],
            events=[_event("e-new", cache_write_tokens=9, cache_write_1h_tokens=7)],
        )
        assert ledger.load_trace("r-new").events[0].cache_write_1h_tokens == 7
        ledger.decide_approval("ap-old", status="expired", by="expiry", at=T0)
        with ledger.budget_store(clock=lambda: T0) as store:
            assert store.reserve("c1", [Claim("k", "r", "usd", D(1), D("0.2"))], trace_id="t")
    with SQLLedger.from_url(empty_url) as again:  # and again: nothing left to migrate
        assert again.schema_version() == SCHEMA_VERSION
        assert again.resolve_thread_id("th-n") == "th-new"


def _v6_records() -> tuple[RunRecord, list[SpanRecord], list[CostEvent]]:
    """Records whose v6 rows v7 stores differently.

    Ids equal to (or looking like) their base, standard and free-form tags, moments with
    and without microseconds, before 1970.
    """
    early = datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC)
    run = RunRecord(trace_id="r6", name="g", started_at=T0, status="ok", tags={"team": "t"})
    spans = [
        SpanRecord(
            span_id=sid,
            trace_id="r6",
            parent_span_id=parent,
            name="n",
            kind="node",
            node_path="n",
            started_at=start,
            ended_at=end,
            status="ok",
            tags={"team": "t", "free": "f"},
        )
        for sid, parent, start, end in [
            ("r6", None, T0, T0 + timedelta(seconds=9)),
            ("s-node", "r6", T0 + timedelta(microseconds=123_456), None),
            ("s-empty", "", early, early + timedelta(microseconds=1)),
            ("s-esc", "\x01r6", T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)),
            ("s-other", "s-node", T0 + timedelta(seconds=3), T0 + timedelta(seconds=4)),
        ]
    ]
    events = [
        _event(
            eid,
            trace_id="r6",
            span_id=span,
            created_at=T0 + timedelta(seconds=n, microseconds=n * 7),
            tags=tags,
            cost=cost,
            bucket="tokens",
            **extra,
        )
        for n, (eid, span, tags, cost, extra) in enumerate(
            [
                (
                    "e-own",
                    "e-own",
                    {"team": "t", "project": "p", "free": "f"},
                    D("0.5"),
                    {"span_parent_id": "s-node", "span_name": "llm", "span_started_at": early},
                ),
                ("e-empty", "", {"free": "f"}, D("0.25"), {}),
                ("e-esc", "\x01e-esc", {"team": "t"}, None, {}),
                ("e-node", "s-node", {}, D("1.000000000000000001"), {}),
            ]
        )
    ]
    return run, spans, events


_V6_PARTS = {  # cost_nano, cost_rest as v6 stored them (`split_money`)
    "e-own": (500_000_000, 0),
    "e-empty": (250_000_000, 0),
    "e-esc": (None, None),
    "e-node": (1_000_000_000, 1),
}


def _write_v6(url: str, run: RunRecord, spans: list[SpanRecord], events: list[CostEvent]) -> None:
    """A schema-v6 ledger holding the records, with the rows v6's writer made for them."""
    engine = create_engine(url)
    dialect = engine.dialect.name
    ddl = (DATA / f"ledger_v6_{dialect}.sql").read_text()
    money = (lambda v: None if v is None else format(v, "f")) if dialect == "sqlite" else None
    with engine.begin() as conn:
        for statement in ddl.split(";\n"):
            body = "\n".join(x for x in statement.splitlines() if not x.startswith("--")).strip()
            if body:
                conn.exec_driver_sql(body)
        conn.execute(text("INSERT INTO finops_schema (id, version) VALUES (1, 6)"))
        tables = MetaData()
        tables.reflect(conn, only=["finops_runs", "finops_spans", "finops_cost_events"])
        conn.execute(tables.tables["finops_runs"].insert(), [dataclasses.asdict(run)])
        span_rows = [
            {k: v for k, v in dataclasses.asdict(s).items() if k != "on_event"} for s in spans
        ]
        conn.execute(tables.tables["finops_spans"].insert(), span_rows)
        event_rows = []
        for e in events:
            row = dataclasses.asdict(e)
            row.update({tag: e.tags.get(tag) for tag in STANDARD_TAGS})
            row["cost_nano"], row["cost_rest"] = _V6_PARTS[e.event_id]
            if money is not None:
                row["cost"] = money(e.cost)
            event_rows.append(row)
        conn.execute(tables.tables["finops_cost_events"].insert(), event_rows)
    engine.dispose()


def test_a_writer_still_at_v6_is_refused_after_the_migration(tmp_path: Path) -> None:
    """SQLite: text times from a process started before the migration would sort apart."""
    url = f"sqlite:///{tmp_path}/ledger.sqlite"
    run, spans, events = _v6_records()
    _write_v6(url, run, spans, events)
    with SQLLedger.from_url(url) as ledger:
        assert ledger.schema_version() == 7
    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    row = db.execute("SELECT * FROM finops_cost_events LIMIT 1").fetchone()
    columns = [d[0] for d in db.execute("SELECT * FROM finops_cost_events").description]
    as_v6 = dict(zip(columns, row, strict=True))
    as_v6.update(event_id="from-v6", created_at="2025-01-01 12:00:00.000000")
    marks = ", ".join("?" * len(as_v6))
    with pytest.raises(sqlite3.IntegrityError, match="schema v7"):
        db.execute(f"INSERT INTO finops_cost_events VALUES ({marks})", list(as_v6.values()))
    with pytest.raises(sqlite3.IntegrityError, match="schema v7"):
        db.execute("UPDATE finops_spans SET ended_at = '2025-01-01 12:00:00'")
    db.close()


def test_a_v6_ledger_is_migrated_and_reads_back_the_same(empty_url: str) -> None:
    run, spans, events = _v6_records()
    _write_v6(empty_url, run, spans, events)
    with SQLLedger.from_url("sqlite://") as fresh:  # the same records written at v7
        fresh.write(runs=[run], spans=spans, events=events)
        expected = fresh.load_trace("r6")
    day = (T0 - timedelta(days=1), T0 + timedelta(days=1))
    with SQLLedger.from_url(empty_url) as ledger:
        assert ledger.schema_version() == SCHEMA_VERSION == 7
        migrated = ledger.load_trace("r6")
        assert migrated == expected
        assert migrated.events == events
        parents = {x.span_id: x.parent_span_id for x in migrated.spans}
        assert parents == {
            "r6": None,
            "s-node": "r6",
            "s-empty": "",
            "s-esc": "\x01r6",
            "s-other": "s-node",
            "e-own": "s-node",  # the span stored on its event
        }
        assert list(ledger.iter_events(*day)) == events
        groups = ledger.aggregate(by=["team", "free"], windows=[day], where={"team": ["t"]})
        assert {a.group: (a.totals.events, a.totals.cost) for a in groups} == {
            ("t", "f"): (1, D("0.5")),
            ("t", None): (1, D(0)),
        }
        (whole,) = ledger.aggregate(windows=[day])
        assert whole.totals.cost == D("1.750000000000000001")
        # New rows next to the migrated ones: the same records under other ids read the same.
        again = [dataclasses.replace(e, event_id=e.event_id + "-7", trace_id="r7") for e in events]
        ledger.write(events=again)
        assert ledger.load_trace("r6") == expected
        assert list(ledger.iter_events(*day, where={"free": ["f"]}))[-1].event_id == "e-empty-7"
        if ledger.dialect == "sqlite":  # the moments were rewritten as integers
            with ledger.engine.connect() as conn:
                kinds = conn.execute(
                    text(
                        "select distinct typeof(created_at) from finops_cost_events union"
                        " select distinct typeof(started_at) from finops_spans"
                    )
                ).scalars()
                assert set(kinds) == {"integer"}


# -- the ledger's own tables ----------------------------------------------------------------


def test_application_sqlmodel_tables_are_not_created_in_the_ledger(empty_url: str) -> None:
    assert "app_invoices" in SQLModel.metadata.tables  # the application's table exists...
    with SQLLedger.from_url(empty_url) as ledger, ledger.budget_store() as store:
        store.reserve("c1", [Claim("k", "r", "usd", D(1), D("0.2"))], trace_id="t")
        tables = set(inspect(ledger.engine).get_table_names())
    assert "app_invoices" not in tables  # ...but not in the ledger's database
    assert tables == FINOPS_TABLES
    assert not FINOPS_TABLES & set(SQLModel.metadata.tables)


def test_tables_come_with_the_packages_metadata(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/meta.sqlite")
    metadata.create_all(engine)
    assert set(inspect(engine).get_table_names()) == FINOPS_TABLES
    with SQLBudgetStore(engine) as again:  # setup() on existing tables is a no-op
        again.setup()
        assert again.reserve("c1", [Claim("k", "r", "usd", D(1), D("0.1"))], trace_id="t")
    engine.dispose()


def test_other_databases_are_refused() -> None:
    engine = create_mock_engine("mysql://", executor=lambda *_a, **_k: None)
    with pytest.raises(ConfigurationError, match="SQLite and PostgreSQL"):
        SQLBudgetStore(engine, auto_setup=False)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="SQLite and PostgreSQL"):
        SQLLedger(engine, auto_setup=False)  # type: ignore[arg-type]


def test_a_budget_store_gives_its_connections_back(shared_ledger: SQLLedger) -> None:
    store = shared_ledger.budget_store(clock=lambda: T0)
    store.reserve("c1", [Claim("k", "r", "usd", D(1), D("0.1"))], trace_id="t")
    store.settle("c1", {"usd": D("0.05")})
    store.close()
    checked_out = getattr(shared_ledger.engine.pool, "checkedout", lambda: 0)()
    assert checked_out == 0, "the store kept a connection after close()"


def test_a_store_dropped_without_close_gives_its_connections_back_at_once(
    shared_ledger: SQLLedger,
) -> None:
    store = shared_ledger.budget_store(clock=lambda: T0)
    store.reserve("c1", [Claim("k", "r", "usd", D(1), D("0.1"))], trace_id="t")
    del store  # no reference cycle: freed now, not whenever the cycle collector runs
    checked_out = getattr(shared_ledger.engine.pool, "checkedout", lambda: 0)()
    assert checked_out == 0


# -- opening --------------------------------------------------------------------------------


def test_read_only_open_of_a_missing_file_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "ledger.sqlite"
    with pytest.raises(LedgerNotFound, match="no ledger file") as info:
        SQLLedger.from_url(f"sqlite:///{missing}", create=False)
    assert isinstance(info.value, NotFound) and info.value.key == str(missing)
    assert not (tmp_path / "no").exists()
    with pytest.raises(LedgerNotFound):
        SQLLedger.from_url("sqlite://", create=False)


def test_read_only_open_of_a_file_that_is_not_a_ledger(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("create table notes (body text)")
    conn.close()
    with pytest.raises(LedgerNotFound, match="no agent-finops ledger"):
        SQLLedger.from_url(f"sqlite:///{other}", create=False)
    with sqlite3.connect(other) as conn:
        tables = {name for (name,) in conn.execute("select name from sqlite_master")}
    conn.close()
    assert tables == {"notes"}


def test_read_only_open_of_a_ledger(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/l.sqlite"
    with SQLLedger.from_url(url) as ledger:
        ledger.write(runs=[RunRecord(trace_id="r1", name="g", started_at=T0)])
    with SQLLedger.from_url(url, create=False) as ledger:
        assert [s.run.trace_id for s in ledger.list_runs()] == ["r1"]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("not a url", "not a url"),
        ("postgresql+psycopg://u:secret@h:notaport/db", "u:***@h"),
        ("mysql://u@h/db", "mysql://u@h/db"),
        ("postgresql+nosuchdriver://u:secret@h/db", "u:***@h"),
    ],
)
def test_bad_urls_are_configuration_errors_naming_the_url(url: str, shown: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        SQLLedger.from_url(url)
    assert shown in str(info.value) and "secret" not in str(info.value)
    assert info.value.field == "url"


def test_an_unreachable_database_is_a_retryable_ledger_error() -> None:
    # Port 1 on loopback: nothing listens there; the connection is refused at once.
    with pytest.raises(LedgerError, match="cannot set up") as info:
        SQLLedger.from_url(
            "postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 2}
        )
    assert info.value.retryable
    assert not isinstance(info.value, SQLAlchemyError)


# -- faults ---------------------------------------------------------------------------------


def test_no_sqlalchemy_error_escapes_a_read_or_a_budget_call(tmp_path: Path) -> None:
    with SQLLedger.from_url(f"sqlite:///{tmp_path}/l.sqlite") as ledger:
        store = ledger.budget_store(clock=lambda: T0)
        with ledger.engine.begin() as conn:
            for table in ("finops_runs", "finops_approvals", "finops_budget_counters"):
                conn.exec_driver_sql(f"DROP TABLE {table}")
        calls = [
            lambda: ledger.list_runs(),
            lambda: ledger.load_trace("r1"),
            lambda: ledger.resolve_run_id("r"),
            lambda: ledger.get_approval("a"),
            lambda: ledger.due_approvals(T0),
            lambda: ledger.has_open_requests(thread_id="t", trace_id=None),
            lambda: ledger.write(runs=[RunRecord(trace_id="r1", name="g", started_at=T0)]),
            lambda: store.reserve("c1", [Claim("k", "r", "usd", D(1), D("0.1"))], trace_id="t"),
            lambda: store.counter("k"),
        ]
        for call in calls:
            with pytest.raises(LedgerError) as info:
                call()
            assert isinstance(info.value.__cause__, Exception)
        store.close()


def test_a_value_postgresql_refuses_is_not_retryable(shared_ledger: SQLLedger) -> None:
    if shared_ledger.dialect != "postgresql":
        pytest.skip("SQLite does not enforce VARCHAR lengths")
    long_name = _event("e-bad", name="x" * 5000)  # too long for PostgreSQL's column
    with pytest.raises(LedgerError, match="nothing written") as info:
        shared_ledger.write(
            runs=[RunRecord(trace_id="r-new", name="g", started_at=T0)],
            events=[_event("e-good"), long_name],
        )
    assert not info.value.retryable  # the data itself was refused: retrying cannot help
    assert shared_ledger.list_runs() == []


def test_naive_moments_given_to_a_ledger_call_are_refused(shared_ledger: SQLLedger) -> None:
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        shared_ledger.due_approvals(datetime(2026, 11, 22, 9, 0))
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        shared_ledger.take_decision(thread_id="t", trace_id=None, at=datetime(2026, 1, 1))
    assert shared_ledger.due_approvals(T0 + timedelta(days=1)) == []


def test_closing_the_ledger_gives_back_the_connections_its_budget_stores_keep(
    tmp_path: Path,
) -> None:
    ledger = SQLLedger.from_url(f"sqlite:///{tmp_path}/close.sqlite")
    store = ledger.budget_store()
    claim = Claim(
        counter_key="b|*|run=r", rule_id="b", unit="usd", limit=Decimal(1), amount=Decimal("0.1")
    )
    assert store.reserve("call-1", [claim], trace_id="r").granted
    pool: Any = ledger.engine.pool
    assert pool.checkedout() >= 1  # the store keeps its connection between calls
    ledger.close()  # the owner forgot store.close(): nothing may leak
    assert pool.checkedout() == 0
    store.close()  # closing again later is harmless


def test_a_sqlite_batch_is_a_few_statements_not_one_per_row(tmp_path: Path) -> None:
    """sqlite3 lets the GIL go at each statement step: the writer sends multi-row inserts."""
    with SQLLedger.from_url(f"sqlite:///{tmp_path}/l.sqlite") as ledger:
        steps: list[str] = []

        @event.listens_for(ledger.engine, "connect")
        def _trace(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.set_trace_callback(steps.append)

        ledger.engine.dispose()  # new connections, traced
        events = [_event(f"e-{n:03d}", trace_id="r-many") for n in range(300)]
        ledger.write(runs=[RunRecord(trace_id="r-many", name="g", started_at=T0)], events=events)
        inserts = [
            s for s in steps if s.lstrip().upper().startswith("INSERT INTO FINOPS_COST_EVENTS")
        ]
        assert 1 <= len(inserts) <= 300 // 64 + 7  # 64-row statements, then power-of-two rest
        assert [e.event_id for e in ledger.load_trace("r-many").events] == [
            e.event_id for e in events
        ]


@pytest.mark.postgres
def test_a_postgresql_role_without_temporary_tables_still_writes() -> None:
    """The writer's COPY needs a temporary table; a role refused them gets plain inserts."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV}")
    name = f"finops_notemp_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE ROLE {name} LOGIN"))
            conn.execute(text(f"CREATE DATABASE {name}"))
        owner = create_engine(base.rsplit("/", 1)[0] + f"/{name}", isolation_level="AUTOCOMMIT")
        with owner.connect() as conn:  # in that database only: PUBLIC may not make temp tables
            conn.execute(text(f"REVOKE TEMPORARY ON DATABASE {name} FROM PUBLIC"))
            conn.execute(text(f"CREATE SCHEMA ledger AUTHORIZATION {name}"))
        owner.dispose()
        url = base.replace("postgres@", f"{name}@", 1).rsplit("/", 1)[0] + f"/{name}"
        with SQLLedger.from_url(f"{url}?options=-csearch_path%3Dledger") as ledger:
            run = RunRecord(trace_id="r-new", name="g", started_at=T0)
            ledger.write(runs=[run], events=[_event(f"e-{n}") for n in range(5)])
            ledger.write(events=[_event("e-0"), _event("e-5")])  # one again: written once
            assert [e.event_id for e in ledger.load_trace("r-new").events] == [
                f"e-{n}" for n in range(6)
            ]
            with (  # the role really may not
                ledger.engine.connect() as conn,
                pytest.raises(SQLAlchemyError, match="permission denied"),
            ):
                conn.execute(text("CREATE TEMPORARY TABLE t (a int)"))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            conn.execute(text(f"DROP ROLE IF EXISTS {name}"))
        admin.dispose()
