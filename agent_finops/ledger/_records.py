"""Plain records the tracker produces and every ledger stores (cheap to build on the hot path).

Datetimes are timezone-aware; a ledger returns them in UTC. Money is `Decimal`, held to
`MONEY_PLACES` (18) decimal places below `MONEY_LIMIT` (1e20) on every backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal

SpanKind = Literal["run", "node", "chain", "model", "tool", "agent", "task", "crew"]
"""`agent`, `task`, `crew`: spans of agent frameworks (e.g. CrewAI) that have those notions."""
EventKind = Literal["model", "tool", "compute"]
"""`compute`: time on a priced resource (a self-hosted model, a sandbox, a long-running agent),
priced per second or minute from a span's duration; `units` holds the billed seconds."""
CostBucket = Literal["tokens", "tools", "compute", "overhead"]
"""Where a cost belongs in a finance report: model tokens, tool and connector fees, compute
time, or orchestration overhead (routers, guardrails, retries: poolable, still attributed to
the run that triggered them)."""
DEFAULT_BUCKETS: dict[str, CostBucket] = {"model": "tokens", "tool": "tools", "compute": "compute"}
"""The bucket of an event that names none, by its kind."""
SpanStatus = Literal["running", "ok", "error", "interrupted", "unfinished", "stopped"]
"""`stopped`: a cost policy ended the run cleanly (deny), its partial results kept."""


@dataclass(slots=True, kw_only=True)
class RunRecord:
    """One traced run (a root invocation of a graph, crew or agent)."""

    trace_id: str
    name: str
    started_at: datetime
    ended_at: datetime | None = None
    status: SpanStatus = "running"
    error: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    thread_id: str | None = None
    """The thread (resume key) the run belongs to, e.g. LangGraph's `thread_id`: the runs of
    a paused and resumed conversation share it. None for a run outside any thread."""


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
    on_event: bool = False
    """True for a model call's span that adds nothing to its cost event (the call succeeded
    and opened no span of its own): the event (`event_id == span_id`) carries its parent,
    name and start (`CostEvent.span_parent_id`...), so a ledger stores no row for it and
    `load_trace` rebuilds it from the event, ended at the event's `created_at`."""


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
    """Model name as the provider served it (e.g. `gpt-4o-mini-2024-07-18`), else as
    requested; or the tool name."""
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
    cache_write_1h_tokens: int = 0
    """The part of `cache_write_tokens` billed at the 1-hour cache rate (Anthropic)."""
    output_tokens: int = 0
    reasoning_tokens: int = 0
    units: int = 0
    usage_reported: bool = True
    """False when the provider reported no usage (the cost is then unknown)."""
    bucket: CostBucket | None = None
    """The cost bucket; None: by kind (`DEFAULT_BUCKETS`). Ledgers store and return it
    resolved, so a read-back event always names its bucket."""
    policy_version: str | None = None
    """The version of the cost policy the call ran under (None: no policy), for exports."""
    span_parent_id: str | None = None
    """With `span_started_at`: the call's span is stored on this event, not as a row of its
    own (`SpanRecord.on_event`): its parent span."""
    span_name: str | None = None
    """The name of the call's span stored on this event (e.g. `ChatOpenAI`)."""
    span_started_at: datetime | None = None
    """When the call's span stored on this event started (None: the event carries no span)."""


DecisionAction = Literal[
    "allow",
    "warn",
    "deny",
    "pause",
    "shadow",
    "threshold",
    "approved",
    "denied",
    "expired",
    "refused",
    "overrun",
]
"""`expired`: an approval request expired undecided; `refused`: someone not allowed to decide
an approval tried to; `overrun`: a call's actual cost exceeded its reservation."""
ApprovalStatus = Literal["pending", "approved", "denied", "expired"]
DecidedStatus = Literal["approved", "denied", "expired"]
"""The statuses `Ledger.decide_approval` can set (a decision, or an expiry)."""


@dataclass(slots=True, kw_only=True)
class DecisionRecord:
    """One policy decision about one call (or run start), with who/what/when/which rule."""

    decision_id: str
    trace_id: str
    call_id: str | None
    """The guarded call's id (None for run-level checks such as mandatory tags)."""
    action: DecisionAction
    rule_id: str | None
    """None for an `allow` that no rule constrained."""
    policy_version: str
    created_at: datetime
    scope: dict[str, str] = field(default_factory=dict)
    limit: Decimal | None = None
    observed: Decimal | None = None
    """Spent plus reserved on the counter when the decision was taken."""
    estimate: Decimal | None = None
    """The call's reserved worst case (in the rule's unit)."""
    unit: str = "usd"
    message: str = ""
    actor: str = "policy"
    """`policy` for automatic decisions; the approver's name for human ones."""
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class ApprovalRecord:
    """A paused run's request for a human decision, and that decision."""

    approval_id: str
    trace_id: str
    thread_id: str | None
    """The paused run's thread (resume key), e.g. LangGraph's thread id (needed to resume it)."""
    rule_id: str
    scope: dict[str, str]
    unit: str
    spent: Decimal
    limit: Decimal
    estimate: Decimal
    """Estimated extra cost of the call that paused."""
    policy_version: str
    created_at: datetime
    message: str = ""
    status: ApprovalStatus = "pending"
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None
    extra: Decimal | None = None
    """Approved overspend for this run on this rule (in the rule's unit)."""
    resume_target: str | None = None
    """The *name* of a resume target the application registered (for example a named graph),
    so an approver process can resume the run. Never an import path: the ledger only names
    which registered target to use, and nothing named by a ledger row is imported."""
    expires_at: datetime | None = None
    """When an undecided request expires (None: never). `Ledger.due_approvals(now)` lists the
    pending requests past it; the approval service decides them `expired`."""
    counter_key: str | None = None
    """The budget bucket that refused (rule, scope, period window): an approval raises that
    bucket for this run only, not the same rule's next day or another scope."""
    applied_at: datetime | None = None
    """When the paused run took up the decision (a decision is applied exactly once)."""
    tags: dict[str, str] = field(default_factory=dict)
    on_expiry: str = "deny"
    """What expiry means for the run: `deny` (status `expired`) or `approve`."""
    approvers: list[str] | None = None
    """Who may decide it (ids and groups, from the policy's `approvals.approvers` for the
    run's tags when it was filed); None: anyone. Every channel checks this list."""
    step: str | None = None
    """The step that paused (a LangGraph task's checkpoint namespace, a crew task id): on
    re-execution that step asks about its own request, not a parallel branch's."""


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


def bucket_of(event: CostEvent) -> CostBucket:
    """The event's cost bucket (its own, else the default of its kind); ValueError if none."""
    found = event.bucket or DEFAULT_BUCKETS.get(event.kind)
    if found is None:
        raise ValueError(f"CostEvent.kind must be model, tool or compute, got {event.kind!r}")
    return found


AlertKind = Literal["cost_spike", "cost_per_task", "call_rate", "forecast"]
"""`cost_spike`: hourly cost far above its seasonal baseline; `cost_per_task`: a task type's
cost per task far above its 7-day average; `call_rate`: a sudden jump in calls per minute;
`forecast`: a budget's month-end projection crosses its limit."""


@dataclass(slots=True, kw_only=True)
class AlertRecord:
    """One alert about spend, kept so that it is raised (and delivered) once.

    `alert_id` is deterministic (kind, scope and window), so detecting the same anomaly again
    (another scan, another process, after a restart) finds the stored alert instead of
    raising a second one.
    """

    alert_id: str
    kind: AlertKind
    scope: dict[str, str]
    """The tags that select what the alert is about (e.g. `{"team": "search"}`)."""
    window_start: datetime
    window_end: datetime
    created_at: datetime
    severity: Literal["warning", "critical"] = "warning"
    message: str = ""
    observed: Decimal | None = None
    """What was measured (USD, or calls per minute for `call_rate`)."""
    expected: Decimal | None = None
    """The baseline, average or limit it is compared with."""
    drivers: list[dict[str, str]] = field(default_factory=list)
    """The top cost drivers of the window (e.g. `{"agent": "planner", "cost": "12.5"}`)."""
    delivered: list[str] = field(default_factory=list)
    """The channels the alert was delivered to (retried on the others)."""


def event_span(event: CostEvent) -> SpanRecord | None:
    """The model call's span its event carries (`SpanRecord.on_event`), or None."""
    if event.span_started_at is None or event.span_name is None:
        return None
    return SpanRecord(
        span_id=event.span_id,
        trace_id=event.trace_id,
        parent_span_id=event.span_parent_id,
        name=event.span_name,
        kind="model",
        node_path=event.node_path,
        started_at=event.span_started_at,
        ended_at=event.created_at,
        status="ok",
        tags=dict(event.tags),
        on_event=True,
    )


def with_event_spans(spans: list[SpanRecord], events: Sequence[CostEvent]) -> list[SpanRecord]:
    """`spans` (by start) with the spans stored on `events` that have no row of their own.

    What every ledger's `load_trace` returns: a model call's span reads the same whether it
    was stored as a row or on its event (a stored row wins: the span changed after its
    event, e.g. it failed or opened a span of its own).
    """
    stored = {s.span_id for s in spans}
    extra = [
        span
        for event in events
        if event.span_started_at is not None
        and event.span_id not in stored
        and (span := event_span(event)) is not None
    ]
    if not extra:
        return spans
    return sorted([*spans, *extra], key=lambda s: s.started_at)
