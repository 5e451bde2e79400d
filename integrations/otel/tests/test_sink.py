"""OTelSink on real LangGraph runs: GenAI spans with cost, ids from ours, decisions, metrics."""

from __future__ import annotations

import logging
import threading
import uuid
from collections import defaultdict
from decimal import Decimal
from types import ModuleType
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import NoOpTracerProvider, SpanKind, StatusCode

from agent_finops import (
    ConfigurationError,
    CostTracker,
    PriceBook,
    SQLLedger,
    TokenUsage,
    UnpricedWarning,
)
from agent_finops.policy import Policy
from agent_finops_langgraph import FinOpsCallbackHandler, guard_node
from agent_finops_otel import OTelSink, otel_span_id, otel_trace_id


def _ns(t: Any) -> int:
    return round(t.timestamp() * 1_000_000) * 1_000


def _run_team(demo: ModuleType, tracker: CostTracker, **config: Any) -> str:
    run_id = uuid.uuid4()
    demo.build_team().invoke(
        {"messages": [HumanMessage(demo.REQUEST)]},
        config={
            "callbacks": [FinOpsCallbackHandler(tracker)],
            "run_id": run_id,
            "metadata": {"finops": {"project": "market-briefs", "task": "brief-1", "user": "u-7"}},
            **config,
        },
    )
    return str(run_id)


def _by_id(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {str(s.attributes["agent_finops.span_id"]): s for s in spans if s.attributes}


def test_demo_run_becomes_genai_spans_with_cost_on_calls_only(
    demo: ModuleType, ledger: SQLLedger, otel: Any
) -> None:
    sink = OTelSink(tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    tracker = CostTracker(
        ledger,
        prices=PriceBook(demo.PRICING),
        tags={"team": "growth", "environment": "test"},
        sinks=[sink],
    )
    trace_id = _run_team(demo, tracker)
    tracker.flush()
    trace = ledger.load_trace(trace_id)
    assert trace is not None
    spans = _by_id(otel.spans.get_finished_spans())
    # One OTel span per ledger span, ids derived from ours, parents and times preserved.
    assert set(spans) == {s.span_id for s in trace.spans}
    for record in trace.spans:
        span = spans[record.span_id]
        assert span.context is not None
        assert span.context.trace_id == otel_trace_id(trace_id)
        assert span.context.span_id == otel_span_id(record.span_id)
        if record.parent_span_id is None:
            assert span.parent is None
        else:
            assert span.parent is not None and span.parent.span_id == otel_span_id(
                record.parent_span_id
            )
        assert span.start_time == _ns(record.started_at) and span.end_time == _ns(record.ended_at)
        assert span.attributes is not None
        assert span.attributes["agent_finops.tag.team"] == "growth"
        assert span.attributes["agent_finops.tag.task"] == "brief-1"
    # Cost only on model and tool calls; summing them gives the ledger's exact total.
    costed = [
        s for s in spans.values() if s.attributes and "gen_ai.usage.cost.amount" in s.attributes
    ]
    assert {s.attributes["gen_ai.operation.name"] for s in costed if s.attributes} == {
        "chat",
        "execute_tool",
    }
    assert len(costed) == len(trace.events) == 9
    exact = sum(
        (Decimal(str(s.attributes["agent_finops.cost.usd"])) for s in costed if s.attributes),
        Decimal(0),
    )
    assert (
        exact
        == sum((e.cost for e in trace.events if e.cost is not None), Decimal(0))
        == Decimal("0.0670749")
    )
    assert sum(
        float(s.attributes["gen_ai.usage.cost.amount"]) for s in costed if s.attributes
    ) == pytest.approx(0.0670749)
    assert all(
        s.attributes["gen_ai.usage.cost.currency"] == "USD"
        and s.attributes["gen_ai.usage.cost.source"] == "local"
        for s in costed
        if s.attributes
    )
    root = spans[trace_id]
    assert root.name == "invoke_workflow research_team" and root.attributes is not None
    assert root.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert "gen_ai.usage.cost.amount" not in root.attributes
    # GenAI usage attributes, inclusive input tokens, both cache-write names.
    claude = [
        s
        for s in costed
        if s.attributes and s.attributes.get("gen_ai.request.model") == "claude-sonnet-4-6"
    ]
    first = min(claude, key=lambda s: s.start_time or 0).attributes
    assert first is not None
    assert (
        first["gen_ai.provider.name"] == "anthropic" and first["gen_ai.agent.name"] == "researcher"
    )
    assert first["gen_ai.usage.input_tokens"] == 3_380
    assert (
        first["gen_ai.usage.cache_creation.input_tokens"]
        == first["gen_ai.usage.cache_write.input_tokens"]
        == 3_200
    )
    assert first["gen_ai.usage.output_tokens"] == 156
    (o3,) = [
        s for s in costed if s.attributes and s.attributes.get("gen_ai.response.model") == "o3-mini"
    ]
    assert o3.kind == SpanKind.CLIENT and o3.name == "chat o3-mini" and o3.attributes is not None
    assert o3.attributes["gen_ai.usage.reasoning.output_tokens"] == 1_152
    assert o3.attributes["gen_ai.usage.output_tokens"] == 1_900
    tools = [
        s
        for s in costed
        if s.attributes and s.attributes["gen_ai.operation.name"] == "execute_tool"
    ]
    assert [s.attributes["gen_ai.tool.name"] for s in tools if s.attributes] == ["web_search"] * 2
    assert all(s.attributes["agent_finops.cost.usd"] == "0.01" for s in tools if s.attributes)

    # Metrics: cost, tokens and calls by tag, summing to the ledger's figures.
    points: dict[str, list[Any]] = defaultdict(list)
    data = otel.metrics.get_metrics_data()
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                points[metric.name].extend(metric.data.data_points)
    assert sum(p.value for p in points["agent_finops.cost"]) == pytest.approx(0.0670749)
    assert all(
        p.attributes["agent_finops.tag.team"] == "growth" for p in points["agent_finops.cost"]
    )
    assert all("agent_finops.tag.task" not in p.attributes for p in points["agent_finops.cost"])
    tokens: dict[str, int] = defaultdict(int)
    for p in points["agent_finops.tokens"]:
        tokens[p.attributes["gen_ai.token.type"]] += p.value
    assert tokens["reasoning"] == sum(e.reasoning_tokens for e in trace.events)
    assert tokens["cache_write"] == sum(e.cache_write_tokens for e in trace.events)
    assert tokens["input"] == sum(
        e.uncached_input_tokens + e.cache_read_tokens + e.cache_write_tokens for e in trace.events
    )
    assert sum(p.value for p in points["agent_finops.calls"]) == 9
    tracker.close()
    assert sink.errors == 0 and sink.dropped == 0


def test_policy_decisions_are_span_events_and_the_thread_is_the_conversation(
    demo: ModuleType, ledger: SQLLedger, otel: Any
) -> None:
    tracker = CostTracker(
        ledger,
        prices=PriceBook(demo.PRICING),
        tags={"team": "growth"},
        sinks=[OTelSink(tracer_provider=otel.tracer_provider)],
    )
    handler = FinOpsCallbackHandler(tracker, policy=Policy.from_yaml(demo.POLICY_FILE))
    team = demo.build_team(lambda node: guard_node(node, handler), checkpointer=InMemorySaver())
    run_id = uuid.uuid4()
    result = team.invoke(
        {"messages": [HumanMessage(demo.REQUEST)]},
        config={
            "callbacks": [handler],
            "run_id": run_id,
            "configurable": {"thread_id": "brief-thread"},
            "metadata": {
                "finops": {"project": "market-briefs", "tenant": "acme-corp", "task": "b-1"}
            },
        },
    )
    assert result["__interrupt__"]
    tracker.flush()
    spans = otel.spans.get_finished_spans()
    events = [(s, e) for s in spans for e in s.events if e.name == "agent_finops.policy.decision"]
    actions = [
        e.attributes["agent_finops.decision.action"]
        for _, e in sorted(events, key=lambda x: x[1].timestamp)
        if e.attributes
    ]
    assert actions == ["threshold", "threshold", "pause"]
    (pause_span, pause) = next(
        (s, e)
        for s, e in events
        if e.attributes and e.attributes["agent_finops.decision.action"] == "pause"
    )
    assert (
        pause.attributes is not None
        and pause.attributes["agent_finops.decision.rule_id"] == "brief-budget"
    )
    assert pause.attributes["agent_finops.decision.limit"] == "0.04"
    assert pause_span.attributes is not None
    assert (
        pause_span.attributes["agent_finops.span_id"]
        == pause.attributes["agent_finops.decision.call_id"]
    )
    assert pause_span.attributes["agent_finops.status"] == "stopped"  # the call never went out
    (root,) = [s for s in spans if s.parent is None]
    assert (
        root.attributes is not None and root.attributes["gen_ai.conversation.id"] == "brief-thread"
    )
    assert not any(
        e.attributes and e.attributes["agent_finops.decision.action"] == "allow" for _, e in events
    )
    handler.guard.close()
    tracker.close()


def _manual_run(
    tracker: CostTracker, run: str, *, model: str = "gpt-4o-mini", fail: bool = False
) -> None:
    tracker.start_span(run, parent_span_id=None, name="manual", kind="chain")
    tracker.start_span(f"{run}-m", parent_span_id=run, name="ChatX", kind="model")
    tracker.record_model_call(
        f"{run}-m",
        model=model,
        provider="openai",
        usage=TokenUsage(uncached_input_tokens=100, output_tokens=10),
    )
    tracker.end_span(f"{run}-m", error=ValueError("boom") if fail else None)
    tracker.end_span(run)


def test_unpriced_and_failed_calls(ledger: SQLLedger, otel: Any) -> None:
    tracker = CostTracker(ledger, sinks=[OTelSink(tracer_provider=otel.tracer_provider)])
    with pytest.warns(UnpricedWarning):
        _manual_run(tracker, "r-unpriced", model="acme-mystery-1", fail=True)
    tracker.flush()
    spans = _by_id(otel.spans.get_finished_spans())
    call = spans["r-unpriced-m"]
    assert call.attributes is not None
    assert call.attributes["agent_finops.cost.unpriced"] is True
    assert "gen_ai.usage.cost.amount" not in call.attributes  # unknown is never 0
    assert (
        call.status.status_code == StatusCode.ERROR
        and call.status.description == "ValueError: boom"
    )
    assert call.attributes["error.type"] == "ValueError"
    # Any run id gets a stable derived trace id.
    assert call.context is not None and call.context.trace_id == otel_trace_id("r-unpriced")
    tracker.close()


def test_ids_are_the_same_from_any_exporter(ledger: SQLLedger) -> None:
    exporters = [InMemorySpanExporter(), InMemorySpanExporter()]
    sinks = []
    for exporter in exporters:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        sinks.append(OTelSink(tracer_provider=provider))
    tracker = CostTracker(ledger, sinks=sinks)
    _manual_run(tracker, str(uuid.uuid4()))
    tracker.close()
    first, second = (
        {(s.context.trace_id, s.context.span_id) for s in e.get_finished_spans() if s.context}
        for e in exporters
    )
    assert first == second and len(first) == 2


def test_a_sampled_out_trace_is_dropped_whole(ledger: SQLLedger) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.5)))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracker = CostTracker(ledger, sinks=[OTelSink(tracer_provider=provider)])
    for _ in range(40):
        _manual_run(tracker, str(uuid.uuid4()))
    tracker.close()
    per_trace: dict[int, int] = defaultdict(int)
    for span in exporter.get_finished_spans():
        assert span.context is not None
        per_trace[span.context.trace_id] += 1
    assert 0 < len(per_trace) < 40
    assert set(per_trace.values()) == {2}  # root and call together, or neither


def test_conversion_runs_off_the_callers_thread_and_never_raises(
    ledger: SQLLedger, otel: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sink = OTelSink(tracer_provider=otel.tracer_provider)
    threads: set[str] = set()
    real = sink._converter.convert

    def convert(records: Any) -> None:
        threads.add(threading.current_thread().name)
        if any(s.span_id == "bad" for s in records.spans):
            raise RuntimeError("exporter bug")
        real(records)

    sink._converter.convert = convert  # type: ignore[method-assign]
    tracker = CostTracker(ledger, sinks=[sink])
    _manual_run(tracker, "ok-run")
    tracker.start_span("bad", parent_span_id=None, name="bad", kind="chain")
    with caplog.at_level(logging.ERROR, logger="agent_finops.otel"):
        tracker.end_span("bad")  # the sink fails to convert: the run does not notice
        tracker.flush()
    assert threads == {"agent-finops-otel"}
    assert sink.errors == 1 and "could not export" in caplog.text
    assert len(otel.spans.get_finished_spans()) == 2
    tracker.close()


def test_needs_an_sdk_tracer_provider() -> None:
    with pytest.raises(ConfigurationError, match="SDK TracerProvider"):
        OTelSink(tracer_provider=NoOpTracerProvider())  # type: ignore[arg-type]
