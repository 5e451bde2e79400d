"""Plain records the tracker produces and the ledger stores (cheap to build on the hot path)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal

SpanKind = Literal["run", "node", "chain", "model", "tool"]
EventKind = Literal["model", "tool"]
SpanStatus = Literal["running", "ok", "error", "interrupted", "unfinished"]


@dataclass(slots=True, kw_only=True)
class RunRecord:
    """One traced run (a root LangGraph/LangChain invocation)."""

    trace_id: str
    name: str
    started_at: datetime
    ended_at: datetime | None = None
    status: SpanStatus = "running"
    error: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class SpanRecord:
    """One node/chain/model/tool span, mirroring the framework's run ids."""

    span_id: str
    trace_id: str
    parent_span_id: str | None
    name: str
    kind: SpanKind
    node_path: str | None
    """LangGraph node names from the root down, joined by ' > ' (None outside any node)."""
    started_at: datetime
    ended_at: datetime | None = None
    status: SpanStatus = "running"
    error: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class CostEvent:
    """One priced (or unpriced) leaf cost: a model call or a tool call.

    `event_id` is deterministic (the framework's run id of the call), so writing the same
    event twice counts once.
    """

    event_id: str
    trace_id: str
    span_id: str
    kind: EventKind
    name: str
    """Model name as requested, or tool name."""
    provider: str | None
    created_at: datetime
    node_path: str | None
    tags: dict[str, str]
    cost: Decimal | None
    """USD; None = unknown (unpriced)."""
    price_source: str
    price_version: str
    model_ref: str | None = None
    uncached_input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    units: int = 0
    usage_reported: bool = True
    """False when the provider reported no usage (the cost is then unknown)."""
