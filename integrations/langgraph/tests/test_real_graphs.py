"""Correct stops on ordinary LangGraph apps: hand-overs, bare model calls, agents, tool counts."""

from __future__ import annotations

import operator
from collections.abc import Iterator
from decimal import Decimal
from typing import Annotated, Any, TypedDict

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

from agent_finops import ConfigurationError, CostTracker, MissingTags, SQLLedger
from agent_finops.policy import Policy
from agent_finops_langgraph import (
    APPROVAL_KIND,
    STOPPED_KIND,
    FinOpsCallbackHandler,
    FinOpsMiddleware,
    guard_node,
)
from agent_finops_langgraph.testing import ScriptedChatModel, usage

PING_PONG = {"loops": [{"kind": "ping_pong", "id": "handoffs", "max_cycles": 3}]}


class State(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], operator.add]
    turns: int


@tool
def search(query: str) -> str:
    """Search (no fee)."""
    return f"results for {query}"


@pytest.fixture
def tracker(tmp_path: Any) -> Iterator[CostTracker]:
    t = CostTracker(SQLLedger.from_url(f"sqlite:///{tmp_path}/l.sqlite"), tags={"team": "qa"})
    yield t
    t.close()


def handler_for(tracker: CostTracker, policy: dict[str, Any]) -> FinOpsCallbackHandler:
    return FinOpsCallbackHandler(tracker, policy=Policy.from_mapping(policy))


def tool_agent(rounds: int, *, name: str | None = None, middleware: Any = ()) -> Any:
    """A create_agent agent that makes `rounds` tool round trips, then answers."""
    turn = iter(range(1000))

    def script(messages: list[Any]) -> AIMessage:
        n = next(turn)
        if n % (rounds + 1) < rounds:
            call = {"name": "search", "args": {"query": f"q{n}"}, "id": f"c{n}"}
            return AIMessage("", tool_calls=[call], usage_metadata=usage(100, 10))
        return AIMessage("done", usage_metadata=usage(100, 10))

    return create_agent(
        ScriptedChatModel(script=script), [search], name=name, middleware=list(middleware)
    )


def test_an_agents_own_model_tools_loop_is_not_ping_pong(tracker: CostTracker) -> None:
    handler = handler_for(tracker, PING_PONG)
    agent = tool_agent(6, middleware=[FinOpsMiddleware(handler)])
    out = agent.invoke({"messages": [HumanMessage("dig")]}, config={"callbacks": [handler]})
    assert out["messages"][-1].content == "done"  # six tool round trips, never stopped
    tracker.flush()
    (summary,) = tracker.ledger.list_runs()
    assert summary.run.status == "ok"
    assert (summary.model_calls, summary.tool_calls) == (7, 6)  # every tool call is counted
    report = tracker.report(summary.run.trace_id)
    assert [r.key for r in report.by_agent] == ["LangGraph"]  # the agent, not its `model` node


def test_a_named_agent_is_the_agent_in_reports(tracker: CostTracker) -> None:
    handler = FinOpsCallbackHandler(tracker)
    agent = tool_agent(2, name="researcher")
    agent.invoke({"messages": [HumanMessage("dig")]}, config={"callbacks": [handler]})
    tracker.flush()
    (summary,) = tracker.ledger.list_runs()
    assert summary.run.name == "researcher"
    report = tracker.report(summary.run.trace_id)
    assert [(r.key, r.totals.model_calls, r.totals.tool_calls) for r in report.by_agent] == [
        ("researcher", 3, 2)
    ]


def supervisor_team(handler: FinOpsCallbackHandler, *, hand_overs: int) -> Any:
    """A supervisor handing back and forth to a researcher sub-agent (a create_agent subgraph)."""
    boss = ScriptedChatModel(script=[AIMessage("delegate", usage_metadata=usage(50, 5))])
    researcher = tool_agent(1, name="researcher")

    def supervisor(state: State) -> State:
        return {"messages": [boss.invoke(state["messages"])], "turns": state.get("turns", 0) + 1}

    def route(state: State) -> str:
        return "researcher" if state["turns"] <= hand_overs else END

    g = StateGraph(State)
    g.add_node("supervisor", guard_node(supervisor, handler))
    g.add_node("researcher", guard_node(researcher, handler))
    g.add_edge(START, "supervisor")
    g.add_conditional_edges("supervisor", route, ["researcher", END])
    g.add_edge("researcher", "supervisor")
    return g.compile(name="team")


def test_supervisor_ping_pong_with_a_sub_agent_is_caught(tracker: CostTracker) -> None:
    handler = handler_for(tracker, PING_PONG)
    team = supervisor_team(handler, hand_overs=10)
    out = team.invoke({"messages": [HumanMessage("go")], "turns": 0}, {"callbacks": [handler]})
    (stop,) = out["__interrupt__"]
    assert stop.value["kind"] == STOPPED_KIND and stop.value["rule_id"] == "handoffs"
    assert "'supervisor' and 'researcher' handed over" in stop.value["message"]
    tracker.flush()
    (summary,) = tracker.ledger.list_runs()
    assert summary.run.status == "stopped"
    # Stopped at the first model call of the third researcher visit: 3 supervisor turns
    # plus 2 full researcher visits (2 model calls each) reached the model.
    assert summary.model_calls == 3 + 2 * 2


def test_a_short_delegation_is_not_ping_pong(tracker: CostTracker) -> None:
    handler = handler_for(tracker, PING_PONG)
    team = supervisor_team(handler, hand_overs=2)
    out = team.invoke({"messages": [HumanMessage("go")], "turns": 0}, {"callbacks": [handler]})
    assert "__interrupt__" not in out
    assert out["turns"] == 3


def test_a_bare_model_call_is_checked_for_mandatory_tags(tracker: CostTracker) -> None:
    handler = handler_for(tracker, {"mandatory_tags": [{"require": ["project"]}]})
    sent: list[Any] = []

    def script(messages: list[Any]) -> AIMessage:
        sent.append(messages)
        return AIMessage("hi", usage_metadata=usage(10, 1))

    model = ScriptedChatModel(script=script)
    with pytest.raises(MissingTags, match="project"):
        model.invoke("hello", config={"callbacks": [handler]})
    assert sent == []  # refused before the request
    model.invoke("hello", config={"callbacks": [handler], "metadata": {"finops": {"project": "p"}}})
    assert len(sent) == 1


def test_a_bare_tool_call_is_checked_for_mandatory_tags(tracker: CostTracker) -> None:
    handler = handler_for(tracker, {"mandatory_tags": [{"require": ["project"]}]})
    with pytest.raises(MissingTags):
        search.invoke({"query": "x"}, config={"callbacks": [handler]})


def parallel_pauses(handler: FinOpsCallbackHandler) -> Any:
    """After a first call ($0.00021), two branches whose calls would each cross the cap."""
    llm = ScriptedChatModel(script=[AIMessage("ok", usage_metadata=usage(1000, 100))])

    def work(state: State) -> State:
        return {"messages": [llm.invoke(state["messages"], max_tokens=100)]}

    g = StateGraph(State)
    g.add_node("first", guard_node(work, handler))
    g.add_node("left", guard_node(work, handler))
    g.add_node("right", guard_node(work, handler))
    g.add_edge(START, "first")
    g.add_edge("first", "left")
    g.add_edge("first", "right")
    g.add_edge("left", END)
    g.add_edge("right", END)
    return g.compile(checkpointer=InMemorySaver())


def test_parallel_pauses_are_answered_by_interrupt_id_once_each(tracker: CostTracker) -> None:
    policy = {"budgets": [{"id": "cap", "limit": "0.00025", "period": "run", "action": "pause"}]}
    handler = handler_for(tracker, policy)
    graph = parallel_pauses(handler)
    config: Any = {"callbacks": [handler], "configurable": {"thread_id": "par-1"}}
    out = graph.invoke({"messages": [HumanMessage("go")]}, config)
    pauses = out["__interrupt__"]
    assert len(pauses) == 2 and {p.value["kind"] for p in pauses} == {APPROVAL_KIND}
    ids = {p.value["approval_id"] for p in pauses}
    assert len(ids) == 2  # one request per paused branch
    answers = {p.id: {"decision": "approve", "by": "ops", "extra": "0.01"} for p in pauses}
    done = graph.invoke(Command(resume=answers), config)
    assert "__interrupt__" not in done and len(done["messages"]) == 4
    # A second, identical resume is a no-op: nothing is asked again, nothing re-decided.
    again = graph.invoke(Command(resume=answers), config)
    assert "__interrupt__" not in again
    assert handler.guard.approvals is not None
    decided = [handler.guard.approvals.get(i) for i in ids]
    assert {(a.status, a.decided_by) for a in decided} == {("approved", "resume:ops")}


def test_a_malformed_resume_value_is_a_clear_error_and_the_run_stays_paused(
    tracker: CostTracker,
) -> None:
    policy = {"budgets": [{"id": "cap", "limit": "0.00025", "period": "run", "action": "pause"}]}
    handler = handler_for(tracker, policy)
    graph = parallel_pauses(handler)
    config: Any = {"callbacks": [handler], "configurable": {"thread_id": "par-2"}}
    out = graph.invoke({"messages": [HumanMessage("go")]}, config)
    first = out["__interrupt__"][0]
    with pytest.raises(ConfigurationError, match="extra"):
        graph.invoke(Command(resume={first.id: {"decision": "approve", "extra": "lots"}}), config)
    state = graph.get_state(config)
    assert len(state.interrupts) == 2  # still paused, both requests pending
    assert handler.guard.approvals is not None
    assert len(handler.guard.approvals.requests(status="pending")) == 2


def test_resuming_without_a_decision_asks_again(tracker: CostTracker) -> None:
    policy = {"budgets": [{"id": "cap", "limit": "0.00025", "period": "run", "action": "pause"}]}
    handler = handler_for(tracker, policy)
    graph = parallel_pauses(handler)
    config: Any = {"callbacks": [handler], "configurable": {"thread_id": "par-3"}}
    out = graph.invoke({"messages": [HumanMessage("go")]}, config)
    nudges = {p.id: {"note": "no decision yet"} for p in out["__interrupt__"]}
    again = graph.invoke(Command(resume=nudges), config)
    assert {p.value["kind"] for p in again["__interrupt__"]} == {APPROVAL_KIND}
    assert Decimal(again["__interrupt__"][0].value["limit"]) == Decimal("0.00025")
