"""SQLModel tables of the ledger, and the exact-decimal column type they use.

Schema versioning: `finops_schema` holds one row with the version this code wrote.
`setup()` creates missing tables (new tables are additive and need no migration), then runs
every step in `MIGRATIONS` above the stored version, in one transaction, and stores the new
version. A database whose version is *newer* than the code is refused with a clear error
rather than written to. See docs/ledger.md.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Numeric, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine
from sqlmodel import Field, SQLModel

SCHEMA_VERSION = 2


class Money(TypeDecorator[Decimal]):
    """Exact USD: NUMERIC(38, 18) where the database has it, canonical text on SQLite.

    SQLite has no decimal type (SQLAlchemy's Numeric goes through float there), so text keeps
    every digit; sums are done in Python with `Decimal`.
    """

    impl = String(64)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """Choose the column type per database."""
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(64))
        return dialect.type_descriptor(Numeric(38, 18, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        """Store a Decimal exactly."""
        if value is None:
            return None
        if dialect.name == "sqlite":
            return format(value, "f")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        """Read back a Decimal."""
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(str(value))


def _json() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class SchemaRow(SQLModel, table=True):
    """The ledger's schema version (one row)."""

    __tablename__ = "finops_schema"
    id: int = Field(default=1, primary_key=True)
    version: int


class RunRow(SQLModel, table=True):
    """One traced run."""

    __tablename__ = "finops_runs"
    trace_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    started_at: datetime = Field(index=True)
    ended_at: datetime | None = None
    status: str = Field(max_length=16)
    error: str | None = Field(default=None, sa_column=Column(Text))
    tags: dict[str, str] = _json()
    thread_id: str | None = Field(default=None, max_length=200, index=True)


class SpanRow(SQLModel, table=True):
    """One span of a run's tree."""

    __tablename__ = "finops_spans"
    span_id: str = Field(primary_key=True, max_length=64)
    trace_id: str = Field(index=True, max_length=64)
    parent_span_id: str | None = Field(default=None, max_length=64)
    name: str = Field(max_length=200)
    kind: str = Field(max_length=16)
    node_path: str | None = Field(default=None, sa_column=Column(Text))
    started_at: datetime
    ended_at: datetime | None = None
    status: str = Field(max_length=16)
    error: str | None = Field(default=None, sa_column=Column(Text))
    tags: dict[str, str] = _json()


class CostEventRow(SQLModel, table=True):
    """One leaf cost (model or tool call); totals are always sums of these."""

    __tablename__ = "finops_cost_events"
    __table_args__ = (
        Index("ix_finops_events_team_created", "team", "created_at"),
        Index("ix_finops_events_project_created", "project", "created_at"),
    )
    event_id: str = Field(primary_key=True, max_length=96)
    trace_id: str = Field(index=True, max_length=64)
    span_id: str = Field(max_length=64)
    kind: str = Field(max_length=8)
    name: str = Field(max_length=200)
    provider: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(index=True)
    node_path: str | None = Field(default=None, sa_column=Column(Text))
    cost: Decimal | None = Field(default=None, sa_column=Column(Money(), nullable=True))
    price_source: str = Field(max_length=120)
    price_version: str = Field(max_length=120)
    model_ref: str | None = Field(default=None, max_length=200)
    uncached_input_tokens: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    cache_read_tokens: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    cache_write_tokens: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    cache_write_1h_tokens: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )
    output_tokens: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    reasoning_tokens: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    units: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    usage_reported: bool = True
    tags: dict[str, str] = _json()
    # Standard tags, denormalised for rollups and chargeback queries.
    team: str | None = Field(default=None, max_length=256)
    project: str | None = Field(default=None, max_length=256)
    cost_center: str | None = Field(default=None, max_length=256)
    agent: str | None = Field(default=None, max_length=256)
    task: str | None = Field(default=None, max_length=256)
    user: str | None = Field(default=None, max_length=256)
    tenant: str | None = Field(default=None, max_length=256)
    environment: str | None = Field(default=None, max_length=256)


class DecisionRow(SQLModel, table=True):
    """One policy decision (allow, warn, deny, pause, shadow, threshold, approved, denied)."""

    __tablename__ = "finops_decisions"
    decision_id: str = Field(primary_key=True, max_length=128)
    trace_id: str = Field(index=True, max_length=64)
    call_id: str | None = Field(default=None, max_length=96)
    action: str = Field(max_length=16)
    rule_id: str | None = Field(default=None, max_length=200)
    policy_version: str = Field(max_length=64)
    created_at: datetime = Field(index=True)
    scope: dict[str, str] = _json()
    limit: Decimal | None = Field(default=None, sa_column=Column(Money(), nullable=True))
    observed: Decimal | None = Field(default=None, sa_column=Column(Money(), nullable=True))
    estimate: Decimal | None = Field(default=None, sa_column=Column(Money(), nullable=True))
    unit: str = Field(max_length=8)
    message: str = Field(default="", sa_column=Column(Text, nullable=False))
    actor: str = Field(max_length=200)
    tags: dict[str, str] = _json()


class ApprovalRow(SQLModel, table=True):
    """A paused run's approval request and its decision."""

    __tablename__ = "finops_approvals"
    approval_id: str = Field(primary_key=True, max_length=64)
    trace_id: str = Field(index=True, max_length=64)
    thread_id: str | None = Field(default=None, max_length=200)
    rule_id: str = Field(max_length=200)
    scope: dict[str, str] = _json()
    unit: str = Field(max_length=8)
    spent: Decimal = Field(sa_column=Column(Money(), nullable=False))
    limit: Decimal = Field(sa_column=Column(Money(), nullable=False))
    estimate: Decimal = Field(sa_column=Column(Money(), nullable=False))
    policy_version: str = Field(max_length=64)
    created_at: datetime = Field(index=True)
    message: str = Field(default="", sa_column=Column(Text, nullable=False))
    status: str = Field(max_length=16, index=True)
    decided_by: str | None = Field(default=None, max_length=200)
    decided_at: datetime | None = None
    reason: str | None = Field(default=None, sa_column=Column(Text))
    extra: Decimal | None = Field(default=None, sa_column=Column(Money(), nullable=True))
    resume_target: str | None = Field(default=None, max_length=400)
    checkpoint_url: str | None = Field(default=None, sa_column=Column(Text))
    counter_key: str | None = Field(default=None, sa_column=Column(Text))
    applied_at: datetime | None = None
    tags: dict[str, str] = _json()
    expires_at: datetime | None = None
    on_expiry: str = Field(default="deny", max_length=16)
    step: str | None = Field(default=None, sa_column=Column(Text))
    approvers: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


MIGRATIONS: dict[int, list[str]] = {
    # version -> SQL statements bringing version-1 up to version (all dialects we support).
    # v2 only added tables (finops_decisions, finops_approvals, budget counters and
    # reservations), which create_all() makes: no statement needed.
    2: [],
}
