"""The README's CrewAI snippet runs as written (against the scripted crew)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from crews import EXPECTED_TOTAL, RESEARCHER_SCRIPT, WRITER_SCRIPT, team

from agent_finops_crewai.testing import ScriptedLLM

README = Path(__file__).resolve().parents[3] / "README.md"


def test_readme_listener_snippet_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (snippet,) = [
        b
        for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
        if "agent_finops_crewai" in b
    ]
    monkeypatch.chdir(tmp_path)
    crew = team(
        ScriptedLLM(model="gpt-4o-mini", script=RESEARCHER_SCRIPT),
        ScriptedLLM(model="gpt-4o-mini", script=WRITER_SCRIPT),
    )
    namespace: dict[str, Any] = {"crew": crew}
    exec(compile(snippet, str(README), "exec"), namespace)
    try:
        tracker = namespace["tracker"]
        (run,) = tracker.ledger.list_runs(limit=1)
        report = tracker.report(run.run.trace_id)
        # The README's tracker has no tool fees: the total is the models' only.
        assert report.totals.model_calls == 5
        assert report.total_cost < EXPECTED_TOTAL
        assert report.run.tags["team"] == "research"
    finally:
        namespace["listener"].detach()
        namespace["tracker"].close()
    assert (tmp_path / "agent-finops.sqlite").exists()
