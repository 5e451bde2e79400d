"""Threshold alerts from a real policy run reach Slack once per bucket and threshold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import START, MessagesState, StateGraph
from slack_helpers import SEARCH_CHANNEL

from agent_finops import CostTracker, SQLLedger
from agent_finops.approvals import ApprovalService
from agent_finops.policy import Policy
from agent_finops_langgraph import FinOpsCallbackHandler
from agent_finops_langgraph.testing import ScriptedChatModel, usage
from agent_finops_slack import SlackChannel, SlackSettings, web_client
from agent_finops_slack.testing import SlackEmulator

POLICY = {
    "budgets": [
        {
            "id": "daily",
            "limit": "0.0002",
            "period": "daily",
            "scope": {"team": "*"},
            "thresholds": [50, 80],
            "action": "warn",
        }
    ]
}


def run_calls(tmp_path: Path, slack: SlackEmulator, settings: SlackSettings, calls: int) -> None:
    """One process's life: `calls` model calls for team search, then exit."""
    ledger = SQLLedger.from_url(f"sqlite:///{tmp_path}/ledger.sqlite")
    tracker = CostTracker(ledger, tags={"team": "search"})
    channel = SlackChannel(
        ledger, client=web_client(slack.bot_token, base_url=slack.base_url), settings=settings
    )
    policy = Policy.from_mapping(POLICY)
    approvals = ApprovalService.from_settings(ledger, policy.approvals, channels=[channel])
    handler = FinOpsCallbackHandler(tracker, policy=policy, approvals=approvals)
    # Each call reserves about $0.00006 and costs a little less: thresholds are judged on
    # spend plus reservations when a call is reserved.
    llm = ScriptedChatModel(script=[AIMessage("x", usage_metadata=usage(1, 100))])

    def work(state: MessagesState) -> dict[str, Any]:
        return {"messages": [llm.invoke(state["messages"], max_tokens=100)]}

    builder = StateGraph(MessagesState)
    builder.add_node("work", work)
    builder.add_edge(START, "work")
    graph = builder.compile()
    for _ in range(calls):
        graph.invoke(
            {"messages": [HumanMessage("go")]},
            config={"callbacks": [handler], "metadata": {"finops": {"team": "search"}}},
        )
    tracker.close()
    channel.close()
    ledger.close()


def test_alerts_once_per_threshold_routed_and_not_repeated_after_a_restart(
    tmp_path: Path, slack: SlackEmulator, settings: SlackSettings
) -> None:
    run_calls(tmp_path, slack, settings, 2)  # ~$0.00012 of $0.0002: past 50%
    run_calls(tmp_path, slack, settings, 2)  # a new process: past 80% (and the limit)
    run_calls(tmp_path, slack, settings, 1)  # and another: nothing new to say
    posts = slack.calls_to("chat.postMessage", ok=True)
    texts = [c.params["text"] for c in posts]
    assert len(texts) == 2, texts
    assert "is at 50%" in texts[0] and "is at 80%" in texts[1]
    assert all("daily (team=search)" in t for t in texts)
    assert {c.params["channel"] for c in posts} == {SEARCH_CHANNEL}  # routed by team
