"""Offline demo: price every model and tool call of a LangGraph supervisor team.

A supervisor (gpt-4o-mini) routes a request to two sub-agents, each a compiled subgraph:

* ``researcher`` - claude-sonnet-4-5 with prompt caching and a paid ``web_search`` tool;
* ``writer`` - an outline from a self-hosted ``acme-llama-70b`` (priced by our own rate card),
  then the final text from the reasoning model o3-mini.

The models are `ScriptedChatModel`s: they answer from a script and report the same
``usage_metadata`` real provider integrations report (cached and reasoning tokens included),
so the demo needs no network and no API key, and the bill is the one real models would cost.

Adding cost tracking to your own graph takes three steps, marked STEP 1-3 below::

    python examples/supervisor_demo.py                  # ledger: ./agent-finops-demo.sqlite
    python examples/supervisor_demo.py --db sqlite:///other.sqlite
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Sequence
from decimal import Decimal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from agent_finops import CostTracker, ModelPrice, PriceBook, PricingConfig, SQLLedger, ToolFee
from agent_finops_langgraph import FinOpsCallbackHandler
from agent_finops_langgraph.testing import ScriptedChatModel, usage

DEFAULT_DB = "sqlite:///agent-finops-demo.sqlite"
REQUEST = "Write a one-page brief on this week's changes in AI model pricing."


# -- STEP 1: prices --------------------------------------------------------------------------
# List prices of public models come from the genai-prices catalog bundled with agent-finops.
# Add what the catalog cannot know: your own models' rate cards and per-call tool fees.

PRICING = PricingConfig(
    models=[
        ModelPrice(
            name="acme-gpu-cluster",  # recorded as the price source: override:acme-gpu-cluster
            model="acme-llama-*",
            input_per_mtok=Decimal("0.40"),
            output_per_mtok=Decimal("0.80"),
        )
    ],
    tools=[ToolFee(name="search-api", tool="web_search", per_call=Decimal("0.01"))],
)


# -- the agents (offline stand-ins for real models and tools) ---------------------------------


@tool
def web_search(query: str) -> str:
    """Search the web (canned results; the fee is charged per call all the same)."""
    return json.dumps([{"title": f"Result for {query}", "url": "https://example.com/pricing"}])


def _supervisor_says(messages: list[BaseMessage]) -> AIMessage:
    """gpt-4o-mini picks the next worker; its prompt grows (and gets cached) each turn."""
    done = {m.name for m in messages if isinstance(m, AIMessage)}
    if "researcher" not in done:
        choice, tokens = "researcher", usage(412, 18)
    elif "writer" not in done:
        choice, tokens = "writer", usage(1_650, 16)
    else:  # OpenAI caches the prompt prefix it saw on the previous turn
        choice, tokens = "FINISH", usage(2_480, 14, cache_read=1_536)
    return AIMessage(content=json.dumps({"next": choice}), usage_metadata=tokens)


def _researcher_says(messages: list[BaseMessage]) -> AIMessage:
    """claude-sonnet-4-5: first two searches (writing its prompt to the cache), then a summary."""
    if not isinstance(messages[-1], ToolMessage):
        return AIMessage(
            content="",
            tool_calls=[
                {"name": "web_search", "args": {"query": q}, "id": f"call_{i}"}
                for i, q in enumerate(("LLM API price cuts", "prompt caching discounts"))
            ],
            usage_metadata=usage(3_380, 156, cache_write=3_200),
        )
    return AIMessage(
        content="Findings: two providers cut list prices; cached input is now 90% cheaper.",
        name="researcher",
        usage_metadata=usage(6_100, 640, cache_read=3_200),
    )


supervisor_llm = ScriptedChatModel(script=_supervisor_says, model_name="gpt-4o-mini")
researcher_llm = ScriptedChatModel(
    script=_researcher_says, model_name="claude-sonnet-4-5", provider="anthropic"
)
outline_llm = ScriptedChatModel(
    script=[
        AIMessage("1. Price cuts  2. Caching  3. What it means", usage_metadata=usage(2_100, 350))
    ],
    model_name="acme-llama-70b",
    provider="acme",  # self-hosted: not in any public catalog, priced by PRICING above
)
draft_llm = ScriptedChatModel(
    script=[
        AIMessage(
            "AI pricing brief: ...",
            name="writer",
            usage_metadata=usage(2_600, 1_900, reasoning=1_152),
        )
    ],
    model_name="o3-mini",
)


def build_researcher() -> CompiledStateGraph:
    """A tool-calling agent: model -> web_search -> model."""
    llm = researcher_llm.bind_tools([web_search])

    def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [llm.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([web_search]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition, ["tools", END])
    graph.add_edge("tools", "agent")
    return graph.compile(name="research_agent")


def build_writer() -> CompiledStateGraph:
    """Outline on the self-hosted model, then the final text on a reasoning model."""

    def outline(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [outline_llm.invoke(state["messages"])]}

    def draft(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [draft_llm.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("outline", outline)
    graph.add_node("draft", draft)
    graph.add_edge(START, "outline")
    graph.add_edge("outline", "draft")
    graph.add_edge("draft", END)
    return graph.compile(name="writing_agent")


class TeamState(MessagesState):
    """The conversation plus the supervisor's latest decision."""

    next: str


def build_team() -> CompiledStateGraph:
    """supervisor -> researcher -> supervisor -> writer -> supervisor -> end."""

    def supervisor(state: TeamState) -> dict[str, str]:
        decision = supervisor_llm.invoke(state["messages"])
        return {"next": json.loads(str(decision.content))["next"]}

    def route(state: TeamState) -> str:
        return END if state["next"] == "FINISH" else state["next"]

    graph = StateGraph(TeamState)
    graph.add_node("supervisor", supervisor)
    graph.add_node("researcher", build_researcher())  # a compiled subgraph is just a node
    graph.add_node("writer", build_writer())
    graph.add_edge(START, "supervisor")
    graph.add_conditional_edges("supervisor", route, ["researcher", "writer", END])
    graph.add_edge("researcher", "supervisor")
    graph.add_edge("writer", "supervisor")
    return graph.compile(name="research_team")


# -- the run ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> str:
    """Run the team once with cost tracking, print its cost report; return the run id."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=DEFAULT_DB, help=f"ledger URL (default: {DEFAULT_DB})")
    args = parser.parse_args(argv)

    # STEP 2: one tracker and one callback handler. Tags given here apply to every run
    # this handler sees.
    ledger = SQLLedger.from_url(args.db)
    tracker = CostTracker(
        ledger,
        prices=PriceBook(PRICING),
        tags={"team": "growth", "cost_center": "CC-4120", "environment": "demo"},
    )
    handler = FinOpsCallbackHandler(tracker)

    # STEP 3: pass the handler in the config of the root call; LangGraph hands it to every
    # node, subgraph, model and tool. Tags for this run go in metadata["finops"].
    # The run id we choose becomes the id of the run in the ledger.
    run_id = uuid.uuid4()
    try:
        build_team().invoke(
            {"messages": [HumanMessage(REQUEST)]},
            config={
                "callbacks": [handler],
                "run_id": run_id,
                "metadata": {
                    "finops": {
                        "project": "market-briefs",
                        "task": "weekly-ai-pricing-brief",
                        "user": "ana@example.com",
                        "tenant": "acme-corp",
                    }
                },
            },
        )
        tracker.flush()  # the ledger is written in the background: wait for it
        trace_id = str(run_id)
        print(tracker.report(trace_id).render())
    finally:
        tracker.close()
        ledger.close()

    # The CLI flags come before the sub-command: `agent-finops --db URL runs`.
    print()
    print("Next, from this directory:")
    print(f"  agent-finops --db {args.db} runs")
    print(f"  agent-finops --db {args.db} report {trace_id}")
    return trace_id


if __name__ == "__main__":
    main(sys.argv[1:])
