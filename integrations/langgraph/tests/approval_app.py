"""A tiny app for the cross-process approval test: run until paused; resume from elsewhere.

Paths come from the environment so a second process (the console approver) can rebuild it:
AGENT_FINOPS_DB_URL (ledger) and APPROVAL_APP_CHECKPOINTS (SQLite checkpoint file).
"""

from __future__ import annotations

import os
import sqlite3
import sys
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.types import Command

from agent_finops import CostTracker, SQLLedger
from agent_finops.approvals import ResumeRequest, ResumeTargets
from agent_finops.policy import Policy
from agent_finops_langgraph import FinOpsCallbackHandler, guard_node
from agent_finops_langgraph.testing import ScriptedChatModel, usage

POLICY = {"budgets": [{"id": "run-cap", "limit": "0.0003", "period": "run", "action": "pause"}]}


def build() -> tuple[Any, FinOpsCallbackHandler, sqlite3.Connection]:
    tracker = CostTracker(
        SQLLedger.from_url(os.environ["AGENT_FINOPS_DB_URL"]), tags={"team": "qa"}
    )
    handler = FinOpsCallbackHandler(
        tracker, policy=Policy.from_mapping(POLICY), resume_target="approval-app"
    )
    llm = ScriptedChatModel(script=[AIMessage("step", usage_metadata=usage(1000, 100))])

    def work(state: MessagesState) -> dict[str, Any]:
        return {"messages": [llm.invoke(state["messages"], max_tokens=100)]}

    builder = StateGraph(MessagesState)
    builder.add_node("a", guard_node(work, handler))
    builder.add_node("b", guard_node(work, handler))
    builder.add_node("c", guard_node(work, handler))
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", "c")
    conn = sqlite3.connect(os.environ["APPROVAL_APP_CHECKPOINTS"], check_same_thread=False)
    return builder.compile(checkpointer=SqliteSaver(conn)), handler, conn


def _config(handler: FinOpsCallbackHandler, thread_id: str) -> Any:
    return {"callbacks": [handler], "configurable": {"thread_id": thread_id}}


def start(thread_id: str) -> None:
    graph, handler, conn = build()
    out = graph.invoke({"messages": [HumanMessage("go")]}, _config(handler, thread_id))
    handler.tracker.close()
    conn.close()
    (pause,) = out["__interrupt__"]
    print(pause.value["approval_id"])


def resume(request: ResumeRequest) -> str:
    graph, handler, conn = build()
    out = graph.invoke(Command(resume=request.answer), _config(handler, request.thread_id))
    handler.tracker.close()
    conn.close()
    return f"messages={len(out['messages'])} interrupted={'__interrupt__' in out}"


targets = ResumeTargets({"approval-app": resume})
"""What the console approver may resume: `agent-finops approvals approve ID --resume
--targets approval_app.py:targets`."""


if __name__ == "__main__":
    start(sys.argv[1])
