"""Policy enforcement on real LangGraph graphs: mid-run stops, pause/approve/resume, deny."""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Iterator
from decimal import Decimal
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import Command

from agent_finops import (
    ApprovalRequired,
    BudgetExceeded,
    CostTracker,
    LoopDetected,
    MissingTags,
    PriceBook,
    PricingConfig,
    SQLLedger,
    ToolFee,
)
from agent_finops.policy import Policy, PolicyEngine
from agent_finops_langgraph import (
    APPROVAL_KIND,
    STOPPED_KIND,
    FinOpsCallbackHandler,
    estimate_request,
    guard_node,
)
from agent_finops_langgraph.testing import ScriptedChatModel, usage


class State(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], operator.add]
    finops: dict[str, Any]


@tool
def lookup(query: str) -> str:
    """Look something up (has a fee)."""
    return f"answer to {query}"


@pytest.fixture
def tracker(tmp_path: Any) -> Iterator[CostTracker]:
    prices = PriceBook(
        PricingConfig(tools=(ToolFee(name="lookup", tool="lookup", per_call=Decimal("0.01")),))
    )
    t = CostTracker(
        SQLLedger.from_url(f"sqlite:///{tmp_path}/l.sqlite"),
        prices=prices,
        tags={"team": "qa", "task": "t1"},
    )
    yield t
    t.close()


def make_handler(tracker: CostTracker, policy: dict[str, Any]) -> FinOpsCallbackHandler:
    return FinOpsCallbackHandler(tracker, policy=PolicyEngine(Policy.from_mapping(policy), tracker))


def chatty_graph(
    handler: FinOpsCallbackHandler | None,
    calls: int,
    *,
    guard: bool = True,
    checkpointer: Any = None,
) -> Any:
    """One node making `calls` model calls in a row (each max 100 output tokens)."""
    llm = exact_model()

    def work(state: State) -> State:
        out: list[AnyMessage] = []
        for _ in range(calls):
            out.append(llm.invoke(state["messages"] + out, max_tokens=100))
        return {"messages": out}

    g = StateGraph(State)
    g.add_node("work", guard_node(work, handler) if guard and handler else work)
    g.add_edge(START, "work")
    g.add_edge("work", END)
    return g.compile(checkpointer=checkpointer)


class _Params(BaseCallbackHandler):
    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.params = kwargs["invocation_params"]


def _invocation_params() -> Any:
    """What the scripted model sends with `max_tokens=100` (as the handler sees it)."""
    seen = _Params()
    ScriptedChatModel(script=[AIMessage("x")]).invoke(
        [HumanMessage("go")], max_tokens=100, config={"callbacks": [seen]}
    )
    return seen.params


PARAMS = _invocation_params()


def reserved_input(messages: list[AnyMessage]) -> int:
    """The input tokens the handler reserves for a call with these messages."""
    return estimate_request([messages], PARAMS).input_tokens


def exact_model() -> ScriptedChatModel:
    """Reports exactly the engine's worst case (input estimate, 100 output): actual == reserved."""
    return ScriptedChatModel(
        script=lambda msgs: AIMessage("step", usage_metadata=usage(reserved_input(msgs), 100))
    )


def run_cap(tracker: CostTracker, calls_allowed: int) -> Decimal:
    """A run cap with room for exactly `calls_allowed` worst-case calls of chatty_graph."""
    # Worst cases grow as the prompt grows; price each call's reservation like the engine.
    total = Decimal(0)
    history: list[AnyMessage] = [HumanMessage("go")]
    for _ in range(calls_allowed):
        est = tracker.prices.estimate_max_cost(
            "gpt-4o-mini",
            provider="openai",
            input_tokens=reserved_input(history),
            max_output_tokens=100,
        )
        assert est is not None
        total += est
        history = [*history, AIMessage("step")]
    return total


def test_handler_alone_hard_stops_at_the_next_call(tracker: CostTracker) -> None:
    cap = run_cap(tracker, 2)
    handler = make_handler(
        tracker, {"budgets": [{"id": "run-cap", "limit": str(cap), "period": "run"}]}
    )
    graph = chatty_graph(handler, 5, guard=False)
    with pytest.raises(BudgetExceeded) as info:
        graph.invoke({"messages": [HumanMessage("go")]}, config={"callbacks": [handler]})
    err = info.value
    assert err.rule_id == "run-cap" and err.limit == cap and err.trace_id
    tracker.flush()
    (summary,) = tracker.ledger.list_runs()
    assert summary.model_calls == 2  # the third call was never sent
    report = tracker.report(summary.run.trace_id)
    assert report.run.status == "stopped"
    actions = [d.action for d in tracker.ledger.decisions_for(summary.run.trace_id)]
    assert actions == ["allow", "allow", "deny"]


def test_guarded_deny_ends_cleanly_with_partial_state(tracker: CostTracker) -> None:
    handler = make_handler(
        tracker,
        {"budgets": [{"id": "run-cap", "limit": str(run_cap(tracker, 2)), "period": "run"}]},
    )
    llm = exact_model()

    def one_call(state: State) -> State:
        return {"messages": [llm.invoke(state["messages"], max_tokens=100)]}

    g = StateGraph(State)
    for name in ("a", "b", "c", "d"):
        g.add_node(name, guard_node(one_call, handler))
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    g.add_edge("c", "d")
    out = g.compile().invoke({"messages": [HumanMessage("go")]}, config={"callbacks": [handler]})
    assert [m.content for m in out["messages"]] == ["go", "step", "step"]  # partial state kept
    (stop,) = out["__interrupt__"]
    assert stop.value["kind"] == STOPPED_KIND
    assert stop.value["reason"] == "BudgetExceeded"
    assert stop.value["rule_id"] == "run-cap"
    assert Decimal(stop.value["limit"]) == run_cap(tracker, 2)
    tracker.flush()
    (summary,) = tracker.ledger.list_runs()
    assert summary.run.status == "stopped" and summary.model_calls == 2


def test_pause_interrupts_then_approve_resumes(tracker: CostTracker) -> None:
    handler = make_handler(
        tracker,
        {
            "budgets": [
                {
                    "id": "run-cap",
                    "limit": str(run_cap(tracker, 1)),
                    "period": "run",
                    "action": "pause",
                }
            ]
        },
    )
    graph = chatty_graph(handler, 3, checkpointer=InMemorySaver())
    config: Any = {"callbacks": [handler], "configurable": {"thread_id": "thread-1"}}
    first = graph.invoke({"messages": [HumanMessage("go")]}, config=config)
    (intr,) = first["__interrupt__"]
    payload = intr.value
    assert payload["kind"] == APPROVAL_KIND and payload["rule_id"] == "run-cap"
    assert Decimal(payload["spent"]) > 0 and Decimal(payload["estimated_extra"]) > 0
    request = tracker.ledger.get_approval(payload["approval_id"])
    assert request is not None and request.status == "pending" and request.thread_id == "thread-1"
    # Approve enough for the rest of the node.
    final = graph.invoke(
        Command(resume={"decision": "approve", "by": "alice", "extra": "1.00"}), config=config
    )
    assert "__interrupt__" not in final
    assert len(final["messages"]) == 4  # go + 3 steps
    decided = tracker.ledger.get_approval(payload["approval_id"])
    assert (
        decided is not None
        and decided.status == "approved"
        and decided.decided_by == "resume:alice"
    )
    assert len(tracker.ledger.list_approvals()) == 1  # asked once, not once per re-execution


def test_pause_then_deny_stops_cleanly(tracker: CostTracker) -> None:
    handler = make_handler(
        tracker,
        {
            "budgets": [
                {
                    "id": "run-cap",
                    "limit": str(run_cap(tracker, 1)),
                    "period": "run",
                    "action": "pause",
                }
            ]
        },
    )
    graph = chatty_graph(handler, 3, checkpointer=InMemorySaver())
    config: Any = {"callbacks": [handler], "configurable": {"thread_id": "thread-2"}}
    graph.invoke({"messages": [HumanMessage("go")]}, config=config)
    final = graph.invoke(
        Command(resume={"decision": "deny", "by": "bob", "reason": "not worth it"}), config=config
    )
    (stop,) = final["__interrupt__"]
    assert stop.value["kind"] == STOPPED_KIND and stop.value["reason"] == "ApprovalDenied"
    assert "bob" in stop.value["message"] and "not worth it" in stop.value["message"]
    # A node is atomic in LangGraph: the step made before the pause, inside the same node,
    # is not in the state (its cost is in the ledger).
    assert [m.content for m in final["messages"]] == ["go"]
    tracker.flush()
    assert sum(s.model_calls for s in tracker.ledger.list_runs()) == 1


def test_pause_without_guard_is_a_typed_exception(tracker: CostTracker) -> None:
    handler = make_handler(
        tracker,
        {"budgets": [{"id": "cap", "limit": "0.0000001", "period": "run", "action": "pause"}]},
    )
    with pytest.raises(ApprovalRequired) as info:
        chatty_graph(handler, 1, guard=False).invoke(
            {"messages": [HumanMessage("go")]}, config={"callbacks": [handler]}
        )
    assert tracker.ledger.get_approval(info.value.approval_id) is not None


def test_mandatory_tags_reject_before_any_token(tracker: CostTracker) -> None:
    handler = make_handler(tracker, {"mandatory_tags": [{"require": ["team", "cost_center"]}]})
    with pytest.raises(MissingTags, match="cost_center") as info:
        chatty_graph(handler, 1, guard=False).invoke(
            {"messages": [HumanMessage("go")]}, config={"callbacks": [handler]}
        )
    assert info.value.missing == ["cost_center"]
    tracker.flush()
    (summary,) = tracker.ledger.list_runs()
    assert summary.model_calls == 0
    # With the tag given per invocation, the same graph runs.
    chatty_graph(handler, 1, guard=False).invoke(
        {"messages": [HumanMessage("go")]},
        config={"callbacks": [handler], "metadata": {"finops": {"cost_center": "cc-1"}}},
    )


def test_looping_tool_agent_is_caught(tracker: CostTracker) -> None:
    handler = make_handler(
        tracker, {"loops": [{"id": "same-lookup", "kind": "repeated_tool_call", "max_repeats": 3}]}
    )
    call = AIMessage(
        "",
        tool_calls=[{"name": "lookup", "args": {"query": "same"}, "id": "x"}],
        usage_metadata=usage(100, 10),
    )
    llm = ScriptedChatModel(script=[call])  # always asks for the same lookup
    sub = StateGraph(State)
    sub.add_node("agent", guard_node(lambda s: {"messages": [llm.invoke(s["messages"])]}, handler))
    sub.add_node("tools", guard_node(ToolNode([lookup]), handler))
    sub.add_edge(START, "agent")
    sub.add_edge("agent", "tools")
    sub.add_edge("tools", "agent")
    out = sub.compile().invoke(
        {"messages": [HumanMessage("go")]}, config={"callbacks": [handler], "recursion_limit": 50}
    )
    (stop,) = out["__interrupt__"]
    assert stop.value["reason"] == "LoopDetected" and stop.value["rule_id"] == "same-lookup"
    tracker.flush()
    (summary,) = tracker.ledger.list_runs()
    assert summary.tool_calls == 2  # the third identical lookup was never run
    assert summary.cost == 2 * Decimal("0.01") + 3 * (
        (100 * Decimal("0.15") + 10 * Decimal("0.6")) / 1_000_000
    )


def test_loop_without_guard_raises_loop_detected(tracker: CostTracker) -> None:
    handler = make_handler(
        tracker,
        {"loops": [{"id": "burst", "kind": "model_call_burst", "max_calls": 2, "window": "1m"}]},
    )
    with pytest.raises(LoopDetected, match="burst"):
        chatty_graph(handler, 5, guard=False).invoke(
            {"messages": [HumanMessage("go")]}, config={"callbacks": [handler]}
        )


def test_shadow_rule_never_blocks_but_is_reported(tracker: CostTracker) -> None:
    handler = make_handler(
        tracker,
        {"budgets": [{"id": "trial", "limit": "0.0000001", "period": "run", "shadow": True}]},
    )
    out = chatty_graph(handler, 3).invoke(
        {"messages": [HumanMessage("go")]}, config={"callbacks": [handler]}
    )
    assert len(out["messages"]) == 4
    tracker.flush()
    (summary,) = tracker.ledger.list_runs()
    actions = [d.action for d in tracker.ledger.decisions_for(summary.run.trace_id)]
    assert actions == ["shadow", "shadow", "shadow"]


# -- regressions found in review ------------------------------------------------------------


def test_chat_prompt_is_part_of_the_reservation(tracker: CostTracker) -> None:
    # Output alone (10 tokens) fits the cap; the 30,000-character prompt does not.
    handler = make_handler(
        tracker, {"budgets": [{"id": "cap", "limit": "0.0001", "period": "run"}]}
    )
    llm = ScriptedChatModel(script=[AIMessage("ok", usage_metadata=usage(10, 1))])
    g = StateGraph(State)
    g.add_node("n", lambda s: {"messages": [llm.invoke(s["messages"], max_tokens=10)]})
    g.add_edge(START, "n")
    with pytest.raises(BudgetExceeded) as info:
        g.compile().invoke(
            {"messages": [HumanMessage("x" * 30_000)]}, config={"callbacks": [handler]}
        )
    assert info.value.observed == 0  # refused on the estimate, before anything was spent


def test_bad_tags_fail_closed_with_a_policy(tracker: CostTracker) -> None:
    from agent_finops import ConfigurationError

    handler = make_handler(tracker, {"budgets": [{"id": "cap", "limit": "1", "period": "run"}]})
    with pytest.raises(ConfigurationError, match="tag key"):
        chatty_graph(handler, 1, guard=False).invoke(
            {"messages": [HumanMessage("go")]},
            config={"callbacks": [handler], "metadata": {"finops": {"cost center": "x"}}},
        )
    tracker.flush()
    assert sum(s.model_calls for s in tracker.ledger.list_runs()) == 0


def test_unknown_usage_shape_is_recorded_and_charged_its_reservation(tracker: CostTracker) -> None:
    handler = make_handler(tracker, {"budgets": [{"id": "cap", "limit": "1", "period": "run"}]})
    weird = AIMessage("ok")
    llm = ScriptedChatModel(script=[weird])
    g = StateGraph(State)
    g.add_node("n", lambda s: {"messages": [llm.invoke(s["messages"], max_tokens=10)]})
    g.add_edge(START, "n")
    with pytest.warns(UserWarning, match="unknown"):
        g.compile().invoke({"messages": [HumanMessage("go")]}, config={"callbacks": [handler]})
    tracker.flush()
    (run,) = tracker.ledger.list_runs()
    assert run.unpriced == 1
    engine = handler.policy
    assert engine is not None
    (event,) = tracker.ledger.load_trace(run.run.trace_id).events
    assert engine.budgets.reservation_state(event.span_id) == "settled"
    # A run without a thread: its cap is decided in memory, its spend still in the ledger.
    counter = engine.budgets.counter(f"cap|*|run={run.run.trace_id}")
    assert counter is not None and counter.spent > 0  # its estimate, never 0


def test_reservation_of_a_call_that_never_reported_back_is_released_at_run_end(
    tracker: CostTracker,
) -> None:
    import uuid

    handler = make_handler(tracker, {"budgets": [{"id": "cap", "limit": "1", "period": "run"}]})
    root, call = uuid.uuid4(), uuid.uuid4()
    handler.on_chain_start({"name": "graph"}, {}, run_id=root)
    handler.on_chat_model_start(
        {"name": "llm"},
        [[HumanMessage("hi")]],
        run_id=call,
        parent_run_id=root,
        invocation_params={"model": "gpt-4o-mini"},
        metadata={"ls_provider": "openai"},
    )
    assert handler.policy is not None
    assert handler.policy.budgets.reservation_state(str(call)) == "reserved"
    # The task was cancelled: LangChain calls neither on_llm_end nor on_llm_error.
    handler.on_chain_error(asyncio.CancelledError(), run_id=root)
    assert handler.policy.budgets.reservation_state(str(call)) == "released"
    assert handler.guard.in_flight() == 0 and handler.guard.active_runs() == []


def test_parent_command_handoff_is_not_an_interruption(tracker: CostTracker) -> None:
    import uuid

    from langgraph.errors import ParentCommand

    handler = FinOpsCallbackHandler(tracker)
    root, node = uuid.uuid4(), uuid.uuid4()
    handler.on_chain_start({"name": "graph"}, {}, run_id=root)
    handler.on_chain_start(
        {"name": "a"}, {}, run_id=node, parent_run_id=root, metadata={"langgraph_node": "a"}
    )
    handler.on_chain_error(ParentCommand(Command(graph=Command.PARENT, goto="b")), run_id=node)
    handler.on_chain_end({}, run_id=root)
    report = tracker.report(str(root))
    assert report.run.status == "ok"
    assert [c.span.status for c in report.tree.children] == ["ok"]


def test_a_stop_does_not_carry_over_to_the_next_invocation(tracker: CostTracker) -> None:
    handler = make_handler(tracker, {"mandatory_tags": [{"require": ["cost_center"]}]})
    graph = chatty_graph(handler, 1, checkpointer=InMemorySaver())
    config: Any = {"callbacks": [handler], "configurable": {"thread_id": "t-stale"}}
    with pytest.raises(MissingTags):
        graph.invoke({"messages": [HumanMessage("go")]}, config=config)
    config["metadata"] = {"finops": {"cost_center": "cc"}}
    out = graph.invoke({"messages": [HumanMessage("go")]}, config=config)
    assert "__interrupt__" not in out and len(out["messages"]) == 2


def test_llm_cache_hits_cost_nothing(tracker: CostTracker) -> None:
    from langchain_core.caches import InMemoryCache

    llm = ScriptedChatModel(
        script=[AIMessage("ok", usage_metadata=usage(1000, 100))], cache=InMemoryCache()
    )
    handler = FinOpsCallbackHandler(tracker)
    g = StateGraph(State)
    g.add_node("n", lambda s: {"messages": [llm.invoke("same prompt") for _ in range(3)]})
    g.add_edge(START, "n")
    g.compile().invoke({"messages": []}, config={"callbacks": [handler]})
    tracker.flush()
    (run,) = tracker.ledger.list_runs()
    trace = tracker.ledger.load_trace(run.run.trace_id)
    assert trace is not None
    sources = sorted(e.price_source for e in trace.events)
    assert sources == ["genai-prices", "llm-cache", "llm-cache"]
    assert run.cost == (1000 * Decimal("0.15") + 100 * Decimal("0.6")) / 1_000_000


def test_answers_go_to_the_request_they_name(tracker: CostTracker) -> None:
    one = run_cap(tracker, 1)
    handler = make_handler(
        tracker, {"budgets": [{"id": "cap", "limit": str(one), "period": "run", "action": "pause"}]}
    )
    graph = chatty_graph(handler, 3, checkpointer=InMemorySaver())
    config: Any = {"callbacks": [handler], "configurable": {"thread_id": "t-ids"}}
    first = graph.invoke({"messages": [HumanMessage("go")]}, config=config)
    r1 = first["__interrupt__"][0].value["approval_id"]
    # Approve just enough for one more call: the third call pauses again, in the same node.
    second = graph.invoke(
        Command(
            resume={"approval_id": r1, "decision": "approve", "by": "alice", "extra": str(one * 2)}
        ),
        config=config,
    )
    r2 = second["__interrupt__"][0].value["approval_id"]
    assert r2 != r1
    final = graph.invoke(
        Command(resume={"approval_id": r2, "decision": "deny", "by": "bob"}), config=config
    )
    assert final["__interrupt__"][0].value["reason"] == "ApprovalDenied"
    decided = {
        a.approval_id: (a.status, a.decided_by) for a in tracker.ledger.list_approvals(status=None)
    }
    assert decided == {r1: ("approved", "resume:alice"), r2: ("denied", "resume:bob")}


async def test_guarded_subgraph_runs_async(tracker: CostTracker) -> None:
    handler = make_handler(tracker, {"budgets": [{"id": "cap", "limit": "1", "period": "run"}]})
    llm = exact_model()

    async def anode(state: State) -> State:
        return {"messages": [await llm.ainvoke(state["messages"], max_tokens=100)]}

    sub = StateGraph(State)
    sub.add_node("inner", anode)  # async-only node: needs the subgraph's ainvoke
    sub.add_edge(START, "inner")
    g = StateGraph(State)
    g.add_node("sub", guard_node(sub.compile(), handler))
    g.add_edge(START, "sub")
    out = await g.compile().ainvoke(
        {"messages": [HumanMessage("go")]}, config={"callbacks": [handler]}
    )
    assert out["messages"][-1].content == "step"  # the async-only node ran
