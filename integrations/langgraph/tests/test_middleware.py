"""FinOpsMiddleware on a real `langchain.agents.create_agent` agent."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from agent_finops import CostTracker, PriceBook, PricingConfig, SQLLedger, ToolFee
from agent_finops.policy import Policy, PolicyEngine
from agent_finops_langgraph import (
    APPROVAL_KIND,
    STOP_PREFIX,
    FinOpsCallbackHandler,
    FinOpsMiddleware,
)
from agent_finops_langgraph.testing import ScriptedChatModel, usage


@tool
def fetch(url: str) -> str:
    """Fetch a page (costs a fee)."""
    return f"page {url}"


@pytest.fixture
def tracker(tmp_path: Any) -> Iterator[CostTracker]:
    prices = PriceBook(
        PricingConfig(tools=(ToolFee(name="fetch", tool="fetch", per_call=Decimal("0.02")),))
    )
    t = CostTracker(SQLLedger.from_url(f"sqlite:///{tmp_path}/l.sqlite"), prices=prices)
    yield t
    t.close()


def agent_for(
    tracker: CostTracker, policy: dict[str, Any], *, checkpointer: Any = None
) -> tuple[Any, FinOpsCallbackHandler]:
    handler = FinOpsCallbackHandler(
        tracker, policy=PolicyEngine(Policy.from_mapping(policy), tracker)
    )
    pages = iter(range(100))

    def script(messages: list[Any]) -> AIMessage:
        n = next(pages)
        if n < 3:
            return AIMessage(
                "",
                tool_calls=[{"name": "fetch", "args": {"url": f"https://x/{n}"}, "id": f"c{n}"}],
                usage_metadata=usage(200, 20),
            )
        return AIMessage("done", usage_metadata=usage(300, 30))

    agent = create_agent(
        ScriptedChatModel(script=script),
        [fetch],
        middleware=[FinOpsMiddleware(handler)],
        checkpointer=checkpointer,
    )
    return agent, handler


def test_deny_ends_the_agent_with_a_final_message(tracker: CostTracker) -> None:
    agent, handler = agent_for(
        tracker, {"budgets": [{"id": "cap", "limit": "0.05", "period": "run"}]}
    )
    out = agent.invoke(
        {"messages": [HumanMessage("read three pages")]}, config={"callbacks": [handler]}
    )
    last = out["messages"][-1]
    assert isinstance(last, (AIMessage,)) or last.type == "tool"
    texts = [m.content for m in out["messages"] if isinstance(m.content, str)]
    assert any(t.startswith(STOP_PREFIX) for t in texts)
    tracker.flush()
    (summary,) = tracker.ledger.list_runs()
    assert summary.run.status == "stopped"
    assert summary.cost <= Decimal("0.05")
    assert summary.tool_calls == 2  # the third fee would cross the cap


def test_pause_interrupts_and_approval_resumes(tracker: CostTracker) -> None:
    agent, handler = agent_for(
        tracker,
        {"budgets": [{"id": "cap", "limit": "0.05", "period": "run", "action": "pause"}]},
        checkpointer=InMemorySaver(),
    )
    config: Any = {"callbacks": [handler], "configurable": {"thread_id": "agent-1"}}
    first = agent.invoke({"messages": [HumanMessage("read three pages")]}, config=config)
    (pause,) = first["__interrupt__"]
    assert pause.value["kind"] == APPROVAL_KIND and pause.value["rule_id"] == "cap"
    final = agent.invoke(
        Command(resume={"decision": "approve", "by": "carol", "extra": "0.10"}), config=config
    )
    assert final["messages"][-1].content == "done"
    tracker.flush()
    assert sum(s.tool_calls for s in tracker.ledger.list_runs()) == 3
