"""The ledger's tables (schema version 7), on the package's own `MetaData`.

Not on `SQLModel.metadata` (the process-global one): creating the ledger's tables must never
create an application's own tables in the ledger's database. SQLAlchemy Core tables, so the
hot paths build no ORM objects. How money is stored is the dialect's say
(`SQLDialect.money_as_text`): dialect specifics live in `_sqlite.py` and `_postgres.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from agent_finops.attribution import STANDARD_TAGS
from agent_finops.ledger._budget import MAX_CALL_ID_LENGTH, MAX_COUNTER_KEY_LENGTH
from agent_finops.ledger._money import MONEY_PLACES, stored_money
from agent_finops.ledger.sql._dialect import dialect_named

__all__ = [
    "CompactTime",
    "Money",
    "UTCDateTime",
    "alert_deliveries",
    "alerts",
    "approvals",
    "budget_counters",
    "budget_leases",
    "budget_workers",
    "cost_events",
    "decisions",
    "metadata",
    "reservations",
    "runs",
    "schema",
    "spans",
]

metadata = MetaData()
"""The ledger's tables, and only them (for `create_all`, or an application's Alembic setup)."""


class Money(TypeDecorator[Decimal]):
    """Exact money: NUMERIC(38, 18) where the database has decimals, canonical text elsewhere.

    SQLite has no decimal type (SQLAlchemy's Numeric goes through float there), so text keeps
    every digit; sums are done in Python with `Decimal`. Every backend applies the same
    quantum (`agent_finops.ledger.MONEY_PLACES`) and range before storing.
    """

    impl = String(64)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """NUMERIC(38, 18) if the database has exact decimals, else text."""
        if dialect_named(dialect.name).money_as_text:
            return dialect.type_descriptor(String(64))
        return dialect.type_descriptor(Numeric(20 + MONEY_PLACES, MONEY_PLACES, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        """Store a Decimal exactly (ValueError if it cannot be stored on every backend)."""
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"money must be a Decimal, got {value!r}")
        value = stored_money(value)
        return format(value, "f") if dialect_named(dialect.name).money_as_text else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        """Read back a Decimal."""
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(str(value))


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes stored as UTC (`TIMESTAMP WITH TIME ZONE` where the database has it).

    A naive datetime is refused (ValueError): the ledger cannot know its zone. Values come
    back aware, in UTC (a database without time zones stores UTC without an offset).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes; convert to UTC."""
        if value is None:
            return None
        if not isinstance(value, datetime) or value.utcoffset() is None:
            raise ValueError(f"a timezone-aware datetime is required, got {value!r}")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Aware, in UTC."""
        if value is None:
            return None
        if value.utcoffset() is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(value: datetime) -> int:
    """An aware datetime as integer microseconds since the Unix epoch (exact); naive refused."""
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"a timezone-aware datetime is required, got {value!r}")
    return (value - _EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    """The aware UTC datetime of `micros`."""
    return _EPOCH + timedelta(microseconds=value)


def _from_stored(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int):
        return from_micros(value)
    moment: datetime = (  # text: SQLAlchemy's DATETIME (a row written before v7)
        datetime.fromisoformat(value) if isinstance(value, str) else value
    )
    if moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class CompactTime(TypeDecorator[datetime]):
    """`UTCDateTime` for the hot tables, as integer microseconds where that is smaller.

    Integer microseconds since the epoch (UTC) where the database has no time type of its
    own (SQLite: 8 bytes a value instead of 26 of ISO text, and no text formatting on the
    writer), `TIMESTAMP WITH TIME ZONE` elsewhere (`SQLDialect.times_as_integers`).

    Exact to the microsecond both ways; naive datetimes are refused (ValueError). Integers
    sort as the moments do, so ranges and ordering work in SQL with bound datetimes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """BIGINT if the dialect stores moments as integers, else `TIMESTAMP WITH TIME ZONE`."""
        if dialect_named(dialect.name).times_as_integers:
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(DateTime(timezone=True))

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any]:
        """Chosen once per dialect: the writer calls it for every value."""
        if dialect_named(dialect.name).times_as_integers:
            return _bind_micros
        impl = DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)

        def bind(value: Any) -> Any:
            moment = _bind_utc(value)
            return moment if impl is None or moment is None else impl(moment)

        return bind

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        """Refuse naive datetimes; integer microseconds or UTC (literal SQL)."""
        if value is None:
            return None
        if dialect_named(dialect.name).times_as_integers:
            return micros(value)
        return _bind_utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Aware, in UTC."""
        return _from_stored(value)


def _bind_micros(value: Any) -> int | None:
    return None if value is None else micros(value)


def _bind_utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"a timezone-aware datetime is required, got {value!r}")
    return value.astimezone(UTC)


def _tags() -> Column[Any]:
    return Column("tags", JSON, nullable=False)


schema = Table(
    "finops_schema",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", Integer, nullable=False),
)
"""One row: the schema version the database was written with."""

runs = Table(
    "finops_runs",
    metadata,
    Column("trace_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("started_at", UTCDateTime, nullable=False, index=True),
    Column("ended_at", UTCDateTime),
    Column("status", String(16), nullable=False),
    Column("error", Text),
    _tags(),
    Column("thread_id", String(200), index=True),
)

spans = Table(
    "finops_spans",
    metadata,
    Column("span_id", String(64), primary_key=True),
    Column("trace_id", String(64), nullable=False, index=True),
    Column("parent_span_id", String(64)),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("node_path", Text),
    Column("started_at", CompactTime, nullable=False),
    Column("ended_at", CompactTime),
    Column("status", String(16), nullable=False),
    Column("error", Text),
    _tags(),
)


def _tokens(name: str, *, added: bool = False) -> Column[Any]:
    # A column added by a migration needs a default for the rows already there.
    return Column(name, BigInteger, nullable=False, server_default=text("0") if added else None)


ROLLUP_INDEX_COLUMNS = (
    "created_at",
    "team",
    "agent",
    "project",
    "cost_center",
    "tenant",
    "environment",
    "user",
    "bucket",
    "kind",
    "cost_nano",
    "cost_rest",
    "uncached_input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "units",
    "trace_id",
    "task",
)

cost_events = Table(
    "finops_cost_events",
    metadata,
    Column("event_id", String(96), primary_key=True),
    Column("trace_id", String(64), nullable=False, index=True),
    Column("span_id", String(64), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("name", String(200), nullable=False),
    Column("provider", String(64)),
    Column("created_at", CompactTime, nullable=False),
    Column("node_path", Text),
    Column("cost", Money),
    Column("price_source", String(120), nullable=False),
    Column("price_version", String(120), nullable=False),
    Column("model_ref", String(200)),
    _tokens("uncached_input_tokens"),
    _tokens("cache_read_tokens"),
    _tokens("cache_write_tokens"),
    _tokens("output_tokens"),
    _tokens("reasoning_tokens"),
    _tokens("units"),
    Column("usage_reported", Boolean, nullable=False),
    _tags(),
    # Standard tags, denormalised for rollups and chargeback queries.
    *(Column(tag, String(256)) for tag in STANDARD_TAGS),
    _tokens("cache_write_1h_tokens", added=True),
    # Schema v4: the bucket, and the cost as two integers that SQL can sum exactly where the
    # database has no decimal type (`cost = cost_nano / 1e9 + cost_rest / 1e18`).
    Column("bucket", String(16)),
    Column("cost_nano", BigInteger),
    Column("cost_rest", BigInteger),
    Column("policy_version", String(64)),
    # Schema v6: the span of a model call that adds nothing to its event, stored on the event
    # (`SpanRecord.on_event`), not as a row of `finops_spans`.
    Column("span_parent_id", String(64)),
    Column("span_name", String(200)),
    Column("span_started_at", CompactTime),
    # Rollups scan a time range reading only this index (SQLite: covering, no table reads
    # for the standard tags, buckets and measures).
    Index("ix_finops_events_rollup", *ROLLUP_INDEX_COLUMNS),
)

decisions = Table(
    "finops_decisions",
    metadata,
    Column("decision_id", String(128), primary_key=True),
    Column("trace_id", String(64), nullable=False, index=True),
    Column("call_id", String(96)),
    Column("action", String(16), nullable=False),
    Column("rule_id", String(200)),
    Column("policy_version", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False, index=True),
    Column("scope", JSON, nullable=False),
    Column("limit", Money),
    Column("observed", Money),
    Column("estimate", Money),
    Column("unit", String(8), nullable=False),
    Column("message", Text, nullable=False),
    Column("actor", String(200), nullable=False),
    _tags(),
)

approvals = Table(
    "finops_approvals",
    metadata,
    Column("approval_id", String(64), primary_key=True),
    Column("trace_id", String(64), nullable=False, index=True),
    Column("thread_id", String(200)),
    Column("rule_id", String(200), nullable=False),
    Column("scope", JSON, nullable=False),
    Column("unit", String(8), nullable=False),
    Column("spent", Money, nullable=False),
    Column("limit", Money, nullable=False),
    Column("estimate", Money, nullable=False),
    Column("policy_version", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False, index=True),
    Column("message", Text, nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("decided_by", String(200)),
    Column("decided_at", UTCDateTime),
    Column("reason", Text),
    Column("extra", Money),
    Column("resume_target", String(400)),
    Column("counter_key", Text),
    Column("applied_at", UTCDateTime),
    _tags(),
    Column("expires_at", UTCDateTime),
    Column("on_expiry", String(16), nullable=False, server_default="deny"),
    Column("approvers", JSON),
    Column("step", Text),
    # Only pending requests are indexed by expiry, so `due_approvals` finds them without a scan.
    Index(
        "ix_finops_approvals_due",
        "expires_at",
        sqlite_where=text("status = 'pending'"),
        postgresql_where=text("status = 'pending'"),
    ),
)

budget_counters = Table(
    "finops_budget_counters",
    metadata,
    Column("counter_key", String(MAX_COUNTER_KEY_LENGTH), primary_key=True),
    Column("unit", String(16), nullable=False),
    Column("limit", Money, nullable=False),
    Column("spent", Money, nullable=False),
    Column("reserved", Money, nullable=False),
    Column("window_end", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    sqlite_with_rowid=False,  # clustered by key: one b-tree, fewer pages
)
"""Spend and outstanding reservations of one budget counter (one rule, scope and window).

`spent` may exceed `limit` when a call cost more than its estimate; `limit` is the one last
claimed (the policy in force)."""

reservations = Table(
    "finops_reservations",
    metadata,
    Column("call_id", String(MAX_CALL_ID_LENGTH), primary_key=True),
    Column("trace_id", String(64)),
    Column("state", String(16), nullable=False),
    Column("claims", JSON, nullable=False),
    Column("actual", JSON),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("worker_id", String(64)),  # schema v4; None: no worker lease, only `expires_at`
    # Only open reservations are indexed, so `expire` finds them without a scan.
    Index(
        "ix_finops_reservations_open",
        "expires_at",
        sqlite_where=text("state = 'reserved'"),
        postgresql_where=text("state = 'reserved'"),
    ),
    # Finished ones by finish time, so the scheduled purge deletes without a scan (v4).
    Index(
        "ix_finops_reservations_finished",
        "finished_at",
        sqlite_where=text("state <> 'reserved'"),
        postgresql_where=text("state <> 'reserved'"),
    ),
    sqlite_with_rowid=False,
)
"""One call's reservation on all its counters; the claims are kept as JSON records.

`expires_at` is on the database's clock; `created_at` and `finished_at` are the caller's."""

budget_workers = Table(
    "finops_budget_workers",
    metadata,
    Column("worker_id", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)
"""A live budget store's lease (schema v4), renewed by its heartbeat on the database's clock.

A reservation with a `worker_id` is reclaimed by `expire` as soon as that worker's lease
ran out (or its row is gone), however long its own TTL."""

alerts = Table(
    "finops_alerts",
    metadata,
    Column("alert_id", String(200), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("scope", JSON, nullable=False),
    Column("window_start", UTCDateTime, nullable=False),
    Column("window_end", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False, index=True),
    Column("severity", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Column("observed", Money),
    Column("expected", Money),
    Column("drivers", JSON, nullable=False),
)
"""Alerts raised (schema v4), one row per alert id: raised once."""

alert_deliveries = Table(
    "finops_alert_deliveries",
    metadata,
    Column("alert_id", String(200), primary_key=True),
    Column("channel", String(200), primary_key=True),
)
"""Which channels an alert reached (schema v4): delivered once per channel."""

budget_leases = Table(
    "finops_budget_leases",
    metadata,
    Column("worker_id", String(64), primary_key=True),
    Column("counter_key", String(MAX_COUNTER_KEY_LENGTH), primary_key=True),
    Column("amount", Money, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    sqlite_with_rowid=False,
)
"""A worker's budget lease on one counter (schema v5): headroom it decides from locally.

Counted in the counter's `reserved`. Charges (written with their cost events) move what
calls consumed out of it; the worker gives back what is left when idle or closing, and the
reaper (`expire`) gives back the leases of workers whose worker lease ran out."""

BUDGET_TABLES = (budget_counters, reservations, budget_workers, budget_leases)
