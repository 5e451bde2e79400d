"""FinOpsCallbackHandler on real LangGraph graphs with scripted models (offline)."""

from __future__ import annotations

import operator
from collections.abc import Iterator
from decimal import Decimal
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import interrupt

from agent_finops import CostTracker, HandlerError, PriceBook, PricingConfig, SQLLedger, ToolFee
from agent_finops.reports import RunReport
from agent_finops_langgraph import FinOpsCallbackHandler
from agent_finops_langgraph.testing import ScriptedChatModel, usage

M = Decimal(1_000_000)


def mini(inp: int, out: int, cached: int = 0) -> Decimal:
    """gpt-4o-mini list price: $0.15 / $0.075 cached / $0.60 per MTok."""
    return (
        (inp - cached) * Decimal("0.15") + cached * Decimal("0.075") + out * Decimal("0.60")
    ) / M


class State(TypedDict):
    messages: Annotated[list[AnyMessage], operator.add]


@tool
def web_search(query: str) -> str:
    """Search the web."""
    return f"results for {query}"


@pytest.fixture
def tracker(tmp_path: Any) -> Iterator[CostTracker]:
    prices = PriceBook(
        PricingConfig(tools=(ToolFee(name="search", tool="web_search", per_call=Decimal("0.01")),))
    )
    t = CostTracker(
        SQLLedger.from_url(f"sqlite:///{tmp_path}/l.sqlite"), prices=prices, tags={"team": "qa"}
    )
    yield t
    t.close()


def model_node(llm: ScriptedChatModel) -> Any:
    def call(state: State) -> dict[str, list[AnyMessage]]:
        return {"messages": [llm.invoke(state["messages"])]}

    return call


def researcher_subgraph() -> Any:
    llm = ScriptedChatModel(
        script=[
            AIMessage(
                "",
                tool_calls=[{"name": "web_search", "args": {"query": "q"}, "id": "c1"}],
                usage_metadata=usage(1000, 50, cache_read=400, reasoning=20),
            ),
            AIMessage("found it", usage_metadata=usage(1200, 80)),
        ]
    )
    sub = StateGraph(State)
    sub.add_node("agent", model_node(llm))
    sub.add_node("tools", ToolNode([web_search]))
    sub.add_edge(START, "agent")
    sub.add_conditional_edges(
        "agent", lambda s: "tools" if s["messages"][-1].tool_calls else END, ["tools", END]
    )
    sub.add_edge("tools", "agent")
    return sub.compile()


def supervisor_graph() -> Any:
    sup = ScriptedChatModel(script=[AIMessage("route: researcher", usage_metadata=usage(300, 10))])
    g = StateGraph(State)
    g.add_node("supervisor", model_node(sup))
    g.add_node("researcher", researcher_subgraph())
    g.add_edge(START, "supervisor")
    g.add_edge("supervisor", "researcher")
    g.add_edge("researcher", END)
    return g.compile()


EXPECTED = mini(300, 10) + mini(1000, 50, 400) + mini(1200, 80) + Decimal("0.01")


def last_report(tracker: CostTracker) -> RunReport:
    tracker.flush()
    (summary,) = tracker.ledger.list_runs(limit=1)
    return tracker.report(summary.run.trace_id)


def test_nested_subgraphs_tree_and_totals(tracker: CostTracker) -> None:
    handler = FinOpsCallbackHandler(tracker, strict=True)
    supervisor_graph().invoke(
        {"messages": [HumanMessage("hi")]},
        config={"callbacks": [handler], "metadata": {"finops": {"task": "ticket-7", "user": "u1"}}},
    )
    report = last_report(tracker)
    assert report.total_cost == EXPECTED
    assert report.run.tags == {"team": "qa", "task": "ticket-7", "user": "u1"}
    assert [c.span.name for c in report.tree.children] == ["supervisor", "researcher"]
    by_node = {r.key: r.totals for r in report.by_node}
    assert set(by_node) == {"supervisor", "researcher > agent", "researcher > tools"}
    assert by_node["researcher > agent"].model_calls == 2
    assert by_node["researcher > agent"].cache_read_tokens == 400
    assert by_node["researcher > agent"].reasoning_tokens == 20
    assert by_node["researcher > tools"].cost == Decimal("0.01")
    assert {r.key: r.totals.cost for r in report.by_agent} == {
        "supervisor": mini(300, 10),
        "researcher": EXPECTED - mini(300, 10),
    }
    assert handler.errors == 0


def test_streaming_uses_usage_from_the_final_chunk(tracker: CostTracker) -> None:
    handler = FinOpsCallbackHandler(tracker, strict=True)
    chunks = list(
        supervisor_graph().stream(
            {"messages": [HumanMessage("hi")]},
            config={"callbacks": [handler]},
            stream_mode="messages",
        )
    )
    assert chunks  # tokens really streamed
    assert last_report(tracker).total_cost == EXPECTED


async def test_async_invoke_and_stream(tracker: CostTracker) -> None:
    handler = FinOpsCallbackHandler(tracker, strict=True)
    graph = supervisor_graph()
    await graph.ainvoke({"messages": [HumanMessage("hi")]}, config={"callbacks": [handler]})
    assert last_report(tracker).total_cost == EXPECTED
    async for _ in graph.astream(
        {"messages": [HumanMessage("hi")]}, config={"callbacks": [handler]}, stream_mode="messages"
    ):
        pass
    assert last_report(tracker).total_cost == EXPECTED
    assert len(tracker.ledger.list_runs()) == 2


def test_parallel_branches_each_priced_once(tracker: CostTracker) -> None:
    g = StateGraph(State)
    for name, (inp, out) in {"a": (100, 10), "b": (200, 20), "c": (300, 30)}.items():
        g.add_node(
            name,
            model_node(ScriptedChatModel(script=[AIMessage(name, usage_metadata=usage(inp, out))])),
        )
        g.add_edge(START, name)
        g.add_edge(name, END)
    handler = FinOpsCallbackHandler(tracker, strict=True)
    g.compile().invoke(
        {"messages": [HumanMessage("go")]}, config={"callbacks": [handler], "max_concurrency": 3}
    )
    report = last_report(tracker)
    assert report.total_cost == mini(100, 10) + mini(200, 20) + mini(300, 30)
    assert {r.key: r.totals.model_calls for r in report.by_node} == {"a": 1, "b": 1, "c": 1}


def test_retried_model_call_is_priced_per_attempt_that_returned(tracker: CostTracker) -> None:
    attempts = {"n": 0}

    def flaky(messages: list[Any]) -> AIMessage:
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise ConnectionError("transient")
        return AIMessage("ok", usage_metadata=usage(100, 10))

    llm = ScriptedChatModel(script=flaky).with_retry(
        stop_after_attempt=2, wait_exponential_jitter=False
    )
    g = StateGraph(State)
    g.add_node("n", lambda s: {"messages": [llm.invoke(s["messages"])]})
    g.add_edge(START, "n")
    g.compile().invoke(
        {"messages": [HumanMessage("x")]}, config={"callbacks": [FinOpsCallbackHandler(tracker)]}
    )
    report = last_report(tracker)
    assert attempts["n"] == 2
    assert report.totals.model_calls == 1
    assert report.total_cost == mini(100, 10)


def test_interrupt_marks_the_run_interrupted(tracker: CostTracker) -> None:
    def ask(state: State) -> dict[str, list[AnyMessage]]:
        answer = interrupt("approve?")
        return {"messages": [HumanMessage(str(answer))]}

    g = StateGraph(State)
    g.add_node("ask", ask)
    g.add_edge(START, "ask")
    graph = g.compile(checkpointer=InMemorySaver())
    handler = FinOpsCallbackHandler(tracker, strict=True)
    graph.invoke(
        {"messages": []}, config={"callbacks": [handler], "configurable": {"thread_id": "t1"}}
    )
    report = last_report(tracker)
    assert report.run.status in {"ok", "interrupted"}
    ask_span = report.tree.children[0]
    assert ask_span.span.status == "interrupted"


def test_internal_error_never_breaks_the_run(
    tracker: CostTracker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("bug in agent-finops")

    monkeypatch.setattr(tracker, "record_model_call", broken)
    handler = FinOpsCallbackHandler(tracker)
    out = supervisor_graph().invoke(
        {"messages": [HumanMessage("hi")]}, config={"callbacks": [handler]}
    )
    assert out["messages"][-1].content == "found it"
    assert handler.errors == 3
    assert "bug in agent-finops" in caplog.text


def test_strict_handler_surfaces_internal_errors(
    tracker: CostTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("bug in agent-finops")

    monkeypatch.setattr(tracker, "record_model_call", broken)
    with pytest.raises(HandlerError, match="bug in agent-finops"):
        supervisor_graph().invoke(
            {"messages": [HumanMessage("hi")]},
            config={"callbacks": [FinOpsCallbackHandler(tracker, strict=True)]},
        )
