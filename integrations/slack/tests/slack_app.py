"""An app whose runs pause over budget and are decided in Slack (tests and the bench).

Three graphs, chosen by the thread id's prefix (`chain-1`, `parallel-1`, `agent-1`):

* `chain`: three `guard_node` nodes a -> b -> c; the run cap pauses the second call.
* `parallel`: nodes a and b run at once; the cap pauses both (two requests, two messages).
* `agent`: `create_agent` with `FinOpsMiddleware` and a priced tool; the cap pauses a call.

Everything comes from the environment so the approver service (another process) rebuilds
the same app in its resume function: AGENT_FINOPS_DB_URL, SLACK_APP_CHECKPOINTS (SQLite
checkpoint file), SLACK_APP_POLICY (policy file), SLACK_APP_RESULTS (folder the resume
function writes outcomes to), SLACK_API_URL and SLACK_BOT_TOKEN (where to post).

`python slack_app.py chain-1` runs until paused and prints the approval ids (JSON).
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.types import Command

from agent_finops import CostTracker, PriceBook, PricingConfig, SQLLedger, ToolFee
from agent_finops.approvals import ApprovalService, ResumeRequest, ResumeTargets
from agent_finops.policy import load_policy
from agent_finops_langgraph import FinOpsCallbackHandler, FinOpsMiddleware, guard_node
from agent_finops_langgraph.testing import ScriptedChatModel, usage
from agent_finops_slack import SlackChannel, SlackSettings

TAGS = {"team": "qa", "agent": "researcher", "task": "ticket-7"}
CALL_COST = Decimal("0.00021")
"""One scripted call: 1000 input + 100 output tokens of gpt-4o-mini."""
FETCH_FEE = Decimal("0.01")


@tool
def fetch(url: str) -> str:
    """Fetch a page (costs a fee)."""
    return f"page {url}"


class App:
    """One process's view of the app: tracker, Slack channel, handler, checkpointer."""

    def __init__(self) -> None:
        self.ledger = ledger = SQLLedger.from_url(os.environ["AGENT_FINOPS_DB_URL"])
        prices = PriceBook(
            PricingConfig(tools=(ToolFee(name="fetch", tool="fetch", per_call=FETCH_FEE),))
        )
        self.tracker = CostTracker(ledger, prices=prices, tags=TAGS)
        policy = load_policy(os.environ["SLACK_APP_POLICY"])
        settings = SlackSettings(
            default_channel=os.environ.get("SLACK_APP_CHANNEL", "C0APPROVALS"),
            base_url=os.environ["SLACK_API_URL"],
            retry_backoff=timedelta(seconds=0.5),  # a failed post is retried soon (tests)
        )
        self.slack = SlackChannel.from_env(ledger, settings, flush=self.tracker.flush)
        approvals = ApprovalService.from_settings(ledger, policy.approvals, channels=[self.slack])
        self.handler = FinOpsCallbackHandler(
            self.tracker, policy=policy, approvals=approvals, resume_target="slack-app"
        )
        self.conn = sqlite3.connect(os.environ["SLACK_APP_CHECKPOINTS"], check_same_thread=False)
        self.saver = SqliteSaver(self.conn)

    def graph(self, kind: str) -> Any:
        if kind == "agent":
            return create_agent(
                ScriptedChatModel(script=agent_script),
                [fetch],
                middleware=[FinOpsMiddleware(self.handler)],
                checkpointer=self.saver,
            )
        llm = ScriptedChatModel(script=[AIMessage("step", usage_metadata=usage(1000, 100))])

        def work(state: MessagesState) -> dict[str, Any]:
            return {"messages": [llm.invoke(state["messages"], max_tokens=100)]}

        builder = StateGraph(MessagesState)
        for name in ("a", "b") if kind == "parallel" else ("a", "b", "c"):
            builder.add_node(name, guard_node(work, self.handler))
        if kind == "parallel":
            builder.add_edge(START, "a")
            builder.add_edge(START, "b")
        else:
            builder.add_edge(START, "a")
            builder.add_edge("a", "b")
            builder.add_edge("b", "c")
        return builder.compile(checkpointer=self.saver)

    def config(self, thread_id: str) -> Any:
        return {
            "callbacks": [self.handler],
            "configurable": {"thread_id": thread_id},
            "metadata": {"finops": dict(TAGS)},
        }

    def close(self) -> None:
        self.handler.guard.close()  # the tracker (flushed) and the budget store
        self.slack.close()
        self.conn.close()
        self.ledger.close()


def agent_script(messages: list[Any]) -> AIMessage:
    """Fetch two pages, then answer (decided by the conversation, so a replay agrees)."""
    fetched = sum(1 for m in messages if getattr(m, "type", "") == "tool")
    if fetched < 2:
        call = {"name": "fetch", "args": {"url": f"https://x/{fetched}"}, "id": f"c{fetched}"}
        return AIMessage("", tool_calls=[call], usage_metadata=usage(1000, 100))
    return AIMessage("done", usage_metadata=usage(1000, 100))


def kind_of(thread_id: str) -> str:
    return thread_id.split("-", 1)[0]


def start(thread_id: str) -> list[str]:
    """Run until paused; the approval ids the run waits for."""
    app = App()
    try:
        out = app.graph(kind_of(thread_id)).invoke(
            {"messages": [HumanMessage("go")]}, app.config(thread_id)
        )
    finally:
        app.close()
    return [i.value["approval_id"] for i in out.get("__interrupt__", ())]


def resume(request: ResumeRequest) -> str:
    """Resume the interrupt this decision answers (a parallel branch's, if several wait)."""
    app = App()
    try:
        graph = app.graph(kind_of(request.thread_id))
        config = app.config(request.thread_id)
        waiting = [
            i.id
            for i in graph.get_state(config).interrupts
            if isinstance(i.value, dict)
            and i.value.get("approval_id") == request.answer["approval_id"]
        ]
        if not waiting:
            outcome: dict[str, Any] = {
                "approval_id": request.answer["approval_id"],
                "skipped": True,
            }
        else:
            out = graph.invoke(Command(resume={waiting[0]: request.answer}), config)
            interrupts = [i.value for i in out.get("__interrupt__", ())]
            outcome = {
                "approval_id": request.answer["approval_id"],
                "decision": request.answer["decision"],
                "messages": len(out["messages"]),
                "interrupted": bool(interrupts),
                "stopped": any(v.get("kind") == "agent_finops.stopped" for v in interrupts),
                "last": str(out["messages"][-1].content)[:200],
            }
    finally:
        app.close()
    results = Path(os.environ["SLACK_APP_RESULTS"])
    results.mkdir(parents=True, exist_ok=True)
    with (results / f"{request.thread_id}.jsonl").open("a") as fh:
        fh.write(json.dumps(outcome) + "\n")
    return json.dumps(outcome)


targets = ResumeTargets({"slack-app": resume})
"""What the approver service may resume: `agent-finops serve --targets slack_app.py:targets`."""


if __name__ == "__main__":
    print(json.dumps(start(sys.argv[1])))
