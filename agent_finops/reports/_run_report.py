"""The per-run cost report: a priced span tree plus rollups by node, agent, model and tool.

Every figure is a sum of leaf cost events, each counted exactly once: a span's cost is the
sum of the events in its subtree, so re-entrant calls (A calls B calls A) cannot be counted
twice. Unknown costs are never summed as $0; they are counted as `unpriced`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from agent_finops.approvals import approval_payload
from agent_finops.exceptions import RunNotFound
from agent_finops.ledger import (
    ApprovalRecord,
    CostEvent,
    DecisionRecord,
    Ledger,
    RunRecord,
    SpanRecord,
    TraceData,
)

REPORT_SCHEMA_VERSION = 2
"""Version of `RunReport.to_dict()`'s layout (documented in docs/report-json.md).

2: `thread` (the thread id and one segment per invocation) and `run.thread_id`."""

_SHOWN_KINDS = frozenset({"run", "node", "agent", "task", "crew", "model", "tool"})


@dataclass(slots=True)
class Totals:
    """Calls, tokens by kind and cost of a set of cost events."""

    cost: Decimal = Decimal(0)
    """Sum of known costs (USD)."""
    unpriced: int = 0
    """Events whose cost is unknown."""
    model_calls: int = 0
    tool_calls: int = 0
    uncached_input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    def add(self, e: CostEvent) -> None:
        """Add one event."""
        if e.cost is None:
            self.unpriced += 1
        else:
            self.cost += e.cost
        if e.kind == "model":
            self.model_calls += 1
        else:
            self.tool_calls += 1
        self.uncached_input_tokens += e.uncached_input_tokens
        self.cache_read_tokens += e.cache_read_tokens
        self.cache_write_tokens += e.cache_write_tokens
        self.output_tokens += e.output_tokens
        self.reasoning_tokens += e.reasoning_tokens

    def merge(self, other: Totals) -> None:
        """Add another set of totals."""
        self.cost += other.cost
        self.unpriced += other.unpriced
        self.model_calls += other.model_calls
        self.tool_calls += other.tool_calls
        self.uncached_input_tokens += other.uncached_input_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.output_tokens += other.output_tokens
        self.reasoning_tokens += other.reasoning_tokens

    @property
    def input_tokens(self) -> int:
        """All input tokens."""
        return self.uncached_input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def calls(self) -> int:
        """Model plus tool calls."""
        return self.model_calls + self.tool_calls

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; money as a decimal string."""
        return {
            "cost_usd": format(self.cost, "f"),
            "unpriced": self.unpriced,
            "model_calls": self.model_calls,
            "tool_calls": self.tool_calls,
            "tokens": {
                "input": self.input_tokens,
                "uncached_input": self.uncached_input_tokens,
                "cache_read": self.cache_read_tokens,
                "cache_write": self.cache_write_tokens,
                "output": self.output_tokens,
                "reasoning": self.reasoning_tokens,
            },
        }


@dataclass(slots=True)
class SpanNode:
    """A span with the totals of its whole subtree."""

    span: SpanRecord
    children: list[SpanNode] = field(default_factory=list)
    totals: Totals = field(default_factory=Totals)
    events: list[CostEvent] = field(default_factory=list)
    """This span's own cost events (leaves)."""

    def to_dict(self, total: Decimal) -> dict[str, Any]:
        """JSON-ready subtree."""
        s = self.span
        own_model = next((e for e in self.events if e.kind == "model"), None)
        return {
            "span_id": s.span_id,
            "parent_span_id": s.parent_span_id,
            "name": s.name,
            "kind": s.kind,
            "node_path": s.node_path,
            "status": s.status,
            "error": s.error,
            "started_at": _iso(s.started_at),
            "ended_at": _iso(s.ended_at),
            "model": own_model.name if own_model else None,
            "price_source": own_model.price_source if own_model else None,
            "share": _share(self.totals.cost, total),
            **self.totals.to_dict(),
            "children": [c.to_dict(total) for c in self.children],
        }


@dataclass(frozen=True, slots=True)
class Rollup:
    """Totals for one key of a grouping (a node path, agent, model or tool)."""

    key: str
    totals: Totals

    def to_dict(self, total: Decimal) -> dict[str, Any]:
        """JSON-ready."""
        return {"key": self.key, "share": _share(self.totals.cost, total), **self.totals.to_dict()}


@dataclass(frozen=True, slots=True)
class Segment:
    """One invocation of a thread (the first run, then each resume) and what it cost."""

    run: RunRecord
    totals: Totals
    decisions: int
    """Policy decisions recorded in this invocation (allow included)."""

    @property
    def noop(self) -> bool:
        """An invocation that did nothing: no call, no decision, and it simply ended."""
        return self.totals.calls == 0 and self.decisions == 0 and self.run.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "trace_id": self.run.trace_id,
            "name": self.run.name,
            "status": self.run.status,
            "started_at": _iso(self.run.started_at),
            "ended_at": _iso(self.run.ended_at),
            "noop": self.noop,
            "decisions": self.decisions,
            **self.totals.to_dict(),
        }


@dataclass(slots=True)
class RunReport:
    """What one run cost, as a tree and as rollups. `to_dict()` is the `--json` output."""

    run: RunRecord
    totals: Totals
    tree: SpanNode
    by_node: list[Rollup]
    by_agent: list[Rollup]
    by_model: list[Rollup]
    by_tool: list[Rollup]
    price_versions: list[str]
    by_task: list[Rollup] = field(default_factory=list)
    """Events grouped by their `task` tag (CrewAI tasks, per-task caps); untagged left out."""
    decisions: list[DecisionRecord] = field(default_factory=list)
    """Every policy decision of the run (allow included), oldest first."""
    approvals: list[ApprovalRecord] = field(default_factory=list)
    """Approval requests of the run (or of its LangGraph thread), oldest first."""
    segments: list[Segment] = field(default_factory=list)
    """For a thread: each invocation (the first run, then every resume), oldest first."""

    @property
    def thread_id(self) -> str | None:
        """The thread this report covers (None: a single run without a thread)."""
        return self.run.thread_id

    def decision_counts(self) -> dict[str, int]:
        """How many decisions of each action."""
        counts: dict[str, int] = {}
        for d in self.decisions:
            counts[d.action] = counts.get(d.action, 0) + 1
        return counts

    @property
    def total_cost(self) -> Decimal:
        """Sum of known costs (USD)."""
        return self.totals.cost

    @property
    def unpriced(self) -> int:
        """Number of calls whose cost is unknown."""
        return self.totals.unpriced

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (see docs/report-json.md)."""
        total = self.totals.cost
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "run": {
                "trace_id": self.run.trace_id,
                "name": self.run.name,
                "status": self.run.status,
                "error": self.run.error,
                "started_at": _iso(self.run.started_at),
                "ended_at": _iso(self.run.ended_at),
                "tags": dict(self.run.tags),
                "thread_id": self.run.thread_id,
            },
            "thread": None
            if not self.segments
            else {
                "thread_id": self.run.thread_id,
                "segments": [s.to_dict() for s in self.segments],
            },
            "totals": self.totals.to_dict(),
            "price_versions": list(self.price_versions),
            "tree": self.tree.to_dict(total),
            "by_node": [r.to_dict(total) for r in self.by_node],
            "by_agent": [r.to_dict(total) for r in self.by_agent],
            "by_model": [r.to_dict(total) for r in self.by_model],
            "by_tool": [r.to_dict(total) for r in self.by_tool],
            "by_task": [r.to_dict(total) for r in self.by_task],
            "decision_counts": self.decision_counts(),
            "decisions": [_decision_dict(d) for d in self.decisions if d.action != "allow"],
            "approvals": [_approval_dict(a) for a in self.approvals],
        }

    def render(self) -> str:
        """A readable terminal report."""
        from agent_finops.reports._render import render_text

        return render_text(self)


def build_report(trace: TraceData) -> RunReport:
    """Build the report of one run from its ledger rows."""
    nodes = {s.span_id: SpanNode(s) for s in trace.spans}
    root = nodes.get(trace.run.trace_id)
    if root is None:  # the root span was never written (crash): synthesise it from the run
        r = trace.run
        root = SpanNode(
            SpanRecord(
                span_id=r.trace_id,
                trace_id=r.trace_id,
                parent_span_id=None,
                name=r.name,
                kind="run",
                node_path=None,
                started_at=r.started_at,
                ended_at=r.ended_at,
                status=r.status,
                tags=r.tags,
            )
        )
        nodes[r.trace_id] = root
    for node in nodes.values():
        if node is root:
            continue
        parent = nodes.get(node.span.parent_span_id or "") or root
        parent.children.append(node)
    for e in trace.events:
        (nodes.get(e.span_id) or root).events.append(e)
    _sum_subtree(root)
    _prune(root)

    return RunReport(run=trace.run, totals=root.totals, tree=root, **_rollups(trace.events))


def build_thread_report(
    traces: list[TraceData],
    decisions: dict[str, list[DecisionRecord]],
    approvals: list[ApprovalRecord],
) -> RunReport:
    """One report for a thread's invocations (oldest first): each is a segment.

    The tree has one child per invocation (no-op resumes left out), and every rollup, total
    and decision covers the whole thread, so a paused-then-resumed run reads as one story.
    """
    if not traces:
        raise ValueError("a thread report needs at least one run")
    traces = sorted(traces, key=lambda t: t.run.started_at)
    parts = [build_report(t) for t in traces]
    segments = [Segment(p.run, p.totals, len(decisions.get(p.run.trace_id, []))) for p in parts]
    first, last = traces[0].run, traces[-1].run
    thread = first.thread_id or first.trace_id
    run = RunRecord(
        trace_id=first.trace_id,
        name=first.name,
        started_at=first.started_at,
        ended_at=last.ended_at,
        status=last.status,
        error=last.error,
        tags=dict(first.tags),
        thread_id=thread,
    )
    root = SpanNode(
        SpanRecord(
            span_id=f"thread:{thread}",
            trace_id=first.trace_id,
            parent_span_id=None,
            name=f"thread {thread}",
            kind="run",
            node_path=None,
            started_at=first.started_at,
            ended_at=last.ended_at,
            status=last.status,
            tags=dict(first.tags),
        )
    )
    for part, segment in zip(parts, segments, strict=True):
        if not segment.noop:
            root.children.append(part.tree)
        root.totals.merge(part.totals)
    events = [e for t in traces for e in t.events]
    merged = _rollups(events)
    return RunReport(
        run=run,
        totals=root.totals,
        tree=root,
        **merged,
        decisions=sorted(
            (d for t in traces for d in decisions.get(t.run.trace_id, [])),
            key=lambda d: d.created_at,
        ),
        approvals=sorted(approvals, key=lambda a: a.created_at),
        segments=segments,
    )


def _rollups(events: list[CostEvent]) -> dict[str, Any]:
    return {
        "by_node": _group(events, lambda e: e.node_path or "(outside any node)"),
        "by_agent": _group(events, _agent_key),
        "by_model": _group((e for e in events if e.kind == "model"), lambda e: e.name),
        "by_tool": _group((e for e in events if e.kind == "tool"), lambda e: e.name),
        "by_task": _group((e for e in events if e.tags.get("task")), lambda e: e.tags["task"]),
        "price_versions": sorted({f"{e.price_source} ({e.price_version})" for e in events}),
    }


def _money(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _decision_dict(d: DecisionRecord) -> dict[str, Any]:
    return {
        "action": d.action,
        "rule_id": d.rule_id,
        "call_id": d.call_id,
        "scope": dict(d.scope),
        "limit": _money(d.limit),
        "observed": _money(d.observed),
        "estimate": _money(d.estimate),
        "unit": d.unit,
        "message": d.message,
        "actor": d.actor,
        "policy_version": d.policy_version,
        "at": _iso(d.created_at),
    }


def _approval_dict(a: ApprovalRecord) -> dict[str, Any]:
    payload = approval_payload(a)
    for key in ("kind", "answer_with"):
        del payload[key]
    return payload


def _agent_key(e: CostEvent) -> str:
    agent = e.tags.get("agent")
    if agent:
        return agent
    if e.node_path:
        return e.node_path.split(" > ", 1)[0]
    return "(no agent)"


def _sum_subtree(root: SpanNode) -> None:
    # Iterative post-order: deep agent recursions must not hit Python's recursion limit.
    order: list[SpanNode] = []
    stack = [root]
    while stack:
        node = stack.pop()
        order.append(node)
        node.children.sort(key=lambda c: c.span.started_at)
        stack.extend(node.children)
    for node in reversed(order):
        for e in node.events:
            node.totals.add(e)
        for child in node.children:
            node.totals.merge(child.totals)


def _prune(node: SpanNode) -> None:
    """Hoist plumbing spans (chains that are not graph nodes) out of the displayed tree."""
    kept: list[SpanNode] = []
    for child in node.children:
        _prune(child)
        if child.span.kind in _SHOWN_KINDS or child.events:
            kept.append(child)
        else:
            kept.extend(child.children)
    kept.sort(key=lambda c: c.span.started_at)
    node.children = kept


def _group(events: Iterable[CostEvent], key: Any) -> list[Rollup]:
    groups: dict[str, Totals] = {}
    for e in events:
        groups.setdefault(key(e), Totals()).add(e)
    return sorted(
        (Rollup(k, t) for k, t in groups.items()),
        key=lambda r: (-r.totals.cost, -r.totals.unpriced, r.key),
    )


def _share(part: Decimal, total: Decimal) -> str | None:
    if total == 0:
        return None
    return format((part / total).quantize(Decimal("0.0001")), "f")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def load_run_report(ledger: Ledger, run_id: str, *, whole_thread: bool = True) -> RunReport:
    """The report of a run or a thread from `ledger`.

    `run_id` is a run (trace) id, a thread id, or a unique prefix of either. A run that
    belongs to a thread (a paused and resumed LangGraph thread, a resumed crew) is reported
    with its whole thread, each invocation a segment, unless `whole_thread=False`.

    Raises `RunNotFound` naming the id when there is no such run or thread.
    """
    try:
        trace_id: str | None = ledger.resolve_run_id(run_id)
    except RunNotFound as missing:
        if missing.candidates:
            raise  # an ambiguous run id prefix: the candidates are in the message
        trace_id = None
    if trace_id is None:
        thread_id = ledger.resolve_thread_id(run_id)  # RunNotFound lists ambiguous threads
        if thread_id is None:
            raise RunNotFound(f"no run or thread {run_id!r} in the ledger", key=run_id)
    else:
        trace = ledger.load_trace(trace_id)
        thread_id = trace.run.thread_id if whole_thread else None
        if thread_id is None:
            report = build_report(trace)
            report.decisions = ledger.decisions_for(trace.run.trace_id)
            report.approvals = sorted(
                ledger.list_approvals(trace_id=trace.run.trace_id), key=lambda a: a.created_at
            )
            return report
    found = [ledger.load_trace(r.trace_id) for r in ledger.thread_runs(thread_id)]
    if len(found) == 1:  # a thread of one invocation is just that run
        return load_run_report(ledger, found[0].run.trace_id, whole_thread=False)
    decisions = {t.run.trace_id: ledger.decisions_for(t.run.trace_id) for t in found}
    approvals = {a.approval_id: a for a in ledger.list_approvals(thread_id=thread_id)}
    for t in found:  # requests filed before the run had its thread id
        approvals.update((a.approval_id, a) for a in ledger.list_approvals(trace_id=t.run.trace_id))
    return build_thread_report(found, decisions, list(approvals.values()))
