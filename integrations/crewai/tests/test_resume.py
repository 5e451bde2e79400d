"""A paused crew resumes from its CrewAI checkpoint after the decision, even after a restart.

The first process pauses (nobody decides within `approval_wait=0`), the crew ends with
`CrewPaused`, its checkpoint holds the finished research task. A new process (a new tracker
and listener on the same ledger) decides the request from the console's service and resumes
through a registered `ResumeTargets` entry: `Crew.from_checkpoint(...)` re-runs only the
write task, as the same run thread, and the decision is applied at its first model call.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from crewai import Crew
from crewai.state.checkpoint_config import CheckpointConfig
from crews import PRICES, WRITER_SCRIPT
from test_enforcement import PAUSE_WRITER, pausing_team, policy

from agent_finops import CostTracker, SQLLedger
from agent_finops.approvals import ApprovalService, ResumeRequest, ResumeTargets
from agent_finops.exceptions import ApprovalDenied
from agent_finops_crewai import CrewPaused, CrewStopped, FinOpsListener
from agent_finops_crewai.testing import ScriptedLLM


def pause_in_first_process(
    ledger: SQLLedger, make_listener: Callable[..., FinOpsListener], checkpoints: Path
) -> CrewPaused:
    tracker = CostTracker(ledger, prices=PRICES, tags={"team": "research"})
    listener = make_listener(
        tracker, policy=policy(PAUSE_WRITER), approval_wait=0, resume_target="market-team"
    )
    crew, _ = pausing_team()
    crew.checkpoint = CheckpointConfig(location=str(checkpoints))
    with pytest.raises(CrewPaused) as paused:
        crew.kickoff()
    # CrewAI writes checkpoints from its event bus's thread pool: wait for the research one.
    deadline = time.monotonic() + 60  # generous: CI machines can be loaded
    while not glob.glob(str(checkpoints / "**" / "*.json"), recursive=True):
        assert time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.05)
    listener.detach()  # the process "exits"
    tracker.close()
    return paused.value


def app_targets(checkpoints: Path, writer: ScriptedLLM) -> ResumeTargets:
    """What the application registers: how to resume a paused crew."""
    targets = ResumeTargets()

    @targets.register("market-team")
    def resume(request: ResumeRequest) -> Any:
        files = glob.glob(str(checkpoints / "**" / "*.json"), recursive=True)
        latest = max(files, key=os.path.getmtime)
        crew = Crew.from_checkpoint(CheckpointConfig(restore_from=latest))
        for agent in crew.agents:  # clients and keys are not in checkpoints: the app's own
            agent.llm = writer
        return crew.kickoff()

    return targets


@pytest.mark.parametrize("approve", [True, False], ids=["approved", "denied"])
def test_resume_from_checkpoint_after_a_restart(
    ledger: SQLLedger,
    make_listener: Callable[..., FinOpsListener],
    tmp_path: Path,
    approve: bool,
) -> None:
    checkpoints = tmp_path / "checkpoints"
    paused = pause_in_first_process(ledger, make_listener, checkpoints)
    assert [o.raw for o in paused.outputs] == ["gpu prices fell 8%"]

    # -- a new process --
    tracker = CostTracker(ledger, prices=PRICES, tags={"team": "research"})
    make_listener(
        tracker, policy=policy(PAUSE_WRITER), approval_wait=0, resume_target="market-team"
    )
    writer = ScriptedLLM(model="gpt-4o-mini", script=[WRITER_SCRIPT[1]])
    service = ApprovalService(ledger)
    decided = service.decide(
        paused.approval_id, approve=approve, by="alice", extra=Decimal("1.00") if approve else None
    )
    if approve:
        output = service.resume(decided, app_targets(checkpoints, writer))
        assert output.raw == "Summary: GPUs are 8% cheaper."
        assert writer.calls == 1  # only the write task ran again
    else:
        with pytest.raises(CrewStopped) as stopped:
            service.resume(decided, app_targets(checkpoints, writer))
        assert isinstance(stopped.value.error, ApprovalDenied)
        assert [o.raw for o in stopped.value.outputs] == ["gpu prices fell 8%"]
        assert writer.calls == 0
    runs = sorted(tracker.ledger.list_runs(limit=5), key=lambda s: s.run.started_at)
    assert [s.run.status for s in runs] == ["interrupted", "ok" if approve else "stopped"]
    assert {s.run.thread_id for s in runs} == {paused.thread_id}  # one story, two invocations
    (request,) = tracker.ledger.list_approvals(thread_id=paused.thread_id)
    assert request.status == ("approved" if approve else "denied")
    assert request.applied_at is not None
    tracker.close()
