"""The test crew: two agents, two tasks, one delegation and one tool with a fee.

`Researcher` (task `research`) delegates a line to `Writer`, searches once (the `search`
tool costs $0.005 per call) and answers; `Writer` then writes the summary (task `write`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from crewai import Agent, Crew, Task
from crewai.tools import BaseTool

from agent_finops import PriceBook, PricingConfig, ToolFee
from agent_finops_crewai.testing import Reply, crewai_usage

SEARCH_FEE = Decimal("0.005")
PRICES = PriceBook(
    PricingConfig(tools=[ToolFee(name="search-api", tool="search", per_call=SEARCH_FEE)])
)

# gpt-4o-mini list price (genai-prices 0.2.3, USD per million tokens), by hand:
INPUT, CACHED, OUTPUT = Decimal("0.15"), Decimal("0.075"), Decimal("0.60")
MILLION = Decimal(1_000_000)


def gpt4o_mini(prompt: int, completion: int, cached: int = 0) -> Decimal:
    """What OpenAI bills: cached tokens are inside `prompt`, reasoning inside `completion`."""
    return ((prompt - cached) * INPUT + cached * CACHED + completion * OUTPUT) / MILLION


DELEGATE = (
    "Thought: the writer should draft a line\nAction: Delegate work to coworker\n"
    'Action Input: {"task": "write one line about gpu prices", "context": "for the report", '
    '"coworker": "Writer"}'
)
SEARCH = 'Thought: I need prices\nAction: search\nAction Input: {"query": "gpu prices"}'


def final(text: str) -> str:
    """A ReAct final answer."""
    return f"Thought: I know the answer\nFinal Answer: {text}"


# The researcher's four calls and the writer's two (one delegated, one for its own task),
# with usage as CrewAI's native OpenAI provider reports it.
RESEARCHER_SCRIPT = [
    Reply(DELEGATE, crewai_usage(1200, 300, cached=1024, reasoning=64)),
    Reply(SEARCH, crewai_usage(900, 40, cached=512)),
    Reply(final("gpu prices fell 8%"), crewai_usage(1100, 120)),
]
WRITER_SCRIPT = [
    Reply(final("GPUs got cheaper."), crewai_usage(300, 20)),
    Reply(final("Summary: GPUs are 8% cheaper."), crewai_usage(600, 90, reasoning=30)),
]
EXPECTED_MODEL_COST = (
    gpt4o_mini(1200, 300, 1024)
    + gpt4o_mini(900, 40, 512)
    + gpt4o_mini(1100, 120)
    + gpt4o_mini(300, 20)
    + gpt4o_mini(600, 90)
)
EXPECTED_TOTAL = EXPECTED_MODEL_COST + SEARCH_FEE


class Search(BaseTool):
    """A search tool with a per-call fee."""

    name: str = "search"
    description: str = "Search the web for a query."
    runs: int = 0

    def _run(self, query: str) -> str:
        self.runs += 1
        return f"results for {query}: prices fell 8%"


def team(researcher_llm: Any, writer_llm: Any, *, name: str = "market-team", **crew: Any) -> Crew:
    """The two-agent, two-task crew (the researcher may delegate to the writer)."""
    researcher = Agent(
        role="Researcher",
        goal="Find facts",
        backstory="A careful analyst.",
        llm=researcher_llm,
        tools=[Search()],
        allow_delegation=True,
    )
    writer = Agent(role="Writer", goal="Write clearly", backstory="A columnist.", llm=writer_llm)
    research = Task(
        name="research",
        description="Research gpu prices.",
        expected_output="notes",
        agent=researcher,
    )
    write = Task(
        name="write", description="Write a summary.", expected_output="a summary", agent=writer
    )
    return Crew(name=name, agents=[researcher, writer], tasks=[research, write], **crew)
