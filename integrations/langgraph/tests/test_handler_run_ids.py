"""The handler's run ids: the text of each LangChain run id, however the UUID arrives.

LangChain passes one UUID object per run to its start, its children and its end (the handler
keeps its text until the end); a copy of the same id must work exactly as well.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from agent_finops import CostTracker
from agent_finops.sinks import MemorySink
from agent_finops_langgraph import FinOpsCallbackHandler
from agent_finops_langgraph.testing import usage


class Discard:
    """A ledger that keeps nothing (the memory sink has the records)."""

    def write(self, **records: Any) -> None:
        pass


def handler() -> tuple[FinOpsCallbackHandler, MemorySink]:
    sink = MemorySink()
    tracker = CostTracker(Discard(), background=False, sinks=[sink])  # type: ignore[arg-type]
    return FinOpsCallbackHandler(tracker, strict=True), sink


def copy(run_id: UUID) -> UUID:
    """An equal UUID that is another object."""
    other = UUID(str(run_id))
    assert other == run_id and other is not run_id
    return other


def result() -> LLMResult:
    message = AIMessage("ok", usage_metadata=usage(100, 10))
    message.response_metadata = {"model_name": "gpt-4o-mini"}
    return LLMResult(generations=[[ChatGeneration(message=message)]])


def one_run(h: FinOpsCallbackHandler, *, copies: bool) -> tuple[UUID, UUID, UUID]:
    root, node, call = uuid4(), uuid4(), uuid4()
    again = copy if copies else (lambda u: u)
    h.on_chain_start({"name": "graph"}, {}, run_id=root, name="graph")
    h.on_chain_start(
        {"name": "agent"},
        {},
        run_id=node,
        parent_run_id=again(root),
        metadata={"langgraph_node": "agent"},
        name="agent",
    )
    h.on_chat_model_start(
        {"name": "llm"},
        [[]],
        run_id=call,
        parent_run_id=again(node),
        invocation_params={"model": "gpt-4o-mini"},
        metadata={"ls_provider": "openai"},
    )
    h.on_llm_end(result(), run_id=again(call))
    h.on_chain_end({}, run_id=again(node))
    h.on_chain_end({}, run_id=again(root))
    return root, node, call


def check(sink: MemorySink, root: UUID, node: UUID, call: UUID) -> None:
    spans = {s.span_id: s for s in sink.spans if s.trace_id == str(root)}
    assert spans[str(node)].status == "ok" and spans[str(node)].parent_span_id == str(root)
    assert spans[str(call)].parent_span_id == str(node)
    assert spans[str(root)].status == "ok" and spans[str(root)].ended_at is not None
    (event,) = [e for e in sink.events if e.trace_id == str(root)]
    assert event.span_id == str(call) and event.node_path == "agent" and event.cost is not None
    (run,) = {id(r): r for r in sink.runs if r.trace_id == str(root)}.values()
    assert run.status == "ok" and run.ended_at is not None


def test_the_same_uuid_objects_throughout() -> None:
    h, sink = handler()
    check(sink, *one_run(h, copies=False))
    assert h.errors == 0


def test_copies_of_the_ids_at_each_callback() -> None:
    h, sink = handler()
    check(sink, *one_run(h, copies=True))
    assert h.errors == 0


def test_many_runs_one_after_another_keep_their_own_ids() -> None:
    """A new UUID object, even at a freed one's address, never gets an old run's text."""
    h, sink = handler()
    for n in range(300):
        check(sink, *one_run(h, copies=n % 3 == 0))  # the UUIDs are freed at once
    assert len({e.trace_id for e in sink.events}) == 300
    assert h.errors == 0
