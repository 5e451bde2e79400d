"""End to end: CrewAI's own `LLM` over HTTP to local fake OpenAI and Anthropic servers.

The real crewai native providers (and the openai / anthropic SDKs under them) talk to the
fakes in the repository's `tests/fakes/`; the ledger must match a bill worked out here by
hand from the published prices, to the last Decimal digit.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from crewai import LLM
from crews import SEARCH_FEE, final, gpt4o_mini, team

from agent_finops import CostTracker
from agent_finops_crewai import FinOpsListener
from tests.fakes.anthropic_server import AnthropicUsage, FakeAnthropicServer
from tests.fakes.openai_server import FakeOpenAIServer, ScriptedReply, ScriptedToolCall

pytestmark = pytest.mark.slow

MILLION = Decimal(1_000_000)

# The crew's five model calls, in the order a sequential crew makes them: the researcher
# delegates (the writer answers), searches, answers; then the writer's own task.
OPENAI_SCRIPT = [
    ScriptedReply(
        tool_calls=(
            ScriptedToolCall(
                name="delegate_work_to_coworker",
                arguments={"task": "one line on gpus", "context": "report", "coworker": "Writer"},
                id="call_d",
            ),
        ),
        prompt_tokens=1200,
        cached_tokens=1024,
        completion_tokens=300,
        reasoning_tokens=64,
    ),
    ScriptedReply(content="GPUs got cheaper.", prompt_tokens=300, completion_tokens=20),
    ScriptedReply(
        tool_calls=(
            ScriptedToolCall(name="search", arguments={"query": "gpu prices"}, id="call_s"),
        ),
        prompt_tokens=900,
        cached_tokens=512,
        completion_tokens=40,
    ),
    ScriptedReply(content="gpu prices fell 8%", prompt_tokens=1100, completion_tokens=120),
    ScriptedReply(content="Summary: GPUs are 8% cheaper.", prompt_tokens=600, completion_tokens=90),
]
OPENAI_TOTAL = (
    gpt4o_mini(1200, 300, 1024)
    + gpt4o_mini(300, 20)
    + gpt4o_mini(900, 40, 512)
    + gpt4o_mini(1100, 120)
    + gpt4o_mini(600, 90)
    + SEARCH_FEE
)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_openai_compatible_server_plain_and_streamed(
    tracker: CostTracker, make_listener: Callable[..., FinOpsListener], stream: bool
) -> None:
    listener = make_listener(tracker)
    with FakeOpenAIServer(OPENAI_SCRIPT) as server:

        def llm() -> LLM:
            return LLM(model="gpt-4o-mini", base_url=server.base_url, api_key="test", stream=stream)

        output = team(llm(), llm()).kickoff()
        bodies = server.bodies
    assert output.raw == "Summary: GPUs are 8% cheaper."
    assert len(bodies) == 5 and all(bool(b.get("stream")) == stream for b in bodies)
    if stream:  # usage arrives on the stream's last chunk only when asked for
        assert all(b["stream_options"] == {"include_usage": True} for b in bodies)
    (summary,) = tracker.ledger.list_runs(limit=1)
    report = tracker.report(summary.run.trace_id)
    assert report.total_cost == OPENAI_TOTAL
    assert report.unpriced == 0 and listener.errors == 0
    assert report.totals.cache_read_tokens == 1024 + 512
    assert report.totals.reasoning_tokens == 64
    assert {r.key: r.totals.model_calls for r in report.by_agent} == {"Researcher": 3, "Writer": 2}


# claude-sonnet-4-6 list price (<= 200k input, USD per million tokens), by hand:
# $3 input, $0.30 cache read, $3.75 cache write, $15 output. Anthropic reports input
# without the cache tokens; CrewAI adds them back before its event: both must be undone.
SONNET = {
    "input": Decimal(3),
    "read": Decimal("0.30"),
    "write": Decimal("3.75"),
    "out": Decimal(15),
}


def sonnet(inp: int, out: int, read: int = 0, write: int = 0) -> Decimal:
    return (
        inp * SONNET["input"]
        + read * SONNET["read"]
        + write * SONNET["write"]
        + out * SONNET["out"]
    ) / MILLION


ANTHROPIC_SCRIPT = [
    AnthropicUsage(
        tool_use=(
            "delegate_work_to_coworker",
            {"task": "one line on gpus", "context": "report", "coworker": "Writer"},
        ),
        input_tokens=50,
        output_tokens=80,
        cache_read_input_tokens=4000,
        cache_creation_input_tokens=1000,
    ),
    AnthropicUsage(text=final("GPUs got cheaper."), input_tokens=300, output_tokens=20),
    AnthropicUsage(
        tool_use=("search", {"query": "gpu prices"}),
        input_tokens=60,
        output_tokens=30,
        cache_read_input_tokens=5000,
    ),
    AnthropicUsage(
        text=final("gpu prices fell 8%"),
        input_tokens=70,
        output_tokens=40,
        cache_read_input_tokens=5200,
    ),
    AnthropicUsage(text=final("Summary: GPUs are 8% cheaper."), input_tokens=600, output_tokens=90),
]
ANTHROPIC_TOTAL = (
    sonnet(50, 80, 4000, 1000)
    + sonnet(300, 20)
    + sonnet(60, 30, 5000)
    + sonnet(70, 40, 5200)
    + sonnet(600, 90)
    + SEARCH_FEE
)


def test_anthropic_server_cache_reads_and_writes(
    tracker: CostTracker, make_listener: Callable[..., FinOpsListener]
) -> None:
    listener = make_listener(tracker)
    with FakeAnthropicServer(list(ANTHROPIC_SCRIPT)) as server:

        def llm() -> LLM:
            return LLM(
                model="anthropic/claude-sonnet-4-6",
                base_url=server.base_url,
                api_key="test",
                max_tokens=1024,
            )

        output = team(llm(), llm()).kickoff()
        requests = len(server.requests)
    assert output.raw == "Summary: GPUs are 8% cheaper."
    assert requests == 5
    (summary,) = tracker.ledger.list_runs(limit=1)
    report = tracker.report(summary.run.trace_id)
    assert report.total_cost == ANTHROPIC_TOTAL
    assert report.unpriced == 0 and listener.errors == 0
    assert report.totals.cache_read_tokens == 4000 + 5000 + 5200
    assert report.totals.cache_write_tokens == 1000
    assert report.totals.uncached_input_tokens == 50 + 300 + 60 + 70 + 600


def test_streamed_usage_with_kickoff_async_is_not_lost(
    tracker: CostTracker, make_listener: Callable[..., FinOpsListener]
) -> None:
    """crewAIInc/crewAI#4056: streaming with kickoff_async reported zero usage."""
    import asyncio

    make_listener(tracker)
    with FakeOpenAIServer(OPENAI_SCRIPT) as server:

        def llm() -> LLM:
            return LLM(model="gpt-4o-mini", base_url=server.base_url, api_key="test", stream=True)

        output = asyncio.run(team(llm(), llm()).kickoff_async())
    assert output.raw == "Summary: GPUs are 8% cheaper."
    (summary,) = tracker.ledger.list_runs(limit=1)
    report = tracker.report(summary.run.trace_id)
    assert report.total_cost == OPENAI_TOTAL and report.unpriced == 0
