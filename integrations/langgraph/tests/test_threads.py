"""A paused-then-resumed LangGraph thread reads as one story: one report, segments, totals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command

from agent_finops import CostTracker, SQLLedger
from agent_finops.cli import main as cli
from agent_finops.policy import Policy
from agent_finops.reports import load_run_report
from agent_finops_langgraph import FinOpsCallbackHandler, guard_node
from agent_finops_langgraph.testing import ScriptedChatModel, usage

CALL = (1000 * Decimal("0.15") + 100 * Decimal("0.60")) / 1_000_000  # gpt-4o-mini, per call


@pytest.fixture
def tracker(tmp_path: Any) -> Iterator[CostTracker]:
    t = CostTracker(SQLLedger.from_url(f"sqlite:///{tmp_path}/l.sqlite"), tags={"team": "qa"})
    yield t
    t.close()


def paused_thread(tracker: CostTracker) -> tuple[Any, list[str], Any]:
    """Three one-call nodes under a cap of two calls: pause, approve, resume, resume again.

    The second resume finds the thread finished: a no-op invocation.
    """
    handler = FinOpsCallbackHandler(
        tracker,
        policy=Policy.from_mapping(
            {"budgets": [{"id": "cap", "limit": str(CALL * 2), "period": "run", "action": "pause"}]}
        ),
    )
    llm = ScriptedChatModel(script=[AIMessage("step", usage_metadata=usage(1000, 100))])

    def work(state: MessagesState) -> dict[str, Any]:
        return {"messages": [llm.invoke(state["messages"], max_tokens=100)]}

    g = StateGraph(MessagesState)
    for name in ("a", "b", "c"):
        g.add_node(name, guard_node(work, handler))
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    g.add_edge("c", END)
    graph = g.compile(checkpointer=InMemorySaver(), name="brief-writer")
    config: Any = {"callbacks": [handler], "configurable": {"thread_id": "thread-7"}}
    out = graph.invoke({"messages": [HumanMessage("go")]}, config)
    assert out["__interrupt__"]
    graph.invoke(Command(resume={"decision": "approve", "by": "ops", "extra": "1"}), config)
    graph.invoke(Command(resume={"decision": "approve"}), config)  # nothing left to do
    tracker.flush()
    runs = sorted(tracker.ledger.list_runs(), key=lambda s: s.run.started_at)
    return graph, [s.run.trace_id for s in runs], handler


def test_report_on_the_thread_or_any_of_its_runs_shows_the_whole_thread(
    tracker: CostTracker,
) -> None:
    _, trace_ids, _ = paused_thread(tracker)
    assert len(trace_ids) == 3  # paused, resumed, no-op resume
    by_thread = load_run_report(tracker.ledger, "thread-7")
    assert by_thread.thread_id == "thread-7" and by_thread.run.name == "brief-writer"
    assert [s.run.status for s in by_thread.segments] == ["interrupted", "ok", "ok"]
    assert [s.noop for s in by_thread.segments] == [False, False, True]
    assert by_thread.total_cost == CALL * 3  # the thread's cost, not one invocation's
    assert by_thread.totals.model_calls == 3
    assert sum(s.totals.cost for s in by_thread.segments) == by_thread.total_cost
    actions = [d.action for d in by_thread.decisions]
    assert "pause" in actions and "approved" in actions
    assert [a.status for a in by_thread.approvals] == ["approved"]
    assert len(by_thread.tree.children) == 2  # the no-op resume is not in the tree
    for trace_id in trace_ids:  # from any of its runs, the same story
        again = load_run_report(tracker.ledger, trace_id[:18])
        assert again.to_dict()["totals"] == by_thread.to_dict()["totals"]
    single = load_run_report(tracker.ledger, trace_ids[0], whole_thread=False)
    assert single.segments == [] and single.total_cost == CALL * 2


def test_cli_runs_has_a_thread_column_and_hides_noop_resumes(
    tracker: CostTracker, capsys: pytest.CaptureFixture[str]
) -> None:
    _, trace_ids, _ = paused_thread(tracker)
    url = str(tracker.ledger.engine.url)
    assert cli(["--db", url, "runs"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["run", "id", "thread"]
    assert out.count("thread-7") == 2 and "brief-writer" in out
    assert "1 resume(s) that did nothing not shown" in out
    assert cli(["--db", url, "runs", "--all", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["thread_id"] for r in rows} == {"thread-7"} and len(rows) == 3
    assert cli(["--db", url, "report", "thread-7"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Thread thread-7  brief-writer  [ok]")
    assert "3 invocations" in text and "(+1 resume(s) that did nothing)" in text
    assert cli(["--db", url, "report", trace_ids[0], "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["thread"]["thread_id"] == "thread-7" and len(data["thread"]["segments"]) == 3
    assert Decimal(data["totals"]["cost_usd"]) == CALL * 3
