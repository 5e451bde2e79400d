"""The ledger: every run, span and cost event, persisted with SQLModel.

`SQLLedger.from_url()` opens SQLite (default, a WAL file) or any SQLAlchemy URL
(PostgreSQL for many workers). Every backend must pass the conformance suite in
`tests/ledger_conformance.py`.
"""

from agent_finops.ledger._records import (
    CostEvent,
    EventKind,
    RunRecord,
    SpanKind,
    SpanRecord,
    SpanStatus,
)
from agent_finops.ledger._schema import SCHEMA_VERSION
from agent_finops.ledger._sql import DEFAULT_URL, RunSummary, SQLLedger, TraceData

__all__ = [
    "DEFAULT_URL",
    "SCHEMA_VERSION",
    "CostEvent",
    "EventKind",
    "RunRecord",
    "RunSummary",
    "SQLLedger",
    "SpanKind",
    "SpanRecord",
    "SpanStatus",
    "TraceData",
]
