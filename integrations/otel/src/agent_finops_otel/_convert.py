"""Records to OpenTelemetry spans, span events and metric points (runs on the sink's thread).

Ids: an OTel trace id is 16 bytes of the BLAKE2b hash of our trace id (the LangChain or
CrewAI root run id), an OTel span id 8 bytes of the BLAKE2b hash of our span id. Both are
pure functions of our ids (`otel_trace_id`, `otel_span_id`), so a span can name its parent
before the parent is exported, and the original ids travel as `agent_finops.trace_id` /
`agent_finops.span_id` attributes.

Cost sits only on the spans of model and tool calls (the leaves that own a cost event), so
a backend summing `gen_ai.usage.cost.amount` over a trace counts every call once.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from opentelemetry import trace as trace_api
from opentelemetry.metrics import Counter, Meter
from opentelemetry.sdk.trace import Tracer
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util.types import AttributeValue

from agent_finops.ledger import CostEvent, DecisionRecord, RunRecord, SpanRecord
from agent_finops.sinks import Records

__all__ = [
    "COST_SOURCE",
    "CURRENCY",
    "DEFAULT_METRIC_TAGS",
    "Converter",
    "PresetIds",
    "otel_span_id",
    "otel_trace_id",
]

CURRENCY: Final = "USD"
"""`gen_ai.usage.cost.currency` (ISO 4217): every agent-finops cost is in US dollars."""
COST_SOURCE: Final = "local"
"""`gen_ai.usage.cost.source`: agent-finops computes the cost itself from usage and prices
(the proposal's `local`; the price book entry is in `agent_finops.price_source`)."""
DEFAULT_METRIC_TAGS: Final = ("team", "project", "cost_center", "agent", "environment")
"""Tags that become metric attributes by default (bounded sets; `task`, `user` and
`tenant` are left out: one time series per task or user is too many for most backends)."""
DECISION_EVENT: Final = "agent_finops.policy.decision"
_NS_PER_US: Final = 1_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_OPERATION: Final = {"model": "chat", "tool": "execute_tool", "agent": "invoke_agent"}


def otel_trace_id(trace_id: str) -> int:
    """The OTel trace id (128 bits) of one of our trace ids: 16 bytes of its BLAKE2b hash.

    Not the UUID itself: a version-4 UUID has fixed variant bits at the top of its low 64
    bits, exactly where ratio samplers (`TraceIdRatioBased`) read their random number, so
    such ids would all fall on the same side of any ratio below 0.5.
    """
    return int.from_bytes(hashlib.blake2b(trace_id.encode(), digest_size=16).digest()) or 1


def otel_span_id(span_id: str) -> int:
    """The OTel span id (64 bits) of one of our span ids."""
    return int.from_bytes(hashlib.blake2b(span_id.encode(), digest_size=8).digest()) or 1


def _ns(t: datetime) -> int:
    """Nanoseconds since the epoch, exact to the microsecond (no float rounding)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - _EPOCH) // _MICROSECOND * _NS_PER_US


class PresetIds(IdGenerator):
    """Hands the SDK the ids we derived for the span being started on this thread.

    Any other caller (another thread, or no preset) gets ids from the generator it wraps.
    """

    def __init__(self, fallback: IdGenerator) -> None:
        """Wrap the tracer provider's own generator."""
        self.fallback = fallback
        self._local = threading.local()

    def preset(self, trace_id: int, span_id: int) -> None:
        """The ids of the next span this thread starts."""
        self._local.ids = (trace_id, span_id)

    def generate_trace_id(self) -> int:
        """Our trace id, if one is preset."""
        ids = getattr(self._local, "ids", None)
        return ids[0] if ids else self.fallback.generate_trace_id()

    def generate_span_id(self) -> int:
        """Our span id, if one is preset (the preset is then used up)."""
        ids = getattr(self._local, "ids", None)
        if not ids:
            return self.fallback.generate_span_id()
        self._local.ids = None
        return int(ids[1])

    def is_trace_id_random(self) -> bool:
        """Derived ids are not promised to be random (W3C level-2 flag off)."""
        return not getattr(self._local, "ids", None) and self.fallback.is_trace_id_random()


@dataclass(slots=True)
class _Trace:
    """What is buffered for one trace until its spans end."""

    run: RunRecord | None = None
    events: dict[str, list[CostEvent]] = field(default_factory=dict)
    decisions: dict[str, list[DecisionRecord]] = field(default_factory=dict)
    exported: set[str] = field(default_factory=set)
    sampled: bool | None = None


def _agent(tags: Mapping[str, str], node_path: str | None) -> str | None:
    """The agent a span works for: the `agent` tag, else the top-level graph node."""
    return tags.get("agent") or (node_path.split(" > ", 1)[0] if node_path else None)


def _money(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


class Converter:
    """Turns record groups into spans on `tracer` and, with `meter`, into metric points."""

    def __init__(
        self,
        tracer: Tracer,
        *,
        meter: Meter | None,
        metric_tags: Sequence[str],
        allow_decisions: bool,
    ) -> None:
        """Export through `tracer` (an SDK tracer: its id generator is wrapped)."""
        self.tracer = tracer
        if not isinstance(tracer.id_generator, PresetIds):
            tracer.id_generator = PresetIds(tracer.id_generator)
        self.ids: PresetIds = tracer.id_generator
        self.allow_decisions = allow_decisions
        self.metric_tags = tuple(metric_tags)
        self._traces: dict[str, _Trace] = {}
        self._cost: Counter | None = None
        self._tokens: Counter | None = None
        self._calls: Counter | None = None
        if meter is not None:
            self._cost = meter.create_counter(
                "agent_finops.cost", unit=CURRENCY, description="Known cost of model and tool calls"
            )
            self._tokens = meter.create_counter(
                "agent_finops.tokens", unit="{token}", description="Tokens by gen_ai.token.type"
            )
            self._calls = meter.create_counter(
                "agent_finops.calls",
                unit="{call}",
                description="Model and tool calls (agent_finops.priced false: unknown cost)",
            )

    # -- record groups --------------------------------------------------------------------

    def convert(self, records: Records) -> None:
        """Buffer events and decisions; export every span that has ended (the root last)."""
        for run in records.runs:
            self._trace(run.trace_id).run = run
        for event in records.events:
            self._trace(event.trace_id).events.setdefault(event.span_id, []).append(event)
            self._count(event)
        for decision in records.decisions:
            if decision.action == "allow" and not self.allow_decisions:
                continue
            self._decision(decision)
        ended = [s for s in records.spans if s.ended_at is not None and s.status != "running"]
        for span in sorted(ended, key=lambda s: s.parent_span_id is None):
            self._export(span)

    def _trace(self, trace_id: str) -> _Trace:
        state = self._traces.get(trace_id)
        if state is None:
            state = self._traces[trace_id] = _Trace()
        return state

    def _decision(self, d: DecisionRecord) -> None:
        state = self._traces.get(d.trace_id)
        key = d.call_id or d.trace_id
        if state is None or key in state.exported:
            # The span it is about has been exported already (or the whole run has): a short
            # span of its own under the run carries it.
            self._late_decision(d)
            return
        state.decisions.setdefault(key, []).append(d)

    def _late_decision(self, d: DecisionRecord) -> None:
        parent = self._context(d.trace_id, d.trace_id)
        self.ids.preset(otel_trace_id(d.trace_id), otel_span_id(d.decision_id))
        at = _ns(d.created_at)
        span = self.tracer.start_span(
            f"policy {d.action}",
            context=parent,
            attributes={
                "agent_finops.trace_id": d.trace_id,
                "agent_finops.span_id": d.decision_id,
                "agent_finops.span.kind": "decision",
            },
            start_time=at,
        )
        span.add_event(DECISION_EVENT, _decision_attributes(d), timestamp=at)
        span.end(end_time=at)

    # -- spans ----------------------------------------------------------------------------

    def _context(self, trace_id: str, parent_span_id: str) -> Any:
        state = self._trace(trace_id)
        otel_trace = otel_trace_id(trace_id)
        if state.sampled is None:  # the decision the provider's sampler makes for the root
            result = self.tracer.sampler.should_sample(None, otel_trace, "run")
            state.sampled = result.decision == Decision.RECORD_AND_SAMPLE
        flags = TraceFlags(TraceFlags.SAMPLED if state.sampled else TraceFlags.DEFAULT)
        parent = SpanContext(otel_trace, otel_span_id(parent_span_id), False, flags)
        return trace_api.set_span_in_context(NonRecordingSpan(parent))

    def _export(self, s: SpanRecord) -> None:
        state = self._trace(s.trace_id)
        if s.span_id in state.exported:
            return
        events = state.events.pop(s.span_id, [])
        decisions = state.decisions.pop(s.span_id, [])
        root = s.parent_span_id is None
        if root:  # run-level decisions and any left over (their span was never exported)
            for rest in state.decisions.values():
                decisions.extend(rest)
            state.decisions.clear()
        name, kind, attributes = _describe(s, events, state.run if root else None)
        context = None if root else self._context(s.trace_id, s.parent_span_id or s.trace_id)
        self.ids.preset(otel_trace_id(s.trace_id), otel_span_id(s.span_id))
        span = self.tracer.start_span(
            name, context=context, kind=kind, attributes=attributes, start_time=_ns(s.started_at)
        )
        for d in sorted(decisions, key=lambda d: d.created_at):
            span.add_event(DECISION_EVENT, _decision_attributes(d), timestamp=_ns(d.created_at))
        if s.status == "error":
            span.set_status(Status(StatusCode.ERROR, s.error or None))
        assert s.ended_at is not None
        span.end(end_time=_ns(s.ended_at))
        state.exported.add(s.span_id)
        if root:
            del self._traces[s.trace_id]

    # -- metrics --------------------------------------------------------------------------

    def _count(self, e: CostEvent) -> None:
        if self._calls is None or self._tokens is None or self._cost is None:
            return
        base: dict[str, AttributeValue] = {
            "gen_ai.operation.name": _OPERATION[e.kind],
            **{f"agent_finops.tag.{k}": e.tags[k] for k in self.metric_tags if k in e.tags},
        }
        if e.kind == "model":
            base["gen_ai.request.model"] = e.name
            if e.provider:
                base["gen_ai.provider.name"] = e.provider
        else:
            base["gen_ai.tool.name"] = e.name
        self._calls.add(1, {**base, "agent_finops.priced": e.cost is not None})
        if e.cost is not None:
            self._cost.add(float(e.cost), base)
        for kind, count in (
            ("input", e.uncached_input_tokens + e.cache_read_tokens + e.cache_write_tokens),
            ("output", e.output_tokens),
            ("cache_read", e.cache_read_tokens),
            ("cache_write", e.cache_write_tokens),
            ("reasoning", e.reasoning_tokens),
        ):
            if count:
                self._tokens.add(count, {**base, "gen_ai.token.type": kind})


def _describe(
    s: SpanRecord, events: Sequence[CostEvent], run: RunRecord | None
) -> tuple[str, SpanKind, dict[str, AttributeValue]]:
    """The OTel name, kind and attributes of one of our spans."""
    attrs: dict[str, AttributeValue] = {
        "agent_finops.trace_id": s.trace_id,
        "agent_finops.span_id": s.span_id,
        "agent_finops.span.kind": s.kind,
        "agent_finops.status": s.status,
    }
    if s.parent_span_id:
        attrs["agent_finops.parent_span_id"] = s.parent_span_id
    if s.node_path:
        attrs["agent_finops.node_path"] = s.node_path
    if s.error:
        attrs["error.type"] = s.error.split(":", 1)[0][:200]
    attrs.update((f"agent_finops.tag.{k}", v) for k, v in s.tags.items())
    agent = s.name if s.kind in ("agent", "crew") else _agent(s.tags, s.node_path)
    if agent and s.kind != "run":
        attrs["gen_ai.agent.name"] = agent
    name, kind = s.name, SpanKind.INTERNAL
    if s.parent_span_id is None:
        attrs["gen_ai.operation.name"] = "invoke_workflow"
        attrs["gen_ai.workflow.name"] = s.name
        name = f"invoke_workflow {s.name}"
        thread = run.thread_id if run is not None else None
        thread = thread or s.tags.get("thread_id")
        if thread:
            attrs["gen_ai.conversation.id"] = thread
            attrs["agent_finops.thread_id"] = thread
    elif s.kind in ("agent", "crew"):
        attrs["gen_ai.operation.name"] = "invoke_agent"
        name = f"invoke_agent {s.name}"
    model = next((e for e in events if e.kind == "model"), None)
    tool = next((e for e in events if e.kind == "tool"), None)
    if s.kind == "model" or model is not None:
        attrs["gen_ai.operation.name"] = "chat"
        kind = SpanKind.CLIENT
        if model is not None:
            attrs.update(_model_attributes(model))
            name = f"chat {model.name}"
    elif s.kind == "tool" or tool is not None:
        attrs["gen_ai.operation.name"] = "execute_tool"
        tool_name = tool.name if tool is not None else s.name
        attrs["gen_ai.tool.name"] = tool_name
        name = f"execute_tool {tool_name}"
    if events:
        attrs.update(_cost_attributes(events))
    return name, kind, attrs


def _model_attributes(e: CostEvent) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {
        # The ledger keeps one model name: the one the provider served, else the requested one.
        "gen_ai.request.model": e.name,
        "gen_ai.response.model": e.name,
    }
    if e.provider:
        attrs["gen_ai.provider.name"] = e.provider
    if e.model_ref:
        attrs["agent_finops.model_ref"] = e.model_ref
    if not e.usage_reported:
        attrs["agent_finops.usage_reported"] = False
        return attrs
    attrs.update(
        {
            # Inclusive, as the conventions require: cache reads and writes are input too.
            "gen_ai.usage.input_tokens": e.uncached_input_tokens
            + e.cache_read_tokens
            + e.cache_write_tokens,
            "gen_ai.usage.cache_read.input_tokens": e.cache_read_tokens,
            "gen_ai.usage.cache_creation.input_tokens": e.cache_write_tokens,
            "gen_ai.usage.cache_write.input_tokens": e.cache_write_tokens,
            "gen_ai.usage.output_tokens": e.output_tokens,
            "gen_ai.usage.reasoning.output_tokens": e.reasoning_tokens,
        }
    )
    return attrs


def _cost_attributes(events: Sequence[CostEvent]) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {
        "agent_finops.price_source": ",".join(sorted({e.price_source for e in events})),
        "agent_finops.price_version": ",".join(sorted({e.price_version for e in events})),
        "agent_finops.event_ids": [e.event_id for e in events],
    }
    if any(e.cost is None for e in events):
        attrs["agent_finops.cost.unpriced"] = True
        return attrs
    total = sum((e.cost for e in events if e.cost is not None), Decimal(0))
    attrs["gen_ai.usage.cost.amount"] = float(total)
    attrs["gen_ai.usage.cost.currency"] = CURRENCY
    attrs["gen_ai.usage.cost.source"] = COST_SOURCE
    attrs["agent_finops.cost.usd"] = format(total, "f")
    units = sum(e.units for e in events)
    if units:
        attrs["agent_finops.units"] = units
    return attrs


def _decision_attributes(d: DecisionRecord) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {
        "agent_finops.decision.id": d.decision_id,
        "agent_finops.decision.action": d.action,
        "agent_finops.decision.unit": d.unit,
        "agent_finops.decision.actor": d.actor,
        "agent_finops.decision.policy_version": d.policy_version,
    }
    optional = {
        "agent_finops.decision.rule_id": d.rule_id,
        "agent_finops.decision.call_id": d.call_id,
        "agent_finops.decision.limit": _money(d.limit),
        "agent_finops.decision.observed": _money(d.observed),
        "agent_finops.decision.estimate": _money(d.estimate),
        "agent_finops.decision.message": d.message or None,
    }
    attrs.update((k, v) for k, v in optional.items() if v is not None)
    attrs.update((f"agent_finops.decision.scope.{k}", v) for k, v in d.scope.items())
    return attrs
