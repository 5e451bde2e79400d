"""Offline CrewAI demo: a two-agent crew priced into the ledger, then stopped at a task cap.

A researcher delegates a line to a writer, searches the web once (a tool with a $0.005 fee)
and answers; the writer then writes the summary. The models are scripted (no network, no
API keys) and report usage the way CrewAI's OpenAI provider does, cached and reasoning
tokens included. Part 1 prints the run's cost report; part 2 runs the same crew under a
$0.008 per-task cap: the writer's second call would cross it, so the crew stops before that
request is sent, with the research task's output kept.

Needs the CrewAI integration's venv (`bash scripts/test-crewai.sh` creates it); run it with
`bash scripts/crewai-demo.sh`.
"""

from __future__ import annotations

import sys
import tempfile
from decimal import Decimal
from pathlib import Path

from crewai import Agent, Crew, Task
from crewai.tools import BaseTool

from agent_finops import CostTracker, PriceBook, PricingConfig, SQLLedger, ToolFee
from agent_finops.policy import Policy
from agent_finops_crewai import CrewStopped, FinOpsListener
from agent_finops_crewai.testing import Reply, ScriptedLLM, crewai_usage

DELEGATE = (
    "Thought: the writer should draft a line\nAction: Delegate work to coworker\n"
    'Action Input: {"task": "one line about gpu prices", "context": "for the weekly report", '
    '"coworker": "Writer"}'
)
SEARCH = 'Thought: I need prices\nAction: search\nAction Input: {"query": "gpu prices"}'
NOTES = 'Thought: check the notes\nAction: notes\nAction Input: {"topic": "gpus"}'


def final(text: str) -> str:
    """A ReAct final answer."""
    return f"Thought: I know the answer\nFinal Answer: {text}"


class Search(BaseTool):
    """A web search API billed per call (its fee is configured in the price book)."""

    name: str = "search"
    description: str = "Search the web for a query."

    def _run(self, query: str) -> str:
        return f"results for {query}: prices fell 8% this week"


class Notes(BaseTool):
    """The team's shared notes (free to read)."""

    name: str = "notes"
    description: str = "Read the team's notes on a topic."

    def _run(self, topic: str) -> str:
        return f"notes on {topic}: the research says prices fell 8%"


def build_crew() -> Crew:
    """Two agents, two tasks, a delegation and a tool, on scripted models."""
    researcher_llm = ScriptedLLM(
        model="gpt-4o-mini",
        max_tokens=500,
        script=[
            Reply(DELEGATE, crewai_usage(1200, 300, cached=1024, reasoning=64)),
            Reply(SEARCH, crewai_usage(900, 40, cached=512)),
            Reply(final("GPU prices fell 8% this week."), crewai_usage(1100, 120)),
        ],
    )
    writer_llm = ScriptedLLM(
        model="gpt-4o-mini",
        max_tokens=500,
        script=[
            Reply(final("GPUs got cheaper."), crewai_usage(300, 20)),
            Reply(NOTES, crewai_usage(50_000, 40)),  # a long context: $0.0075
            Reply(final("Summary: GPUs are 8% cheaper."), crewai_usage(6000, 90, reasoning=30)),
        ],
    )
    researcher = Agent(
        role="Researcher",
        goal="Find facts",
        backstory="A careful analyst.",
        llm=researcher_llm,
        tools=[Search()],
        allow_delegation=True,
    )
    writer = Agent(
        role="Writer",
        goal="Write clearly",
        backstory="A columnist.",
        llm=writer_llm,
        tools=[Notes()],
    )
    return Crew(
        name="market-team",
        agents=[researcher, writer],
        tasks=[
            Task(
                name="research",
                description="Research gpu prices.",
                expected_output="notes",
                agent=researcher,
            ),
            Task(
                name="write",
                description="Write the summary.",
                expected_output="a summary",
                agent=writer,
            ),
        ],
    )


def main() -> int:
    """Run both parts; returns the exit code."""
    prices = PriceBook(
        PricingConfig(tools=[ToolFee(name="search-api", tool="search", per_call=Decimal("0.005"))])
    )
    ledger = SQLLedger.from_url(f"sqlite:///{Path(tempfile.mkdtemp()) / 'ledger.sqlite'}")
    tracker = CostTracker(ledger, prices=prices, tags={"team": "research"})

    print("== Part 1: the crew's cost report")
    listener = FinOpsListener(tracker)
    build_crew().kickoff()
    (run,) = tracker.ledger.list_runs(limit=1)
    print(tracker.report(run.run.trace_id).render())
    listener.detach()

    print("\n== Part 2: the same crew under a $0.008 per-task cap")
    cap = Policy.from_mapping(
        {"version": 1, "budgets": [{"id": "task-cap", "limit": "0.008", "period": "task"}]}
    )
    listener = FinOpsListener(tracker, policy=cap)
    try:
        output = build_crew().kickoff()
        print(f"finished under the cap: {output.raw}")
    except CrewStopped as stop:
        print(f"stopped: {type(stop.error).__name__}: {stop.error}")
        print(f"kept: {[output.raw for output in stop.outputs]}")
        (run,) = tracker.ledger.list_runs(limit=1)
        report = tracker.report(run.run.trace_id)
        print(f"run {report.run.status}, spent {report.total_cost} USD; by task:")
        for rollup in report.by_task:
            print(f"  {rollup.key}: {rollup.totals.cost} USD")
    finally:
        listener.detach()
        tracker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
