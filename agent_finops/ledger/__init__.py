"""The ledger: every run, span and cost event, persisted with SQLModel.

`SQLLedger.from_url()` opens SQLite (default, a WAL file) or any SQLAlchemy URL
(PostgreSQL for many workers). Every backend must pass the conformance suite in
`tests/ledger_conformance.py`.
"""

from agent_finops.ledger._records import (
    ApprovalRecord,
    ApprovalStatus,
    CostEvent,
    DecisionAction,
    DecisionRecord,
    EventKind,
    RunRecord,
    SpanKind,
    SpanRecord,
    SpanStatus,
)
from agent_finops.ledger._reservations import (
    DEFAULT_RESERVATION_TTL,
    BudgetStore,
    Claim,
    ClaimUsage,
    CounterState,
    Refusal,
    ReserveResult,
)
from agent_finops.ledger._schema import SCHEMA_VERSION
from agent_finops.ledger._sql import DEFAULT_URL, RunSummary, SQLLedger, TraceData

__all__ = [
    "DEFAULT_RESERVATION_TTL",
    "DEFAULT_URL",
    "BudgetStore",
    "Claim",
    "ClaimUsage",
    "CounterState",
    "Refusal",
    "ReserveResult",
    "SCHEMA_VERSION",
    "ApprovalRecord",
    "ApprovalStatus",
    "CostEvent",
    "DecisionAction",
    "DecisionRecord",
    "EventKind",
    "RunRecord",
    "RunSummary",
    "SQLLedger",
    "SpanKind",
    "SpanRecord",
    "SpanStatus",
    "TraceData",
]
