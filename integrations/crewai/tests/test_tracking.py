"""Tracking a real `Crew` with a scripted custom `BaseLLM`: the tree, the tags, exact totals."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from crews import EXPECTED_TOTAL, RESEARCHER_SCRIPT, SEARCH_FEE, WRITER_SCRIPT, gpt4o_mini, team

from agent_finops import CostTracker, attribute, cli
from agent_finops.reports import RunReport
from agent_finops_crewai import FinOpsListener
from agent_finops_crewai.testing import ScriptedLLM


def scripted_team(name: str = "market-team", **crew: Any) -> Any:
    return team(
        ScriptedLLM(model="gpt-4o-mini", script=RESEARCHER_SCRIPT),
        ScriptedLLM(model="gpt-4o-mini", script=WRITER_SCRIPT),
        name=name,
        **crew,
    )


def report_of(tracker: CostTracker, crew_name: str) -> RunReport:
    runs = [s for s in tracker.ledger.list_runs(limit=50) if s.run.name == crew_name]
    assert len(runs) == 1, [s.run.name for s in tracker.ledger.list_runs(limit=50)]
    return tracker.report(runs[0].run.trace_id)


def shape(node: Any, depth: int = 0) -> list[str]:
    lines = [f"{'  ' * depth}{node.span.name} [{node.span.kind}]"]
    for child in node.children:
        lines.extend(shape(child, depth + 1))
    return lines


def test_kickoff_is_one_priced_trace(
    tracker: CostTracker, make_listener: Callable[..., FinOpsListener]
) -> None:
    listener = make_listener(tracker)
    crew = scripted_team()
    output = crew.kickoff()
    assert output.raw == "Summary: GPUs are 8% cheaper."

    # Read at once: kickoff() returns only once every event is in the ledger.
    (summary,) = tracker.ledger.list_runs(limit=5)
    report = tracker.report(summary.run.trace_id)
    assert report.run.status == "ok" and report.run.ended_at is not None
    assert report.total_cost == EXPECTED_TOTAL
    assert report.unpriced == 0 and listener.errors == 0
    assert report.totals.model_calls == 5 and report.totals.tool_calls == 2
    assert report.totals.cache_read_tokens == 1024 + 512
    assert report.totals.reasoning_tokens == 64 + 30
    assert shape(report.tree) == [
        "market-team [run]",
        "  research [task]",
        "    Researcher [agent]",
        "      gpt-4o-mini [model]",
        "      delegate_work_to_coworker [tool]",
        "        Writer [agent]",
        "          gpt-4o-mini [model]",
        "      gpt-4o-mini [model]",
        "      search [tool]",
        "      gpt-4o-mini [model]",
        "  write [task]",
        "    Writer [agent]",
        "      gpt-4o-mini [model]",
    ]
    assert report.run.tags == {"team": "research", "crew": "market-team"}
    by_agent = {r.key: r.totals.model_calls for r in report.by_agent}
    assert by_agent == {"Researcher": 3, "Writer": 2}  # the delegated line is the Writer's
    assert {r.key for r in report.by_task} == {"research", "write"}
    assert {r.key: r.totals.cost for r in report.by_tool}["search"] == SEARCH_FEE
    assert [r.key for r in report.by_node] == [
        "market-team > research > Researcher",
        "market-team > write > Writer",
    ]
    assert not listener.scopes.snapshot()  # nothing kept once the run ended


def test_cli_shows_a_crew_run_like_a_graph_run(
    tracker: CostTracker,
    make_listener: Callable[..., FinOpsListener],
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_listener(tracker)
    scripted_team().kickoff()
    (summary,) = tracker.ledger.list_runs(limit=1)
    url = str(tracker.ledger.engine.url)
    assert cli.main(["--db", url, "runs"]) == 0
    assert cli.main(["--db", url, "report", summary.run.trace_id[:8]]) == 0
    out = capsys.readouterr().out
    assert "market-team" in out and "ok" in out
    for shown in ("research [task]", "Researcher [agent]", "search [tool]", "By task", "By agent"):
        assert shown in out, shown
    assert cli.main(["--db", url, "report", summary.run.trace_id, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {r["key"] for r in data["by_task"]} == {"research", "write"}
    assert data["totals"]["cost_usd"] == format(EXPECTED_TOTAL, "f")


def test_attribute_tags_reach_every_event(
    tracker: CostTracker, make_listener: Callable[..., FinOpsListener]
) -> None:
    make_listener(tracker)
    with attribute(project="gpus", user="u-7"):
        scripted_team().kickoff()
    report = report_of(tracker, "market-team")
    events = tracker.ledger.load_trace(report.run.trace_id).events
    assert events and all(e.tags["project"] == "gpus" for e in events)
    searches = [e for e in events if e.name == "search"]
    assert searches[0].tags["task"] == "research" and searches[0].tags["agent"] == "Researcher"


def test_kickoff_async_and_akickoff(
    tracker: CostTracker, make_listener: Callable[..., FinOpsListener]
) -> None:
    make_listener(tracker)

    async def both() -> None:
        await scripted_team("async-team").kickoff_async()
        await scripted_team("native-async-team").akickoff()

    asyncio.run(both())
    for name in ("async-team", "native-async-team"):
        report = report_of(tracker, name)
        assert report.total_cost == EXPECTED_TOTAL, name
        assert report.run.status == "ok"


def test_concurrent_crews_are_attributed_separately_and_exactly(
    tracker: CostTracker, make_listener: Callable[..., FinOpsListener]
) -> None:
    make_listener(tracker)
    crews = [scripted_team(f"thread-team-{i}") for i in range(3)]
    errors: list[BaseException] = []

    def run(crew: Any) -> None:
        try:
            crew.kickoff()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(crew,)) for crew in crews]
    for thread in threads:
        thread.start()

    async def gathered() -> None:
        await asyncio.gather(*(scripted_team(f"async-team-{i}").kickoff_async() for i in range(3)))

    asyncio.run(gathered())
    for thread in threads:
        thread.join(60)
    assert not errors
    names = [f"thread-team-{i}" for i in range(3)] + [f"async-team-{i}" for i in range(3)]
    total = Decimal(0)
    for name in names:
        report = report_of(tracker, name)
        assert report.total_cost == EXPECTED_TOTAL, name
        assert report.totals.model_calls == 5 and report.totals.tool_calls == 2, name
        events = tracker.ledger.load_trace(report.run.trace_id).events
        assert {e.tags["crew"] for e in events} == {name}
        total += report.total_cost
    assert total == 6 * EXPECTED_TOTAL


class _NoHookLLM(ScriptedLLM):
    """A custom LLM that emits its events but never runs the model-call hooks."""

    def _invoke_before_llm_call_hooks(self, messages: Any, from_agent: Any = None) -> bool:
        return True


def test_direct_llm_calls_are_runs_of_their_own_hooked_or_not(
    tracker: CostTracker, make_listener: Callable[..., FinOpsListener]
) -> None:
    listener = make_listener(tracker)
    hooked = ScriptedLLM(model="gpt-4o-mini", script=[RESEARCHER_SCRIPT[2]])
    unhooked = _NoHookLLM(model="gpt-4o-mini", script=[RESEARCHER_SCRIPT[2]])
    assert hooked.call("What happened to gpu prices?").startswith("Thought")
    assert unhooked.call("And now?").startswith("Thought")
    listener.flush()
    runs = tracker.ledger.list_runs(limit=5)
    assert len(runs) == 2
    assert all(s.model_calls == 1 and s.cost == gpt4o_mini(1100, 120) for s in runs)
    assert {s.run.status for s in runs} == {"ok"}
    assert listener.errors == 0


def test_a_failing_tool_is_recorded_as_failed_without_a_fee(
    tracker: CostTracker,
    make_listener: Callable[..., FinOpsListener],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import crews

    def broken(self: Any, query: str) -> str:
        raise RuntimeError("search API down")

    monkeypatch.setattr(crews.Search, "_run", broken)
    make_listener(tracker)
    researcher = ScriptedLLM(
        model="gpt-4o-mini",
        script=[RESEARCHER_SCRIPT[1], RESEARCHER_SCRIPT[2]],
    )
    crew = team(researcher, ScriptedLLM(model="gpt-4o-mini", script=[WRITER_SCRIPT[1]]))
    crew.kickoff()
    (summary,) = tracker.ledger.list_runs(limit=1)
    trace = tracker.ledger.load_trace(summary.run.trace_id)
    tools = [s for s in trace.spans if s.kind == "tool"]
    assert tools and {(s.name, s.status) for s in tools} == {("search", "error")}
    assert "search API down" in (tools[0].error or "")
    assert not [e for e in trace.events if e.kind == "tool"]  # no fee for a call that failed
    assert summary.model_calls == 3
