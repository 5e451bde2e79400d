"""Offline demo: price every model and tool call of a LangGraph supervisor team.

A supervisor (gpt-4o-mini) routes a request to two sub-agents, each a compiled subgraph:

* ``researcher`` - claude-sonnet-4-6 with prompt caching and a paid ``web_search`` tool;
* ``writer`` - an outline from a self-hosted ``acme-llama-70b`` (priced by our own rate card),
  then the final text from the reasoning model o3-mini.

The models are `ScriptedChatModel`s: they answer from a script and report the same
``usage_metadata`` real provider integrations report (cached and reasoning tokens included),
so the demo needs no network and no API key, and the bill is the one real models would cost.

Adding cost tracking to your own graph takes three steps, marked STEP 1-3 below. Part 2
then enforces `examples/policy.yaml` on the same team (STEP 4-5), three times:

* the run crosses its run budget, **pauses** for approval (a checkpointed LangGraph
  interrupt) and resumes once approved;
* a "quick" task crosses its per-task **cap** and is stopped before the expensive call;
* a researcher that **loops** on the same web search is caught on the third identical call.

::

    python examples/supervisor_demo.py                  # ledger: ./agent-finops-demo.sqlite
    python examples/supervisor_demo.py --approve ask    # approve the pause at the prompt
    python examples/supervisor_demo.py --approve later  # approve from another shell with
                                                        # `agent-finops approvals approve`
    python examples/supervisor_demo.py --db sqlite:///other.sqlite --no-policy
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Command

from agent_finops import CostTracker, ModelPrice, PriceBook, PricingConfig, SQLLedger, ToolFee
from agent_finops.approvals import ResumeRequest, ResumeTargets
from agent_finops.cli import main as cli
from agent_finops.policy import Policy
from agent_finops.reports import render_policy
from agent_finops_langgraph import FinOpsCallbackHandler, guard_node
from agent_finops_langgraph.testing import ScriptedChatModel, usage

DEFAULT_DB = "sqlite:///agent-finops-demo.sqlite"
DEFAULT_CHECKPOINTS = "agent-finops-demo-checkpoints.sqlite"
POLICY_FILE = Path(__file__).with_name("policy.yaml")
APPROVED_EXTRA = "0.05"  # what the demo's approver lets the paused run spend beyond its budget
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
    """claude-sonnet-4-6: first two searches (writing its prompt to the cache), then a summary."""
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
    script=_researcher_says, model_name="claude-sonnet-4-6", provider="anthropic"
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


Wrap = Callable[[Any], Any]


def unguarded(node: Any) -> Any:
    """Part 1 runs the nodes as they are."""
    return node


def build_researcher(
    wrap: Wrap = unguarded, model: ScriptedChatModel | None = None
) -> CompiledStateGraph:
    """A tool-calling agent: model -> web_search -> model."""
    llm = (model or researcher_llm).bind_tools([web_search])

    def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        # Every call sets max_tokens: a call without one is reserved at the model's full
        # output ceiling (64,000 tokens for claude-sonnet-4-6), which a tight budget refuses.
        return {"messages": [llm.invoke(state["messages"], max_tokens=1_024)]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", wrap(agent))
    graph.add_node("tools", wrap(ToolNode([web_search])))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition, ["tools", END])
    graph.add_edge("tools", "agent")
    return graph.compile(name="research_agent")


def build_writer(wrap: Wrap = unguarded) -> CompiledStateGraph:
    """Outline on the self-hosted model, then the final text on a reasoning model."""

    def outline(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [outline_llm.invoke(state["messages"], max_tokens=512)]}

    def draft(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [draft_llm.invoke(state["messages"], max_tokens=2_048)]}

    graph = StateGraph(MessagesState)
    graph.add_node("outline", wrap(outline))
    graph.add_node("draft", wrap(draft))
    graph.add_edge(START, "outline")
    graph.add_edge("outline", "draft")
    graph.add_edge("draft", END)
    return graph.compile(name="writing_agent")


class TeamState(MessagesState):
    """The conversation plus the supervisor's latest decision."""

    next: str


def build_team(
    wrap: Wrap = unguarded,
    researcher: CompiledStateGraph | None = None,
    checkpointer: Any = None,
) -> CompiledStateGraph:
    """supervisor -> researcher -> supervisor -> writer -> supervisor -> end."""

    def supervisor(state: TeamState) -> dict[str, str]:
        decision = supervisor_llm.invoke(state["messages"], max_tokens=256)
        return {"next": json.loads(str(decision.content))["next"]}

    def route(state: TeamState) -> str:
        return END if state["next"] == "FINISH" else state["next"]

    graph = StateGraph(TeamState)
    graph.add_node("supervisor", wrap(supervisor))
    # A compiled subgraph is just a node. Guards go on the nodes inside it, so an approval
    # re-runs only the node that paused (the subgraph resumes from its own checkpoint).
    graph.add_node("researcher", researcher or build_researcher(wrap))
    graph.add_node("writer", build_writer(wrap))
    graph.add_edge(START, "supervisor")
    graph.add_conditional_edges("supervisor", route, ["researcher", "writer", END])
    graph.add_edge("researcher", "supervisor")
    graph.add_edge("writer", "supervisor")
    return graph.compile(name="research_team", checkpointer=checkpointer)


# -- the run ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> str:
    """Part 1 (tracking) and part 2 (enforcement); returns part 1's run id."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=DEFAULT_DB, help=f"ledger URL (default: {DEFAULT_DB})")
    parser.add_argument(
        "--checkpoints",
        default=DEFAULT_CHECKPOINTS,
        help=f"SQLite file for LangGraph checkpoints (default: {DEFAULT_CHECKPOINTS})",
    )
    parser.add_argument(
        "--approve",
        choices=["yes", "ask", "later"],
        default="yes",
        help="the paused run: approve it here (yes, default), ask at the console (ask), or "
        "leave it for `agent-finops approvals approve ... --resume` (later)",
    )
    parser.add_argument("--no-policy", action="store_true", help="run part 1 only")
    args = parser.parse_args(argv)
    trace_id = track_one_run(args.db)
    if not args.no_policy:
        enforce_policy(args.db, args.checkpoints, args.approve)
    finance_view(args.db)
    return trace_id


def finance_view(db: str) -> None:
    """Part 3: the same ledger as finance reads it: rolled up by tags, computed in SQL."""
    print()
    print("=" * 100)
    print("PART 3 - finance: every run so far in this ledger, rolled up by team and agent")
    print("=" * 100)
    today = datetime.now(UTC).date()
    since, until = (today - timedelta(days=1)).isoformat(), (today + timedelta(days=1)).isoformat()
    cli(
        [
            "rollup",
            "--db",
            db,
            "--by",
            "team,agent",
            "--period",
            "all",
            "--from",
            since,
            "--to",
            until,
        ]
    )
    print(
        "\nMore: agent-finops rollup --by team,project --period day --csv | finance-report "
        "--month YYYY-MM | export --day YYYY-MM-DD | dashboard --html spend.html (docs/finops.md)"
    )


def track_one_run(db: str) -> str:
    """Part 1: run the team once with cost tracking and print its cost report."""
    print("=" * 100)
    print("PART 1 - tracking: what every node, sub-agent, model and tool call cost")
    print("=" * 100)
    # STEP 2: one tracker and one callback handler. Tags given here apply to every run
    # this handler sees.
    ledger = SQLLedger.from_url(db)
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
    print(f"  agent-finops --db {db} runs")
    print(f"  agent-finops --db {db} report {trace_id}")
    return trace_id


# -- part 2: enforcement ----------------------------------------------------------------------


def _looping_researcher_says(messages: list[BaseMessage]) -> AIMessage:
    """A researcher stuck in a loop: it keeps asking for the very same search."""
    turn = sum(isinstance(m, ToolMessage) for m in messages)
    return AIMessage(
        content="",
        tool_calls=[
            {"name": "web_search", "args": {"query": "LLM API price cuts"}, "id": f"loop_{turn}"}
        ],
        usage_metadata=usage(900 + 150 * turn, 40),
    )


class Demo:
    """Part 2's tracker, policy engine, guarded team and checkpointer, for one process."""

    def __init__(self, db: str, checkpoints: str) -> None:
        # STEP 4: the handler enforcing a policy file on the same tracker.
        self.ledger = SQLLedger.from_url(db)
        self.tracker = CostTracker(
            self.ledger,
            prices=PriceBook(PRICING),
            tags={"team": "growth", "cost_center": "CC-4120", "environment": "demo"},
        )
        self.handler = FinOpsCallbackHandler(
            self.tracker,
            policy=Policy.from_yaml(POLICY_FILE),
            # the name of this app's resume function (see `targets` below), so that
            # `agent-finops approvals approve ID --resume --targets ...` can resume a paused run
            resume_target="supervisor-demo",
        )
        self.conn = sqlite3.connect(checkpoints, check_same_thread=False)
        saver = SqliteSaver(self.conn)

        # STEP 5: guard the nodes: a pause becomes an interrupt, a deny ends the run cleanly.
        def wrap(node: Any) -> Any:
            return guard_node(node, self.handler)

        self.team = build_team(wrap, checkpointer=saver)
        looping = ScriptedChatModel(script=_looping_researcher_says, model_name="gpt-4o-mini")
        self.looping_team = build_team(
            wrap, researcher=build_researcher(wrap, looping), checkpointer=saver
        )

    def config(self, thread_id: str, run_id: uuid.UUID, **tags: str) -> Any:
        """The config of one invocation: handler, thread, run id and this run's tags."""
        return {
            "callbacks": [self.handler],
            "configurable": {"thread_id": thread_id},
            "run_id": run_id,
            "metadata": {"finops": {"project": "market-briefs", "tenant": "acme-corp", **tags}},
        }

    def show(self, title: str, trace_id: str, result: Any) -> None:
        """Print the outcome and the policy decisions of one invocation."""
        self.tracker.flush()
        report = self.tracker.report(trace_id)
        print(f"\n--- {title}")
        what = f"run {trace_id}"
        if report.segments:  # a resumed run is reported with its whole thread
            what = f"thread {report.thread_id} ({len(report.segments)} invocations)"
        print(
            f"{what}  [{report.run.status}]  cost {report.total_cost} USD  "
            f"model calls {report.totals.model_calls}  tool calls {report.totals.tool_calls}"
        )
        for item in result.get("__interrupt__", ()):
            print(f"interrupt: {item.value.get('kind')}: {item.value.get('message')}")
        print(render_policy(report))

    def close(self) -> None:
        """Flush and release everything."""
        self.handler.guard.close()
        self.ledger.close()
        self.conn.close()


def enforce_policy(db: str, checkpoints: str, approve: str) -> None:
    """Part 2: the same team under examples/policy.yaml: pause/approve, task cap, loop."""
    # LangChain logs every exception a callback raises before re-raising it; the policy's
    # stops are expected here, and the demo prints them itself.
    logging.getLogger("langchain_core.callbacks.manager").setLevel(logging.ERROR)
    print()
    print("=" * 100)
    print(f"PART 2 - enforcement: {POLICY_FILE.name} on the same team, mid-run")
    print("=" * 100)
    demo = Demo(db, checkpoints)
    suffix = uuid.uuid4().hex[:6]
    try:
        # (a) The full brief costs more than its $0.04 run budget: it pauses for approval.
        thread = f"brief-{suffix}"
        first = uuid.uuid4()
        result = demo.team.invoke(
            {"messages": [HumanMessage(REQUEST)]},
            config=demo.config(thread, first, task=f"weekly-brief-{suffix}"),
        )
        demo.show("(a) run budget: paused for approval", str(first), result)
        (pause,) = result["__interrupt__"]
        request = pause.value
        if approve == "later":
            print(
                f"\nThe run waits for a human. From another shell:\n"
                f"  AGENT_FINOPS_DB_URL={db} AGENT_FINOPS_DEMO_CHECKPOINTS={checkpoints} \\\n"
                f"    agent-finops approvals approve {request['approval_id']} "
                f"--extra {APPROVED_EXTRA} --resume --targets {Path(__file__)}:targets"
            )
        else:
            if approve == "ask":
                answer = input(f"Approve {APPROVED_EXTRA} USD more for this run? [y/N] ")
                decision = "approve" if answer.strip().lower().startswith("y") else "deny"
            else:
                decision = "approve"
            resumed = uuid.uuid4()
            result = demo.team.invoke(
                Command(
                    resume={"decision": decision, "by": "demo-approver", "extra": APPROVED_EXTRA}
                ),
                config=demo.config(thread, resumed, task=f"weekly-brief-{suffix}"),
            )
            demo.show(f"(a) resumed after '{decision}'", str(resumed), result)

        # (b) A "quick" task has a $0.01 cap: the researcher's call would cross it.
        run_b = uuid.uuid4()
        result = demo.team.invoke(
            {"messages": [HumanMessage("Quick check: did any provider cut prices?")]},
            config=demo.config(
                f"quick-{suffix}", run_b, task=f"fact-check-{suffix}", task_kind="quick"
            ),
        )
        demo.show(
            "(b) per-task cap: stopped before the call that would cross it", str(run_b), result
        )

        # (c) A researcher stuck on the same search is caught on the third identical call.
        run_c = uuid.uuid4()
        result = demo.looping_team.invoke(
            {"messages": [HumanMessage(REQUEST)]},
            config=demo.config(f"loop-{suffix}", run_c, task=f"loop-{suffix}", agent="researcher"),
        )
        demo.show("(c) loop detection: the same tool call three times", str(run_c), result)
    finally:
        demo.close()
    print(f"\nEvery decision is in the ledger: agent-finops --db {db} report RUN_ID --json")


def resume(request: ResumeRequest) -> str:
    """Resume a paused thread for `agent-finops approvals approve ID --resume` (another process)."""
    demo = Demo(
        os.environ.get("AGENT_FINOPS_DB_URL", DEFAULT_DB),
        os.environ.get("AGENT_FINOPS_DEMO_CHECKPOINTS", DEFAULT_CHECKPOINTS),
    )
    try:
        run_id = uuid.uuid4()
        # The paused run's tags: the resumed part carries them (mandatory tags, attribution).
        result = demo.team.invoke(
            Command(resume=request.answer),
            config=demo.config(request.thread_id, run_id, **request.tags),
        )
        demo.show(f"resumed thread {request.thread_id}", str(run_id), result)
    finally:
        demo.close()
    return str(run_id)


targets = ResumeTargets({"supervisor-demo": resume})
"""What this app lets an approver resume; the ledger only names one of these."""


if __name__ == "__main__":
    main(sys.argv[1:])
