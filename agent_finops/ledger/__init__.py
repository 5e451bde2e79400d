"""The ledger: every run, span, cost event, policy decision and approval request, and budgets.

Two protocols: `Ledger` (records) and `BudgetStore` (atomic budget reservations; get one with
`ledger.budget_store()`). Backends: `InMemoryLedger` (the reference, in this process) and
`SQLLedger` (`SQLLedger.from_url()`: SQLite by default, or PostgreSQL). Every backend passes
the conformance suite in `agent_finops.conformance`; a new one subclasses `LedgerBase` and
`BudgetStoreBase`. See docs/ledger.md.
"""

from agent_finops.ledger._aggregates import (
    BUCKETS,
    FIELD_DIMENSIONS,
    MAX_DIMENSIONS,
    MAX_WINDOWS,
    Aggregate,
    EventTotals,
    Window,
)
from agent_finops.ledger._base import BudgetStoreBase, LedgerBase
from agent_finops.ledger._budget import (
    DEFAULT_LEASE_FRACTION,
    DEFAULT_LEASE_IDLE,
    DEFAULT_RESERVATION_RETENTION,
    DEFAULT_RESERVATION_TTL,
    DEFAULT_WORKER_LEASE,
    Claim,
    ClaimUsage,
    CounterState,
    LeaseCharge,
    LeaseGrant,
    LeaseRequest,
    Overrun,
    Refusal,
    ReservationState,
    ReserveResult,
    Settlement,
    Unit,
)
from agent_finops.ledger._leased import LeaseBackend, LeasedBudgetStore
from agent_finops.ledger._memory import InMemoryBudgetStore, InMemoryLedger
from agent_finops.ledger._money import MONEY_LIMIT, MONEY_PLACES
from agent_finops.ledger._protocol import BudgetStore, ChargeSink, Clock, Ledger
from agent_finops.ledger._records import (
    DEFAULT_BUCKETS,
    AlertKind,
    AlertRecord,
    ApprovalRecord,
    ApprovalStatus,
    CostBucket,
    CostEvent,
    DecidedStatus,
    DecisionAction,
    DecisionRecord,
    EventKind,
    RunRecord,
    RunSummary,
    SpanKind,
    SpanRecord,
    SpanStatus,
    TraceData,
    bucket_of,
    with_event_spans,
)
from agent_finops.ledger.sql import DEFAULT_URL, SCHEMA_VERSION, SQLBudgetStore, SQLLedger

__all__ = [
    # protocols
    "Ledger",
    "BudgetStore",
    "Clock",
    # backends
    "InMemoryLedger",
    "InMemoryBudgetStore",
    "SQLLedger",
    "SQLBudgetStore",
    "DEFAULT_URL",
    "SCHEMA_VERSION",
    # for backend implementers
    "LedgerBase",
    "BudgetStoreBase",
    # records
    "RunRecord",
    "SpanRecord",
    "CostEvent",
    "DecisionRecord",
    "ApprovalRecord",
    "RunSummary",
    "TraceData",
    "SpanKind",
    "SpanStatus",
    "EventKind",
    "DecisionAction",
    "ApprovalStatus",
    "DecidedStatus",
    "MONEY_PLACES",
    "MONEY_LIMIT",
    # finance: aggregates and alerts
    "Aggregate",
    "EventTotals",
    "Window",
    "BUCKETS",
    "FIELD_DIMENSIONS",
    "MAX_DIMENSIONS",
    "MAX_WINDOWS",
    "AlertRecord",
    "AlertKind",
    "CostBucket",
    "DEFAULT_BUCKETS",
    "bucket_of",
    "with_event_spans",
    # budget store values
    "Claim",
    "ClaimUsage",
    "Refusal",
    "ReserveResult",
    "Settlement",
    "Overrun",
    "CounterState",
    "ReservationState",
    "Unit",
    "DEFAULT_RESERVATION_TTL",
    "DEFAULT_WORKER_LEASE",
    "DEFAULT_RESERVATION_RETENTION",
    # budget leases
    "LeasedBudgetStore",
    "LeaseBackend",
    "ChargeSink",
    "LeaseCharge",
    "LeaseRequest",
    "LeaseGrant",
    "DEFAULT_LEASE_FRACTION",
    "DEFAULT_LEASE_IDLE",
]
