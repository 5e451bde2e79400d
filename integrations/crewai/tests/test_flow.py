"""A Flow whose steps run crews is one trace; a pause inside it resumes through `@persist`."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from crewai.flow.flow import Flow, listen, start
from crewai.flow.persistence import SQLiteFlowPersistence, persist
from crews import EXPECTED_TOTAL, RESEARCHER_SCRIPT, WRITER_SCRIPT, team
from pydantic import BaseModel
from test_enforcement import PAUSE_WRITER, pausing_team, policy

from agent_finops import CostTracker
from agent_finops.approvals import ApprovalService
from agent_finops_crewai import CrewPaused, FinOpsListener
from agent_finops_crewai.testing import ScriptedLLM


class ReportState(BaseModel):
    id: str = ""
    research: str = ""
    summary: str = ""


def shape(node: Any, depth: int = 0) -> list[str]:
    lines = [f"{'  ' * depth}{node.span.name} [{node.span.kind}]"]
    if node.span.kind not in ("crew",):
        for child in node.children:
            lines.extend(shape(child, depth + 1))
    return lines


def test_flow_running_two_crews_is_one_trace(
    tracker: CostTracker, make_listener: Callable[..., FinOpsListener]
) -> None:
    make_listener(tracker)

    class TwoCrews(Flow[ReportState]):
        @start()
        def first(self) -> str:
            crew = team(
                ScriptedLLM(model="gpt-4o-mini", script=RESEARCHER_SCRIPT),
                ScriptedLLM(model="gpt-4o-mini", script=WRITER_SCRIPT),
                name="first-crew",
            )
            return str(crew.kickoff().raw)

        @listen(first)
        def second(self, _: str) -> str:
            crew = team(
                ScriptedLLM(model="gpt-4o-mini", script=RESEARCHER_SCRIPT),
                ScriptedLLM(model="gpt-4o-mini", script=WRITER_SCRIPT),
                name="second-crew",
            )
            return str(crew.kickoff().raw)

    flow = TwoCrews()
    assert flow.kickoff() == "Summary: GPUs are 8% cheaper."
    (summary,) = tracker.ledger.list_runs(limit=5)
    report = tracker.report(summary.run.trace_id)
    assert report.run.name == "TwoCrews" and report.run.status == "ok"
    assert report.run.thread_id == flow.state.id
    assert report.total_cost == 2 * EXPECTED_TOTAL
    assert shape(report.tree) == [
        "TwoCrews [run]",
        "  first [node]",
        "    first-crew [crew]",
        "  second [node]",
        "    second-crew [crew]",
    ]


def test_pause_in_a_flow_resumes_through_its_persistence(
    tracker: CostTracker, make_listener: Callable[..., FinOpsListener], tmp_path: Path
) -> None:
    listener = make_listener(tracker, policy=policy(PAUSE_WRITER), approval_wait=0)
    store = SQLiteFlowPersistence(str(tmp_path / "flows.db"))
    writers: list[ScriptedLLM] = []

    @persist(store)
    class ReportFlow(Flow[ReportState]):
        @start()
        def research(self) -> None:
            if not self.state.research:  # done in an earlier invocation: kept in the state
                crew, _ = pausing_team()
                crew.tasks = crew.tasks[:1]
                self.state.research = str(crew.kickoff().raw)

        @listen(research)
        def write(self) -> str:
            crew, writer = pausing_team()
            writer.script = writer.script[1:]  # no delegated line first in this crew
            writers.append(writer)
            crew.tasks = crew.tasks[1:]
            self.state.summary = str(crew.kickoff().raw)
            return self.state.summary

    first = ReportFlow()
    with pytest.raises(CrewPaused) as paused:
        first.kickoff()
    flow_id = first.state.id
    assert paused.value.thread_id == flow_id
    ApprovalService(tracker.ledger).decide(
        paused.value.approval_id, approve=True, by="alice", extra=Decimal("1.00")
    )
    listener.flush()

    # A new instance (a restarted process) resumes the same flow from its persisted state.
    again = ReportFlow()
    assert again.kickoff(inputs={"id": flow_id}) == "Summary: GPUs are 8% cheaper."
    runs = sorted(tracker.ledger.list_runs(limit=5), key=lambda s: s.run.started_at)
    assert [(s.run.name, s.run.status, s.run.thread_id) for s in runs] == [
        ("ReportFlow", "interrupted", flow_id),
        ("ReportFlow", "ok", flow_id),
    ]
    assert runs[1].model_calls == 2  # research skipped; the writer's two calls
